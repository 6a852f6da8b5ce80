"""Keras model -> TFLite flatbuffer: float32, float16, dynamic-range and full int8.

Only builtin TFLite ops are allowed (edge interpreters have no Flex kernels):
a model that needs SELECT_TF_OPS or a custom op fails with the op named.
"""

from __future__ import annotations

import logging
import re
import warnings
import weakref

import numpy as np

from export.tflite import calibration
from export.tflite.errors import ExportError
from export.tflite.lowering import lower_average_pools, samplers_as_matrix_products
from export.tflite.ops import check_builtin, inspect_ops

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
IO_TYPES = ("float32", "uint8", "int8")

_FROZEN = weakref.WeakKeyDictionary()

# In full-int8 models these stay float32: LiteRT's XNNPACK delegate has no int8
# kernel for them but a float one, so keeping them float (with QUANTIZE /
# DEQUANTIZE around them, which XNNPACK also runs) leaves the whole graph to
# the delegate instead of splitting it around builtin kernels.
FLOAT_OPS_IN_INT8 = ("BATCH_MATMUL", "MAXIMUM", "MINIMUM", "RSQRT")


def float_sampler_nodes(model, ops) -> list[str]:
    """Output tensor names among `ops` (`inspect_ops`) computed inside the model's `AffineRegionSampler`s.

    They stay float32 in int8 models: the sampler's bilinear weights
    (`lowering.sample_as_matrix_products`) come from pixel coordinates that need
    sub-pixel precision (int8 would step them by ~0.6 px on an 80-pixel map).
    Tensors are named by the trace's name scopes (`hacnn_1/sampler1_1/...`,
    fused ops joined with `;`).
    """
    from keras_hpnet.layers import AffineRegionSampler

    flatten = getattr(model, "_flatten_layers", None)  # Keras layers; other callables have none
    samplers = {l.name for l in flatten() if isinstance(l, AffineRegionSampler)} if flatten else set()
    if not samplers:
        return []
    scope = re.compile(r"(^|/)(" + "|".join(re.escape(n) for n in sorted(samplers)) + r")(_\d+)?/")
    return [n for o in ops for n in o.output_names if any(scope.search(part) for part in n.split(";"))]


def output_names(model) -> list[str]:
    """Output tensors of the exported model, in order (recorded in the sidecar)."""
    return ["embedding", "attributes"] if int(getattr(model, "num_attributes", 0) or 0) else ["embedding"]


def inference_function(model, batch_size: int, lower_for_int8: bool = False):
    """The model's inference outputs as a frozen concrete function (cached per model).

    Outputs in `output_names(model)` order. Freezing here and converting the
    frozen graph is ~3x faster than handing the converter the live model
    (which saves a temporary SavedModel per conversion), and leaves no
    VAR_HANDLE/READ_VARIABLE ops behind. `lower_for_int8`: the model traced with
    its region samplers as matrix products (`lowering.samplers_as_matrix_products`)
    and average pooling as depthwise convolution (`lowering.lower_average_pools`).
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

        if lower_for_int8:
            with samplers_as_matrix_products(model):
                frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
            try:
                cache[key] = lower_average_pools(frozen)[0]
            except ValueError as e:
                raise ExportError(f"{getattr(model, 'name', 'model')}: {e}") from None
        else:
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
    if quantization == "int8" and (representative_images is None or len(representative_images) == 0):
        raise ExportError("int8 quantization needs representative (calibration) images")
    fn = inference_function(model, batch_size, lower_for_int8=quantization == "int8")
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
            calibrated, constant = calibration.widen_degenerate_ranges(converter.convert())
            if report is not None:
                report["constant_activations"] = constant
            flatbuffer = calibration.quantize_calibrated(
                calibrated, getattr(tf, io_type), FLOAT_OPS_IN_INT8, float_sampler_nodes(model, inspect_ops(calibrated)))
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
    check_builtin(inspect_ops(flatbuffer))
    return flatbuffer
