"""int8 lowering of average pooling for XNNPACK, as a rewrite of the frozen graph.

LiteRT's XNNPACK delegate has no int8 AVERAGE_POOL_2D: in a full-int8 model
each one runs on LiteRT's builtin kernel (~0.4 ms each at HA-CNN sizes) and
splits the XNNPACK graph. `lower_average_pools` replaces every `AvgPool` node
of a frozen inference function by `average_pool_as_depthwise`, equal in float.
The Keras model, its layers and their classes are untouched: the rewrite works
on a copy of the traced graph (docs/edge.md, "Export").
"""

from __future__ import annotations

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
