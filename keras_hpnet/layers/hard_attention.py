"""Hard regional attention of HA-CNN (Li et al. 2018, Sec. 3.1, Eq. 1, Fig. 3d)."""

import keras
import numpy as np

# Published initialisation (torchreid HA-CNN): regions start as 4 horizontal
# stripes centred at y = -0.75, -0.25, 0.25, 0.75 (normalised coordinates).
HARD_ATTENTION_INIT_BIAS = (0.0, -0.75, 0.0, -0.25, 0.0, 0.25, 0.0, 0.75)


@keras.saving.register_keras_serializable(package="keras_hpnet")
class HardAttention(keras.layers.Layer):
    """Regresses one translation `(tx, ty)` in (-1, 1) per region: `[N, R, 2]`.

    Global average pooling -> dense C -> 2R (kernel initialised to zero, bias to
    the published stripe layout) -> tanh. The region scales are fixed by the
    model (HA-CNN: full width, a quarter of the height). Under a 16-bit mixed
    precision policy it computes in float32 (a bfloat16 tanh would place the
    regions to ~0.15 px at level 1).
    """

    def __init__(self, num_regions=4, **kwargs):
        super().__init__(**kwargs)
        if self.dtype_policy.compute_dtype in ("float16", "bfloat16"):
            self.dtype_policy = "float32"
        self.num_regions = int(num_regions)
        if self.num_regions == 4:
            bias = np.array(HARD_ATTENTION_INIT_BIAS, "float32")
        else:  # equally spaced stripes
            centres = (2.0 * np.arange(self.num_regions) + 1.0) / self.num_regions - 1.0
            bias = np.stack([np.zeros_like(centres), centres], 1).reshape(-1).astype("float32")
        self.fc = keras.layers.Dense(
            2 * self.num_regions, kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(bias), name="fc", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.fc.build((input_shape[0], input_shape[-1]))
        self.built = True

    def call(self, x):
        y = keras.ops.tanh(self.fc(keras.ops.mean(x, axis=(1, 2))))
        return keras.ops.reshape(y, (-1, self.num_regions, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_regions, 2)

    def get_config(self):
        config = super().get_config()
        config.update(num_regions=self.num_regions)
        return config
