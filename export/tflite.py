"""TFLite export for edge devices: float32, float16, dynamic-range and full int8.

    python -m export.tflite --run_dir runs/hacnn --quantization int8
    python -m export.tflite --run_dir runs/hacnn --quantization all

Writes `<out_dir>/<model>_<quantization>.tflite`, its metadata sidecar
`<model>_<quantization>.json` (keras_hpnet.metadata.ModelMetadata, read by
`edge`), and a parity report `parity.json` + `parity.txt` beside the models:
float vs quantized embedding cosine and rank-1 / mAP / mA of every variant on
the run's evaluation split, each file written atomically.

Only builtin TFLite ops are allowed (edge interpreters have no Flex kernels):
a model that needs SELECT_TF_OPS or a custom op fails the export with the op
named. The int8 variant is full-integer quantization calibrated on the run's
training images; ops the quantizer leaves in float are listed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import time
import warnings
import weakref

import numpy as np

from keras_hpnet.fileio import write_bytes_atomic, write_text_atomic
from keras_hpnet.metadata import ModelMetadata

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
IO_TYPES = ("float32", "uint8", "int8")
# Ops that only convert between float and integer tensors.
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


class ExportError(ValueError):
    """A model that cannot be exported as asked (the message says why)."""


# --------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------
_FROZEN = weakref.WeakKeyDictionary()


def output_names(model) -> list[str]:
    """Output tensors of the exported model, in order (recorded in the sidecar)."""
    return ["embedding", "attributes"] if int(getattr(model, "num_attributes", 0) or 0) else ["embedding"]


def _same_padding_counts(size: int, window: int, stride: int, out: int) -> np.ndarray:
    """Window elements inside the input along one axis for TF "SAME" padding."""
    total = max((out - 1) * stride + window - size, 0)
    lo = total // 2
    starts = np.arange(out) * stride - lo
    return (np.minimum(starts + window, size) - np.maximum(starts, 0)).astype(np.float64)


def average_pool_as_depthwise(x, pool_size, strides, padding: str):
    """`AveragePooling2D` (NHWC, TF semantics: SAME excludes the padding) as DEPTHWISE_CONV_2D.

    LiteRT's XNNPACK delegate has no int8 AVERAGE_POOL_2D: in a full-int8 model
    each one runs on LiteRT's builtin kernel (~0.4 ms each at HA-CNN sizes) and
    splits the XNNPACK graph. A depthwise convolution with weights `1/(kh*kw)`
    (exact in int8: one value per channel) gives the interior; with SAME padding
    the border pixels, whose windows hold fewer inputs, are rescaled by
    `y + y * c` with a constant map `c = kh*kw/count - 1` (zero inside, so the
    interior stays exact after quantization). Equal to the pooling in float.
    """
    import tensorflow as tf

    kh, kw = (int(v) for v in pool_size)
    sh, sw = (int(v) for v in strides)
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    if h is None or w is None or c is None:
        raise ExportError(f"average pooling needs a static input shape to export, got {x.shape}")
    kernel = tf.constant(np.full((kh, kw, int(c), 1), 1.0 / (kh * kw), np.float32), x.dtype)
    y = tf.nn.depthwise_conv2d(x, kernel, (1, sh, sw, 1), padding.upper())
    if padding.upper() == "SAME":
        counts = np.outer(_same_padding_counts(h, kh, sh, y.shape[1]), _same_padding_counts(w, kw, sw, y.shape[2]))
        corr = (kh * kw) / counts - 1.0
        if np.any(corr):
            y = y + y * tf.constant(corr[None, :, :, None], x.dtype)
    return y


@contextlib.contextmanager
def xnnpack_int8_lowering():
    """While tracing for an int8 export: average pooling runs as `average_pool_as_depthwise`.

    Only `keras.layers.AveragePooling2D` with channels-last data (the models'
    Inception blocks) is rewritten; the model and its weights are untouched.
    """
    import keras

    cls = keras.layers.AveragePooling2D
    own = "call" in vars(cls)
    original = cls.call

    def call(self, inputs):
        if getattr(self, "data_format", "channels_last") != "channels_last" or len(inputs.shape) != 4:
            return original(self, inputs)
        return average_pool_as_depthwise(inputs, self.pool_size, self.strides, self.padding)

    cls.call = call
    try:
        yield
    finally:
        if own:
            cls.call = original
        else:
            del cls.call


def _inference_function(model, batch_size: int, lower_for_int8: bool = False):
    """The model's inference outputs as a frozen concrete function (cached per model).

    Outputs in `output_names(model)` order. Freezing here and converting the
    frozen graph is ~3x faster than handing the converter the live model
    (which saves a temporary SavedModel per conversion), and leaves no
    VAR_HANDLE/READ_VARIABLE ops behind. `lower_for_int8`: traced under
    `xnnpack_int8_lowering` (average pooling as depthwise convolution).
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    cache = _FROZEN.setdefault(model, {})
    key = (batch_size, bool(lower_for_int8))
    if key not in cache:
        h, w = (int(v) for v in model.input_size)
        names = output_names(model)

        @tf.function(input_signature=[tf.TensorSpec([batch_size, h, w, 3], tf.float32, name="image")])
        def serve(image):
            out = model(image, training=False)
            return tuple(out[k] for k in names)

        with xnnpack_int8_lowering() if lower_for_int8 else contextlib.nullcontext():
            cache[key] = convert_variables_to_constants_v2(serve.get_concrete_function())
    return cache[key]


