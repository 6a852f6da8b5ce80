"""int8 lowerings for XNNPACK: average pooling (a rewrite of the frozen graph) and the region sampler.

LiteRT's XNNPACK delegate has no int8 AVERAGE_POOL_2D: in a full-int8 model
each one runs on LiteRT's builtin kernel (~0.4 ms each at HA-CNN sizes) and
splits the XNNPACK graph. `lower_average_pools` replaces every `AvgPool` node
of a frozen inference function by `average_pool_as_depthwise`, equal in float.
The Keras model, its layers and their classes are untouched: the rewrite works
on a copy of the traced graph (docs/edge.md, "Export").
`samplers_as_matrix_products` traces HA-CNN's region sampler without
FLOOR/CAST/GATHER (XNNPACK has no int32 compare/gather), as matrix products.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

_POOL_OP = "AvgPool"


def _same_padding(size: int, window: int, stride: int) -> tuple[int, int, int]:
    """(output size, padding before, padding after) along one axis for TF "SAME"."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def _window_counts(size: int, window: int, stride: int) -> np.ndarray:
    """Input elements inside each "SAME" window along one axis (windows cut by the border hold fewer)."""
    out, lo, _ = _same_padding(size, window, stride)
    starts = np.arange(out) * stride - lo
    return (np.minimum(starts + window, size) - np.maximum(starts, 0)).astype(np.float64)


def average_pool_as_depthwise(x, pool_size, strides, padding: str):
    """Average pooling (NHWC, TF semantics: SAME excludes the padding) as DEPTHWISE_CONV_2D.

    A depthwise convolution with weights `1/(kh*kw)` (exact in int8: one value
    per channel) gives the interior; with SAME padding the border pixels, whose
    windows hold fewer inputs, are rescaled by `y + y * c` with a constant map
    `c = kh*kw/count - 1` (zero inside, so the interior stays exact after
    quantization). Unequal strides (which TF's Eigen depthwise kernel rejects)
    run the convolution at stride 1 on the explicitly padded input and keep
    every stride-th output: the same windows.
    """
    import tensorflow as tf

    kh, kw = (int(v) for v in pool_size)
    sh, sw = (int(v) for v in strides)
    padding = padding.upper()
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    if h is None or w is None or c is None:
        raise ValueError(f"average pooling needs a static input shape to export, got {x.shape}")
    kernel = tf.constant(np.full((kh, kw, int(c), 1), 1.0 / (kh * kw), np.float32), x.dtype)
    if sh == sw:
        y = tf.nn.depthwise_conv2d(x, kernel, (1, sh, sw, 1), padding)
    else:
        if padding == "SAME":
            (_, top, bottom), (_, left, right) = _same_padding(h, kh, sh), _same_padding(w, kw, sw)
            x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
        y = tf.nn.depthwise_conv2d(x, kernel, (1, 1, 1, 1), "VALID")[:, ::sh, ::sw, :]
    if padding == "SAME":
        counts = np.outer(_window_counts(h, kh, sh), _window_counts(w, kw, sw))
        corr = (kh * kw) / counts - 1.0
        if np.any(corr):
            y = y + y * tf.constant(corr[None, :, :, None], x.dtype)
    return y


def _replacement_nodes(pool_node, input_shape, dtype):
    """NodeDefs computing `average_pool_as_depthwise` of the pool's input, the last one named like the pool."""
    import tensorflow as tf

    attr = pool_node.attr
    if attr["data_format"].s not in (b"", b"NHWC"):
        return None  # channels-first pooling: left as it is
    _, kh, kw, _ = attr["ksize"].list.i
    _, sh, sw, _ = attr["strides"].list.i
    scratch = tf.Graph()
    with scratch.as_default():
        x = tf.compat.v1.placeholder(dtype, input_shape, name="x")
        tf.identity(average_pool_as_depthwise(x, (kh, kw), (sh, sw), attr["padding"].s.decode()), name="y")
    prefix = pool_node.name + "/as_depthwise/"
    source = pool_node.input[0]

    def rename(ref):
        control = ref.startswith("^")
        name, _, port = ref.lstrip("^").partition(":")
        name = source if name == "x" and not control else prefix + name
        return ("^" if control else "") + name + (":" + port if port and port != "0" else "")

    nodes = []
    for node in scratch.as_graph_def().node:
        if node.name == "x":
            continue
        node.name = pool_node.name if node.name == "y" else prefix + node.name
        inputs = [rename(i) for i in node.input]
        del node.input[:]
        node.input.extend(inputs)
        node.ClearField("device")
        nodes.append(node)
    return nodes


