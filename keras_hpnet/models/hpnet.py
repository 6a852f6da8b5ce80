"""HydraPlus-Net: M-net plus the Attentive Feature net (Liu et al. 2017, Sec. 3)."""

import keras

from keras_hpnet.layers import MultiDirectionalAttention
from keras_hpnet.models.mnet import MNET_BLOCKS, MNet


@keras.saving.register_keras_serializable(package="keras_hpnet")
class HPNet(MNet):
    """HydraPlus-Net (HP-net) for pedestrian attributes and re-identification.

    AF-net (Sec. 3.2): three MDA modules; module m takes its `num_maps` attention
    maps from the output of M-net block m and applies them to the outputs of
    blocks 1, 2 and 3 (9 attentive branches). Each attentive feature passes through
    the blocks that follow its level (an AF-net copy of M-net blocks 2-3 for level
    1, of block 3 for level 2, none for level 3), shared by the maps of the branch
    (maps folded into the batch). The branch outputs are concatenated with the
    M-net output, pooled (GAP) and fed to the FC heads.

    Cost versus the released model: the released model keeps one copy of the
    following blocks per attention map (8 per branch); here one copy per branch
    is shared by its 8 maps (8x fewer AF-net block parameters), and the AF-net
    copies are `af_width` (default 0.5) as wide as the M-net blocks, which cuts
    the AF-net FLOPs about 4x so the net trains on a 2-core CPU. `af_width=1.0`
    gives the released per-image computation. See docs/models.md.

    Args: as `MNet`, plus `num_maps` (attention maps per MDA module, 8) and
    `af_width` (channel multiplier of the AF-net block copies, 0.5).
    """

    model_name = "hpnet"
    # Stage-wise training (the paper's: M-net first, then the AF-net on the fixed
    # M-net) starts with M-net alone: with af_net_enabled off the AF-net is not run
    # and its part of the fused feature is zeros (training.stages).
    STAGE_SWITCHES = {"af_net_enabled": True}

    def __init__(self, num_classes, num_attributes=0, input_shape=None, num_maps=8,
                 af_width=0.5, **kwargs):
        super().__init__(num_classes, num_attributes, input_shape, **kwargs)
        self.num_maps = int(num_maps)
        self.af_width = float(af_width)
        if self.num_maps < 1:
            raise ValueError(f"{self.model_name}: num_maps must be >= 1, got {num_maps!r}")
        if not self.af_width > 0:
            raise ValueError(f"{self.model_name}: af_width must be > 0, got {af_width!r}")
        scaled = [[dict(cfg, width=self.width * self.af_width) for cfg in block]
                  for block in MNET_BLOCKS]
        tails = [scaled[1] + scaled[2], scaled[2], []]
        self.mda_modules = [
            MultiDirectionalAttention(tails, self.num_maps, name=f"mda{m + 1}") for m in range(3)
        ]


    @property
    def af_net_layers(self):
        """AF-net: the three MDA modules with their block copies (Sec. 3.2)."""
        return list(self.mda_modules)

    def _fused_features(self, levels, training):
        pooled = [keras.ops.mean(levels[-1], axis=(1, 2))]
        attention = {}
        if not self.af_net_enabled:
            if not all(mda.built for mda in self.mda_modules):
                raise RuntimeError(f"{self.name}: build the model (call it once) before disabling the AF-net")
            width = sum(mda.output_channels for mda in self.mda_modules)
            pooled.append(keras.ops.zeros((keras.ops.shape(pooled[0])[0], width), dtype=pooled[0].dtype))
            return keras.ops.concatenate(pooled, axis=-1), attention
        for m, mda in enumerate(self.mda_modules):
            features, maps = mda([levels[m], *levels], training=training)
            pooled.append(features)
            attention[f"mda{m + 1}"] = maps
        return keras.ops.concatenate(pooled, axis=-1), attention

    def attention_maps(self, x):
        """MDA attention maps: `mda{1,2,3}` of shape [N, h_m, w_m, num_maps]."""
        return super().attention_maps(x)

    def get_config(self):
        config = super().get_config()
        config.update(num_maps=self.num_maps, af_width=self.af_width)
        return config