def _flex_ops_from_error(message: str) -> list[str]:
    names = set()
    for line in message.splitlines():
        m = re.match(r"\s*TF Select ops:\s*(.+)", line)
        if m:
            names.update(n.strip() for n in m.group(1).split(",") if n.strip())
    names.update(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message))
    return sorted(names)


def convert(model, quantization: str, *, io_type: str = "float32", representative_images=None,
            batch_size: int = 1, report: dict | None = None) -> bytes:
    """Convert a keras_hpnet model (inference outputs) to a TFLite flatbuffer.

    quantization: float32 | float16 (float16 weights) | dynamic (int8 weights,
    float activations) | int8 (full integer; needs `representative_images`,
    uint8 [N, H, W, 3]). io_type: the int8 model's input/output tensor type
    (float32, uint8 or int8); the other variants take float32 only.
    Raises ExportError naming any op that is not a builtin TFLite op.
    `report` (int8), if given, receives `constant_activations`: the tensors
    whose calibrated range was degenerate (see `widen_degenerate_ranges`).
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ExportError(f"quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
    if io_type not in IO_TYPES:
        raise ExportError(f"io_type {io_type!r}: choose one of {', '.join(IO_TYPES)}")
    if quantization != "int8" and io_type != "float32":
        raise ExportError(f"io_type {io_type} needs --quantization int8 ({quantization} models take float32 input)")
    fn = _inference_function(model, batch_size, lower_for_int8=quantization == "int8")
    with warnings.catch_warnings():  # "provide trackable_obj": not needed for a frozen graph
        warnings.simplefilter("ignore")
        logging.getLogger("absl").setLevel(logging.ERROR)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        if representative_images is None or len(representative_images) == 0:
            raise ExportError("int8 quantization needs representative (calibration) images")
        images = np.asarray(representative_images).astype(np.float32)

        def representative():
            for i in range(0, len(images) - batch_size + 1, batch_size):
                yield [images[i:i + batch_size]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # Integer kernels wherever the quantizer can; builtin float kernels as the
        # fallback (listed by `float_ops`), never TF kernels.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
        if io_type != "float32":
            converter.inference_input_type = getattr(tf, io_type)
            converter.inference_output_type = getattr(tf, io_type)
    try:
        if quantization == "int8":
            # The converter's own two steps (calibrate, then quantize with the
            # MLIR quantizer, as `converter.convert()` does), with the
            # calibrated ranges repaired in between.
            converter._experimental_calibrate_only = True
            calibrated, constant = widen_degenerate_ranges(converter.convert())
            if report is not None:
                report["constant_activations"] = constant
            flatbuffer = _quantize_calibrated(calibrated, getattr(tf, io_type))
        else:
            flatbuffer = converter.convert()
    except Exception as e:  # ConverterError and friends; name the ops when we can
        msg = str(e)
        flex = _flex_ops_from_error(msg)
        if flex:
            raise ExportError(
                f"{getattr(model, 'name', 'model')}: needs TensorFlow ops that are not builtin TFLite ops "
                f"(Flex/SELECT_TF_OPS): {', '.join(flex)}. Edge runtimes cannot run them; "
                "replace them in the model with builtin-friendly ops."
            ) from None
        last = [ln for ln in msg.strip().splitlines() if ln.strip()]
        raise ExportError(f"TFLite conversion ({quantization}) failed: {last[-1] if last else type(e).__name__}") from None
    ops = inspect_ops(flatbuffer)
    check_builtin(ops)
    return flatbuffer


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


def _quantize_calibrated(calibrated: bytes, io_dtype) -> bytes:
    """Full-integer quantization of a calibrated model, as TFLiteConverter does it after calibration."""
    from tensorflow.lite.python import convert as tfl_convert

    quantized = tfl_convert.mlir_quantize(calibrated, False, input_data_type=io_dtype, output_data_type=io_dtype)
    return tfl_convert.deduplicate_readonly_buffers(quantized)


# --------------------------------------------------------------------------
# Inspecting a flatbuffer (no TensorFlow: LiteRT's schema module)
# --------------------------------------------------------------------------
@dataclasses.dataclass
class OpInfo:
    index: int
    name: str  # builtin name (CONV_2D) or the custom code (FlexConv2D)
    builtin: bool
    float_compute: bool  # reads or writes float32 activations (not QUANTIZE/DEQUANTIZE)
    input_types: list[str]
    output_types: list[str]


def inspect_ops(flatbuffer: bytes) -> list[OpInfo]:
    """Operators of the main subgraph with their tensor types."""
    from ai_edge_litert import schema_py_generated as schema

    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int)}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if isinstance(v, int)}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == schema.BuiltinOperator.CUSTOM:
            custom = oc.CustomCode()
            codes.append((custom.decode() if custom else "CUSTOM", False))
        else:
            codes.append((op_names.get(code, f"BUILTIN_{code}"), True))
    graph = model.Subgraphs(0)

    def is_const(t):
        buf = model.Buffers(graph.Tensors(t).Buffer())
        return buf is not None and (buf.DataLength() > 0 or buf.Size() > 0)

    def kind(t):
        return type_names.get(graph.Tensors(t).Type(), "?")

    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        name, builtin = codes[op.OpcodeIndex()]
        ins = [t for t in op.InputsAsNumpy().tolist() if t >= 0] if op.InputsLength() else []
        outs = [t for t in op.OutputsAsNumpy().tolist() if t >= 0] if op.OutputsLength() else []
        in_types = [kind(t) for t in ins]
        out_types = [kind(t) for t in outs]
        act = [kind(t) for t in ins if not is_const(t)] + out_types
        is_float = name not in _BOUNDARY_OPS and "FLOAT32" in act
        out.append(OpInfo(i, name, builtin, is_float, in_types, out_types))
    return out


def check_builtin(ops: list[OpInfo]) -> None:
    """ExportError naming any Flex/custom op."""
    bad = sorted({o.name for o in ops if not o.builtin})
    if bad:
        flex = [b for b in bad if b.startswith("Flex")]
        kind = "Flex (SELECT_TF_OPS)" if flex else "custom"
        raise ExportError(f"the converted model has {kind} ops that edge runtimes cannot run: {', '.join(bad)}")


def op_summary(ops: list[OpInfo]) -> str:
    """A printable table: op name, count, how many stay float."""
    counts: dict[str, list[int]] = {}
    for o in ops:
        c = counts.setdefault(o.name, [0, 0])
        c[0] += 1
        c[1] += int(o.float_compute)
    lines = [f"{'op':<26}{'count':>6}{'float':>7}"]
    for name in sorted(counts):
        lines.append(f"{name:<26}{counts[name][0]:>6}{counts[name][1]:>7}")
    n_float = sum(o.float_compute for o in ops)
    lines.append(f"{len(ops)} ops, {n_float} compute in float" + (
        ": " + ", ".join(sorted({o.name for o in ops if o.float_compute})) if 0 < n_float < len(ops) else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Data: calibration and evaluation images of a run
# --------------------------------------------------------------------------
def _load_dataset(config: dict):
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
    """Decode and resize with the edge preprocessing; returns (uint8 [N,H,W,3], kept indices)."""
    from edge import preprocess

    h, w = input_size
    images, kept = [], []
    for i, p in enumerate(paths):
        try:
            images.append(preprocess.prepare(preprocess.load_image(p), h, w))
            kept.append(i)
        except preprocess.ImageError as e:
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
        from edge import preprocess

        paths = preprocess.list_images(images_dir)
        source = images_dir
    else:
        ds = _load_dataset(config)
        paths = [r.path for r in ds.train]
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


@dataclasses.dataclass
class EvalSet:
    images: np.ndarray  # uint8 [N, H, W, 3]
    pids: np.ndarray
    camids: np.ndarray
    num_query: int  # re-id: rows [0, num_query) are queries, the rest gallery; 0 if no re-id
    attributes: np.ndarray | None  # 0/1 [N, A]
    description: str


def evaluation_set(config: dict, input_size, max_images: int | None = None, seed: int = 0) -> EvalSet:
    """The run's evaluation split: query + gallery (re-id) or test (attributes)."""
    ds = _load_dataset(config)
    splits = getattr(ds, "splits", None) or {}
    query = list(splits.get("query") or getattr(ds, "query", None) or [])
    gallery = list(splits.get("gallery") or getattr(ds, "gallery", None) or [])
    rng = np.random.default_rng(seed)
    if query and gallery:
        if max_images and len(query) + len(gallery) > max_images:
            nq = max(1, int(max_images * len(query) / (len(query) + len(gallery))))
            query = [query[i] for i in sorted(rng.permutation(len(query))[:nq])]
            gallery = [gallery[i] for i in sorted(rng.permutation(len(gallery))[:max_images - nq])]
        records = query + gallery
        desc = f"{config.get('dataset')} query ({len(query)}) + gallery ({len(gallery)})"
    else:
        records = list(splits.get("test") or getattr(ds, "test", None) or [])
        if not records:
            raise ExportError(f"dataset {config.get('dataset')!r} has no query/gallery or test split to evaluate on")
        if max_images and len(records) > max_images:
            records = [records[i] for i in sorted(rng.permutation(len(records))[:max_images])]
        desc = f"{config.get('dataset')} test ({len(records)})"
    images, kept = load_images([r.path for r in records], input_size)
    num_query = sum(1 for i in kept if i < len(query)) if (query and gallery) else 0
    recs = [records[i] for i in kept]
    attrs = None
    labelled = np.array([r.attributes is not None for r in recs], bool)
    if labelled.any():  # distractors / junk have no labels: NaN rows, left out of mA
        width = len(next(r.attributes for r in recs if r.attributes is not None))
        attrs = np.full((len(recs), width), np.nan, np.float32)
        for i, r in enumerate(recs):
            if r.attributes is not None:
                attrs[i] = np.asarray(r.attributes, np.float32)
    return EvalSet(images, np.array([r.pid for r in recs]), np.array([r.camid for r in recs]),
                   num_query, attrs, desc)


