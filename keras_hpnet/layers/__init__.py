"""keras_hpnet.layers: one paper concept per file, each a registered Keras layer."""

from keras_hpnet.layers.affine_sampler import AffineRegionSampler, region_boxes
from keras_hpnet.layers.channel_attention import ChannelAttention
from keras_hpnet.layers.conv_block import ConvBlock
from keras_hpnet.layers.fused_batch_norm import FusedBatchNormalization
from keras_hpnet.layers.hard_attention import HARD_ATTENTION_INIT_BIAS, HardAttention
from keras_hpnet.layers.harmonious_attention import HarmoniousAttention
from keras_hpnet.layers.image_normalization import ImageNormalization
from keras_hpnet.layers.inception_a import InceptionA
from keras_hpnet.layers.inception_b import InceptionB
from keras_hpnet.layers.inception_v2 import InceptionV2Block
from keras_hpnet.layers.multi_directional_attention import MultiDirectionalAttention
from keras_hpnet.layers.soft_attention import SoftAttention
from keras_hpnet.layers.spatial_attention import SpatialAttention
from keras_hpnet.layers.temporal_pooling import TemporalPooling

__all__ = [
    "AffineRegionSampler", "ChannelAttention", "ConvBlock", "FusedBatchNormalization",
    "HARD_ATTENTION_INIT_BIAS",
    "HardAttention", "HarmoniousAttention", "ImageNormalization", "InceptionA", "InceptionB",
    "InceptionV2Block", "MultiDirectionalAttention", "SoftAttention", "SpatialAttention", "TemporalPooling",
    "region_boxes",
]
