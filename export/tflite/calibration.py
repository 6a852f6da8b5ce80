"""int8 calibration: the run's calibration images, repaired calibrated ranges, the quantization step."""

from __future__ import annotations

import sys

import numpy as np

from export.tflite.errors import ExportError

# Calibrated activation ranges narrower than this (max |value| over the whole
# calibration set) are treated as "constant zero".
DEGENERATE_RANGE = 1e-5


def widen_degenerate_ranges(calibrated: bytes) -> tuple[bytes, list[str]]:
    """Give activations that were constant zero during calibration the range [0, 1] ([-1, 1] if negative).

    Such tensors occur in real networks: a one-channel ReLU that is dead for
    every calibration image (HA-CNN's spatial attention with untrained or
    unlucky weights), a hard-attention regressor whose kernel is still zero.
    Quantized as calibrated they get a scale of ~1e-8: the int32 bias of the
    convolution that reads them saturates (the untrained HA-CNN's int8
    embedding had cosine 0.35 to float) and XNNPACK refuses the whole graph
    (scale ratios out of its range). Any range containing zero represents
    them exactly, so a normal one is given; consumers then quantize sensibly.
    Returns the repaired calibrated model and the names of the tensors changed.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(calibrated)
    changed = []
    for graph in model.subgraphs:
        for t in graph.tensors:
            q = t.quantization
            if q is None or q.min is None or q.max is None or len(q.min) != 1 or len(q.max) != 1:
                continue
            lo, hi = float(q.min[0]), float(q.max[0])
            if max(abs(lo), abs(hi)) < DEGENERATE_RANGE:
                q.min, q.max = [-1.0 if lo < 0 else 0.0], [1.0]
                changed.append(t.name.decode() if isinstance(t.name, bytes) else str(t.name))
    if not changed:
        return calibrated, []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), changed


def quantize_calibrated(calibrated: bytes, io_dtype, float_ops=(), float_nodes=()) -> bytes:
    """Full-integer quantization of a calibrated model, as TFLiteConverter does it after calibration.

    `float_ops` (TFLite op names) and `float_nodes` (op output tensor names of
    `calibrated`) stay float32, with QUANTIZE/DEQUANTIZE around them.
    """
    from tensorflow.lite.python import convert as tfl_convert

    quantized = tfl_convert.mlir_quantize(calibrated, False, input_data_type=io_dtype, output_data_type=io_dtype,
                                          denylisted_ops=list(float_ops) or None,
                                          denylisted_nodes=list(float_nodes) or None)
    return tfl_convert.deduplicate_readonly_buffers(quantized)


def run_dataset(config: dict):
    """The run's dataset, loaded as training.fit did (keras_hpnet.runs.load_run_dataset)."""
    from keras_hpnet import runs

    name = config.get("dataset")
    if not name:
        raise ExportError("config.json has no 'dataset': pass --images for calibration")
    try:
        return runs.load_run_dataset(config)
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"cannot load the run's dataset {name!r} (data_dir={config.get('data_dir')!r}): {e}") from None


def load_images(paths, input_size) -> tuple[np.ndarray, list[int]]:
    """Decode and resize by the image rule (keras_hpnet.preprocessing); returns (uint8 [N,H,W,3], kept indices)."""
    from keras_hpnet import preprocessing

    h, w = input_size
    images, kept = [], []
    for i, p in enumerate(paths):
        try:
            images.append(preprocessing.prepare(preprocessing.load_rgb(p), h, w))
            kept.append(i)
        except preprocessing.ImageError as e:
            print(f"skipped: {e}", file=sys.stderr)
    if not images:
        return np.zeros((0, h, w, 3), np.uint8), kept
    return np.stack(images), kept


def calibration_images(config: dict, input_size, num: int, seed: int = 0, images_dir: str | None = None) -> np.ndarray:
    """`num` training images of the run (or of `images_dir`), uint8 [num, H, W, 3].

    The input range is pinned to the full 0..255 (one pixel each) so a uint8
    input tensor takes raw pixels with scale 1 and zero point 0.
    """
    if images_dir:
        from keras_hpnet.preprocessing import list_images

        paths = list_images(images_dir)
        source = images_dir
    else:
        ds = run_dataset(config)
        # An image record has one path; a tracklet (video runs) its frames, each a calibration image.
        paths = [p for r in ds.train for p in (getattr(r, "frames", None) or (r.path,))]
        source = f"{config.get('dataset')} train split"
    if not paths:
        raise ExportError(f"no calibration images found in {source}")
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(paths))[:num]
    images, _ = load_images([paths[i] for i in pick], input_size)
    if len(images) == 0:
        raise ExportError(f"none of the calibration images in {source} could be read")
    images = images.copy()
    images[0, 0, 0, :] = 0
    images[0, 0, 1, :] = 255
    return images

