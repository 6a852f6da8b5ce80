"""Small helpers shared by the layers (not public)."""

import keras


def build_chain(layers, input_shape):
    """Build `layers` in sequence starting from `input_shape`; return the output shape."""
    shape = tuple(input_shape)
    for layer in layers:
        if not layer.built:
            layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


def run_chain(layers, x, training=None):
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization) or getattr(layer, "_takes_training", False):
            x = layer(x, training=training)
        else:
            x = layer(x)
    return x
