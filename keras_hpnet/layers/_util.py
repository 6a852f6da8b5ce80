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


class ParallelStreams(keras.layers.Layer):
    """Base of the Inception blocks: parallel chains of layers on one input,
    concatenated on channels into `filters` outputs. Subclasses set
    `self.filters` and `self.streams` (a list of layer lists) in __init__."""

    _takes_training = True

    def build(self, input_shape):
        for stream in self.streams:
            build_chain(stream, input_shape)
        self.built = True

    def call(self, x, training=None):
        return keras.ops.concatenate([run_chain(s, x, training) for s in self.streams], axis=-1)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.streams[0]:
            shape = tuple(layer.compute_output_shape(shape))
        return shape[:-1] + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters)
        return config
