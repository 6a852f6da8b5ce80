"""Input normalisation inside the model, so exported models take raw RGB."""

import keras

from keras_hpnet.metadata import IMAGENET_MEAN, IMAGENET_STD


@keras.saving.register_keras_serializable(package="keras_hpnet")
class ImageNormalization(keras.layers.Layer):
    """Casts uint8/float RGB in 0..255 to float32 and applies `(x - mean) / std`.

    Defaults are the ImageNet statistics of `keras_hpnet.metadata` (0..255 scale).
    """

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def call(self, x):
        x = keras.ops.cast(x, "float32")
        mean = keras.ops.convert_to_tensor(self.mean, "float32")
        inv_std = keras.ops.convert_to_tensor([1.0 / s for s in self.std], "float32")
        return (x - mean) * inv_std

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(mean=list(self.mean), std=list(self.std))
        return config