# --------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------
def keras_outputs(model, images: np.ndarray, batch_size: int = 32) -> dict:
    outs: dict[str, list] = {}
    for i in range(0, len(images), batch_size):
        o = model(images[i:i + batch_size].astype(np.float32), training=False)
        for k in ("embedding", "attributes"):
            if k in o:
                outs.setdefault(k, []).append(np.asarray(o[k], np.float32))
    return {k: np.concatenate(v) for k, v in outs.items()}


def tflite_outputs(model_path: str, images: np.ndarray, num_threads: int | None = None) -> dict:
    """Run the exported file through the edge runtime (what a device runs)."""
    from edge.runtime import EdgeModel

    return EdgeModel(model_path, num_threads=num_threads).run(images)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(den, 1e-12)


def evaluate_outputs(outputs: dict, ev: EvalSet) -> dict:
    """rank1 / mAP (re-id) and mA (attributes) as fractions, for one variant."""
    from keras_hpnet import metrics

    res = {}
    emb = outputs["embedding"]
    if ev.num_query and ev.num_query < len(emb):
        q, g = emb[:ev.num_query], emb[ev.num_query:]
        dist = metrics.euclidean_distance(q, g)
        m = metrics.reid_metrics(np.asarray(dist), ev.pids[:ev.num_query], ev.pids[ev.num_query:],
                                 ev.camids[:ev.num_query], ev.camids[ev.num_query:])
        res["rank1"] = float(m["rank1"])
        res["mAP"] = float(m["mAP"])
    if ev.attributes is not None and "attributes" in outputs:
        rows = ~np.isnan(ev.attributes).any(axis=1)
        res["mA"] = float(metrics.attribute_metrics(outputs["attributes"][rows], ev.attributes[rows])["mA"])
    return res