def lower_average_pools(frozen):
    """A copy of the frozen concrete function `frozen` with every NHWC `AvgPool` as depthwise convolution.

    Returns `(function, count)`: a concrete function with the same inputs and
    outputs (in order) and the number of pools rewritten (`frozen` itself
    when there are none).
    """
    import tensorflow as tf

    graph_def = frozen.graph.as_graph_def()
    if any(n.op == _POOL_OP for f in graph_def.library.function for n in f.node_def):
        raise ValueError("average pooling inside a nested tf.function cannot be lowered for int8 export")
    nodes, count = [], 0
    for node in graph_def.node:
        replacement = None
        if node.op == _POOL_OP:
            op = frozen.graph.get_operation_by_name(node.name)
            replacement = _replacement_nodes(node, op.inputs[0].shape, op.inputs[0].dtype)
        if replacement is None:
            nodes.append(node)
        else:
            nodes.extend(replacement)
            count += 1
    if not count:
        return frozen, 0
    del graph_def.node[:]
    graph_def.node.extend(nodes)
    wrapped = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
    lookup = wrapped.graph.as_graph_element
    return wrapped.prune([lookup(t.name) for t in frozen.inputs], [lookup(t.name) for t in frozen.outputs]), count


def _hat_weights(coord, size):
    """Bilinear weights `max(0, 1 - |coord - k|)` of every pixel k < size: `[..., n, size]` (zero outside the map).

    Written as `min(max(0, 1 - e), max(1 + e, 0))`, `e = coord - k`: at integer
    coordinates TF's tie rules give the derivative from the right, as floor-based sampling.
    """
    import tensorflow as tf

    e = coord[..., None] - tf.range(size, dtype=coord.dtype)
    one, zero = tf.ones((), coord.dtype), tf.zeros((), coord.dtype)
    return tf.minimum(tf.maximum(zero, one - e), tf.maximum(one + e, zero))


def sample_as_matrix_products(sampler, features, translations):
    """`AffineRegionSampler` output as two interpolation-matrix products per region (float32).

    `Wy [Ho, H] @ X @ Wx^T [W, Wo]` with hat weights built from the translation
    by SUB/MINIMUM/MAXIMUM: no FLOOR/CAST/compare/GATHER, so XNNPACK runs all of
    it (BATCH_MATMUL in float32; `convert` keeps these ops float in int8 models).
    Equal to the layer's floor/gather sampling within float rounding.
    """
    import tensorflow as tf

    features = tf.cast(features, tf.float32)
    translations = tf.cast(translations, tf.float32)
    out_h, out_w = sampler.output_size
    height, width = sampler._height, sampler._width
    num_regions, channels = translations.shape[1], features.shape[-1]
    px = tf.constant(sampler._grid_x, tf.float32)[None, None, :] + translations[:, :, 0:1] * ((width - 1) / 2.0)
    py = tf.constant(sampler._grid_y, tf.float32)[None, None, :] + translations[:, :, 1:2] * ((height - 1) / 2.0)
    rows = tf.matmul(tf.reshape(_hat_weights(py, height), (-1, num_regions * out_h, height)),
                     tf.reshape(features, (-1, height, width * channels)))       # [N, R*Ho, W*C]
    rows = tf.reshape(rows, (-1, out_h, width, channels))                           # [N*R, Ho, W, C]
    wx = tf.reshape(_hat_weights(px, width), (-1, 1, out_w, width))                 # [N*R, 1, Wo, W]
    return tf.matmul(wx, rows)


@contextlib.contextmanager
def samplers_as_matrix_products(model):
    """While tracing: every `AffineRegionSampler` of `model` computes `sample_as_matrix_products`.

    Set on the layer instances and removed afterwards: the Keras classes and
    the model's own calls are untouched.
    """
    from keras_hpnet.layers import AffineRegionSampler

    flatten = getattr(model, "_flatten_layers", None)  # Keras layers; other callables have none
    samplers = [l for l in flatten() if isinstance(l, AffineRegionSampler)] if flatten else []
    for s in samplers:
        s.call = functools.partial(lambda layer, inputs: sample_as_matrix_products(layer, *inputs), s)
    try:
        yield samplers
    finally:
        for s in samplers:
            del s.call
