"""The built-in networks' specs (keras_hpnet.model_spec), registered on import.

Adding a network: its class in one new file of `keras_hpnet/models/` and one
`register(ModelSpec(...))` here (or in the user's own code); nothing in
`training/`, `export/` or `edge/` names a model. See docs/models.md.
"""

from keras_hpnet.model_spec import ModelSpec, Option, StageSpec, register

POOLINGS = ("avg", "max", "avgmax")  # HAT-CNN's attribute network (keras_hpnet.models.hatcnn)

_HACNN_OPTIONS = (Option("channels", (128, 256, 384)), Option("feature_dim", 512))
_MNET_OPTIONS = (Option("width", 1.0), Option("embedding_dim", 512))

# HydraPlus-Net's stage-wise training (Liu et al. 2017, Sec. 3.3; training.stages):
# M-net alone, then the AF-net on the fixed M-net, then the fusion layers.
HPNET_STAGES = (
    StageSpec("mnet", ("main_net", "fusion"), switches=(("af_net_enabled", False),), share=0.4, note="AF-net off"),
    StageSpec("afnet", ("af_net", "fusion"), share=0.4),
    StageSpec("fusion", ("fusion",), share=0.2),
)
HPNET_PARTS = ("main_net", "af_net", "fusion")
# HAT-CNN's attribute warm-up (--attribute_warmup; docs/training.md "HAT-CNN: the
# attribute warm-up", docs/models.md "The demo on a 2-core AVX2 CPU"): its attribute
# network is separate from HA-CNN, so it can train alone first,
# on 2x2-average-pooled (half-resolution) images at a quarter of the cost, before
# both networks train together at full resolution (the only resolution evaluated).
HATCNN_PARTS = ("identity_net", "attribute_net")
HATCNN_WARMUP = (
    StageSpec("attributes", ("attribute_net",),
              switches=(("identity_net_enabled", False), ("attribute_input_pool", 2)),
              note="HA-CNN off, attribute network on half-resolution images"),
    StageSpec("joint", HATCNN_PARTS),
)

HACNN = register(ModelSpec(
    name="hacnn", title="HA-CNN", builder="keras_hpnet.models.hacnn:HACNN", default_input_shape=(160, 64, 3),
    fixed_input_size=True, options=_HACNN_OPTIONS, attributes="none",
    summary="HA-CNN (Li et al. 2018): re-id, fixed 160x64"))
HATCNN = register(ModelSpec(
    name="hatcnn", title="HAT-CNN", builder="keras_hpnet.models.hatcnn:HATCNN", default_input_shape=(160, 64, 3),
    fixed_input_size=True,
    options=_HACNN_OPTIONS + (Option(
        "attribute_pooling", "avg", POOLINGS, feature="an attribute network",
        help="Pooling of hatcnn's attribute network: avg (global average, the released HAT-CNN), max "
             "(global max; synthetic preset) or avgmax (their sum)."),),
    attributes="required", embedding_ends_with_attributes=True,
    stage_parts=HATCNN_PARTS, attribute_warmup=HATCNN_WARMUP,
    summary="HAT-CNN: HA-CNN + attribute network, fixed 160x64"))
# M-net / HP-Net default 256x128 (HxW): pedestrian crops are about 2:1 (Market-1501
# 128x64, PA-100K/RAP/PETA portrait crops), so a 2:1 input keeps their aspect without
# the distortion of the released 224x224 square; it has 0.65x the pixels of 224x224
# and leaves an 8x4 map after the /32 network.
MNET = register(ModelSpec(
    name="mnet", title="M-net", builder="keras_hpnet.models.mnet:MNet", default_input_shape=(256, 128, 3),
    options=_MNET_OPTIONS, summary="M-net (HydraPlus-Net's main net)"))
HPNET = register(ModelSpec(
    name="hpnet", title="HP-Net", builder="keras_hpnet.models.hpnet:HPNet", default_input_shape=(256, 128, 3),
    options=_MNET_OPTIONS + (Option("num_maps", 8), Option("af_width", 0.5)),
    stages=HPNET_STAGES, stage_parts=HPNET_PARTS,
    summary="HydraPlus-Net (Liu et al. 2017): M-net + AF-net"))
TINY = register(ModelSpec(
    name="tiny", title="TinyNet", builder="keras_hpnet.models.tiny:TinyNet", default_input_shape=(64, 32, 3),
    options=(Option("width", 16), Option("feature_dim", 32), Option("depth", 3)),
    summary="a seconds-to-train smoke-test net (not a paper network)"))