def compare(reference: dict, outputs: dict) -> dict:
    """Embedding cosine (mean, min) and attribute probability difference vs the float reference."""
    cos = cosine(reference["embedding"], outputs["embedding"])
    res = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
    if "attributes" in reference and "attributes" in outputs:
        diff = np.abs(reference["attributes"] - outputs["attributes"])
        res["attributes_mean_abs_diff"] = float(diff.mean())
        res["attributes_max_abs_diff"] = float(diff.max())
        # Decisions that quantization changed (prediction = prob > 0.5, as keras_hpnet.metrics.attribute_metrics).
        res["attributes_flipped"] = float(np.mean((reference["attributes"] > 0.5) != (outputs["attributes"] > 0.5)))
    return res


PARITY_TARGET_POINTS = 1.0


def parity_table(report: dict) -> str:
    cols = [("variant", 10), ("size_MB", 9), ("cos_mean", 9), ("cos_min", 9), ("rank1", 7), ("mAP", 7), ("mA", 7),
            ("attr_flip%", 11)]
    lines = ["".join(f"{c:>{w}}" for c, w in cols)]
    for name, row in report["variants"].items():
        cells = [name,
                 f"{row['size_bytes'] / 1e6:.2f}" if row.get("size_bytes") else "-",
                 f"{row['cosine_mean']:.4f}" if "cosine_mean" in row else "-",
                 f"{row['cosine_min']:.4f}" if "cosine_min" in row else "-"]
        for k in ("rank1", "mAP", "mA"):
            cells.append(f"{100 * row[k]:.1f}" if k in row else "-")
        cells.append(f"{100 * row['attributes_flipped']:.2f}" if "attributes_flipped" in row else "-")
        lines.append("".join(f"{c:>{w}}" for c, (_, w) in zip(cells, cols)))
    t = report.get("target")
    if t:
        lines.append(f"target: int8 within {t['points']} point(s) of float on {', '.join(t['metrics']) or '-'}: "
                     + ("met" if t["met"] else "NOT met") + (f" ({t['detail']})" if t.get("detail") else ""))
    return "\n".join(lines)


