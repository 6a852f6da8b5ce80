"""BN-Inception (Inception-v2) module, the building block of HydraPlus-Net's M-net.

Ioffe & Szegedy 2015 (Fig. 5 / Table 1); used by HydraPlus-Net (Liu et al. 2017,
Sec. 3.1) in the authors' half-width variant.
"""

import keras

from keras_hpnet.layers._util import build_chain, run_chain
from keras_hpnet.layers.conv_block import ConvBlock


@keras.saving.register_keras_serializable(package="keras_hpnet")
class InceptionV2Block(keras.layers.Layer):
    """Parallel 1x1, 1x1->3x3, 1x1->3x3->3x3 and pool(->1x1) branches, concatenated.

    With `strides=2` (a reduction module) the 1x1 branch and the pool projection
    are dropped: the 3x3 branches stride and the max-pooled input passes through.

    Args:
        branch_1x1: channels of the 1x1 branch (0 = none).
        reduce_3x3, branch_3x3: 1x1 reduction and 3x3 output channels.
        reduce_double, branch_double: 1x1 reduction and the two 3x3s' channels.
        pool_proj: channels of the 1x1 after pooling (0 = pooled input passes through).
        pool: "avg" or "max".
        strides: 1 or 2.
        width: channel multiplier applied to every branch (for small/fast variants).
    """

    _takes_training = True

    def __init__(self, branch_1x1, reduce_3x3, branch_3x3, reduce_double, branch_double,
                 pool_proj, pool="avg", strides=1, width=1.0, **kwargs):
        super().__init__(**kwargs)
        if pool not in ("avg", "max"):
            raise ValueError(f"InceptionV2Block: pool must be 'avg' or 'max', got {pool!r}")
        if strides not in (1, 2):
            raise ValueError(f"InceptionV2Block: strides must be 1 or 2, got {strides}")
        self.branch_1x1, self.reduce_3x3, self.branch_3x3 = branch_1x1, reduce_3x3, branch_3x3
        self.reduce_double, self.branch_double, self.pool_proj = reduce_double, branch_double, pool_proj
        self.pool, self.strides, self.width = pool, int(strides), float(width)

        def w(c):
            return max(1, int(round(c * self.width))) if c else 0

        s = self.strides
        self.branches = []
        if w(branch_1x1) and s == 1:
            self.branches.append([ConvBlock(w(branch_1x1), 1, name="b1x1", dtype=self.dtype_policy)])
        self.branches.append([ConvBlock(w(reduce_3x3), 1, name="b3x3_reduce", dtype=self.dtype_policy),
                              ConvBlock(w(branch_3x3), 3, strides=s, name="b3x3", dtype=self.dtype_policy)])
        self.branches.append([ConvBlock(w(reduce_double), 1, name="bdbl_reduce", dtype=self.dtype_policy),
                              ConvBlock(w(branch_double), 3, name="bdbl_a", dtype=self.dtype_policy),
                              ConvBlock(w(branch_double), 3, strides=s, name="bdbl_b", dtype=self.dtype_policy)])
        pool_layer = (keras.layers.AveragePooling2D if pool == "avg" else keras.layers.MaxPooling2D)(
            3, strides=s, padding="same", name="pool", dtype=self.dtype_policy)
        pool_branch = [pool_layer]
        if w(pool_proj) and s == 1:
            pool_branch.append(ConvBlock(w(pool_proj), 1, name="pool_proj", dtype=self.dtype_policy))
        self.branches.append(pool_branch)

    def build(self, input_shape):
        self._out_channels = 0
        for branch in self.branches:
            self._out_channels += build_chain(branch, input_shape)[-1]
        self.built = True

    def call(self, x, training=None):
        return keras.ops.concatenate([run_chain(b, x, training) for b in self.branches], axis=-1)

    def compute_output_shape(self, input_shape):
        out = 0
        for branch in self.branches:
            shape = tuple(input_shape)
            for layer in branch:
                shape = tuple(layer.compute_output_shape(shape))
            out += shape[-1]
        return tuple(shape[:-1]) + (out,)

    def get_config(self):
        config = super().get_config()
        config.update(branch_1x1=self.branch_1x1, reduce_3x3=self.reduce_3x3,
                      branch_3x3=self.branch_3x3, reduce_double=self.reduce_double,
                      branch_double=self.branch_double, pool_proj=self.pool_proj,
                      pool=self.pool, strides=self.strides, width=self.width)
        return config