def _target(report: dict) -> dict | None:
    rows = report["variants"]
    if "int8" not in rows or "keras" not in rows:
        return None
    ref, q = rows["keras"], rows["int8"]
    checked = [k for k in ("rank1", "mA") if k in ref and k in q]
    gaps = {k: 100 * (ref[k] - q[k]) for k in checked}
    return {"points": PARITY_TARGET_POINTS, "metrics": checked,
            "met": all(g <= PARITY_TARGET_POINTS for g in gaps.values()),
            "detail": ", ".join(f"{k} {-g:+.2f} points" for k, g in gaps.items())}


def write_parity(path: str, report: dict) -> None:
    """Merge `report` into the parity report at `path` (JSON; table beside it as .txt)."""
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
            if old.get("evaluation") == report.get("evaluation"):
                merged = dict(old.get("variants", {}))
                merged.update(report["variants"])
                report = dict(report, variants=merged)
        except (OSError, json.JSONDecodeError):
            pass  # unreadable old report: replaced
    order = ["keras"] + [q for q in QUANTIZATIONS]
    report["variants"] = dict(sorted(report["variants"].items(),
                                     key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
    report["target"] = _target(report)
    write_text_atomic(path, json.dumps(report, indent=2) + "\n")
    write_text_atomic(os.path.splitext(path)[0] + ".txt", parity_table(report) + "\n")
    return report


# --------------------------------------------------------------------------
# The whole export of a run
# --------------------------------------------------------------------------
@dataclasses.dataclass
class Exported:
    quantization: str
    path: str
    metadata_path: str
    size_bytes: int
    ops: list[OpInfo]
    constant_activations: list[str] = dataclasses.field(default_factory=list)  # int8: see widen_degenerate_ranges


def export_model(model, metadata: ModelMetadata, quantization: str, out_path: str, *, io_type: str = "float32",
                 representative_images=None, verbose: bool = True) -> Exported:
    """Convert, check ops, write `out_path` and its sidecar atomically."""
    t0 = time.time()
    notes: dict = {}
    flatbuffer = convert(model, quantization, io_type=io_type, representative_images=representative_images,
                         report=notes)
    ops = inspect_ops(flatbuffer)
    md = dataclasses.replace(metadata, quantization=quantization,
                             input_dtype=io_type if quantization == "int8" else "float32",
                             extra=dict(metadata.extra, outputs=output_names(model), io_type=io_type if quantization == "int8" else "float32",
                                        float_ops=sorted({o.name for o in ops if o.float_compute})
                                        if quantization == "int8" else []))
    write_bytes_atomic(out_path, flatbuffer)
    meta_path = os.path.splitext(out_path)[0] + ".json"
    md.save(meta_path)
    constant = list(notes.get("constant_activations") or [])
    if verbose:
        print(f"\n{quantization}: {out_path} ({len(flatbuffer) / 1e6:.2f} MB, {time.time() - t0:.1f} s)")
        print(op_summary(ops))
        if constant:
            print(f"{len(constant)} activation(s) were zero for every calibration image (dead ReLU or zero "
                  f"weights; quantized with the range [0, 1]): {', '.join(n.split(';')[0] for n in constant[:3])}"
                  + (", ..." if len(constant) > 3 else ""))
    return Exported(quantization, out_path, meta_path, len(flatbuffer), ops, constant)


def export_run(run_dir: str, quantizations, *, io_type: str | None = None, out: str | None = None,
               num_calibration: int = 100, images_dir: str | None = None, parity: bool = True,
               max_eval_images: int | None = None, num_threads: int | None = None,
               verbose: bool = True) -> tuple[list[Exported], dict | None]:
    """Export `run_dir` in each of `quantizations`; write the parity report beside them."""
    from export.run import load_run

    quantizations = list(quantizations)
    for q in quantizations:
        if q not in QUANTIZATIONS:
            raise ExportError(f"quantization {q!r}: choose one of {', '.join(QUANTIZATIONS)} or all")
    run = load_run(run_dir)
    name = run.metadata.model_name
    if out and out.endswith(".tflite"):
        if len(quantizations) != 1:
            raise ExportError("--out names one .tflite file: give one quantization, or a directory")
        paths = {quantizations[0]: out}
        out_dir = os.path.dirname(os.path.abspath(out))
    else:
        out_dir = out or os.path.join(run_dir, "tflite")
        paths = {q: os.path.join(out_dir, f"{name}_{q}.tflite") for q in quantizations}
    size = tuple(run.model.input_size)
    calib = None
    if "int8" in quantizations:
        calib = calibration_images(run.config, size, num_calibration, seed=int(run.config.get("seed") or 0),
                                   images_dir=images_dir)
    exported = []
    for q in quantizations:
        io = (io_type or "uint8") if q == "int8" else "float32"
        exported.append(export_model(run.model, run.metadata, q, paths[q], io_type=io,
                                     representative_images=calib, verbose=verbose))
    report = None
    if parity:
        ev = evaluation_set(run.config, size, max_eval_images)
        ref = keras_outputs(run.model, ev.images)
        report = {"run_dir": os.path.abspath(run_dir), "model": name,
                  "evaluation": ev.description, "reference": "keras float32 (model.keras)",
                  "variants": {"keras": evaluate_outputs(ref, ev)}}
        for e in exported:
            outs = tflite_outputs(e.path, ev.images, num_threads)
            row = {"path": os.path.basename(e.path), "size_bytes": e.size_bytes}
            row.update(compare(ref, outs))
            row.update(evaluate_outputs(outs, ev))
            report["variants"][e.quantization] = row
        report = write_parity(os.path.join(out_dir, "parity.json"), report)
        if verbose:
            print(f"\nparity on {ev.description} ({os.path.join(out_dir, 'parity.json')}):")
            print(parity_table(report))
    return exported, report


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    del argv
    quants = QUANTIZATIONS if FLAGS.quantization == "all" else [q.strip() for q in FLAGS.quantization.split(",")]
    try:
        export_run(FLAGS.run_dir, quants, io_type=FLAGS.io_type, out=FLAGS.out,
                   num_calibration=FLAGS.num_calibration, images_dir=FLAGS.images,
                   parity=FLAGS.parity, max_eval_images=FLAGS.max_eval_images, num_threads=FLAGS.num_threads)
    except ValueError as e:  # ExportError, RunError, metadata/image errors
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _define_flags():
    from absl import flags

    flags.DEFINE_string("run_dir", None, "Training run directory (config.json + model.keras).", required=True)
    flags.DEFINE_string("quantization", "int8", "float32, float16, dynamic, int8, a comma list, or all.")
    flags.DEFINE_enum("io_type", None, list(IO_TYPES), "int8 model input/output tensor type (default uint8).")
    flags.DEFINE_string("out", None, "Output .tflite path (one quantization) or directory (default RUN_DIR/tflite).")
    flags.DEFINE_integer("num_calibration", 100, "Training images used to calibrate int8.")
    flags.DEFINE_string("images", None, "Folder of crops to calibrate on instead of the run's training split.")
    flags.DEFINE_boolean("parity", True, "Evaluate every variant and write parity.json / parity.txt.")
    flags.DEFINE_integer("max_eval_images", None, "Evaluate on a random subset of this many images.")
    flags.DEFINE_integer("num_threads", None, "LiteRT threads for the parity run.")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
