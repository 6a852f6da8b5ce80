"""keras-hpnet: pedestrian re-identification and attribute recognition with
attention networks (HA-CNN, HAT-CNN, HydraPlus-Net) on Keras 3 / TensorFlow."""

from setuptools import find_packages, setup

# One version set that resolves together on Python 3.11 (`pip check` clean);
# see README "Dependencies" for why tensorflow-addons and tf-models-official
# are not among them.
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "numpy==2.4.6",
    "absl-py==2.5.1",
    "scipy==1.17.1",
    "pillow==13.0.0",
    "h5py==3.14.0",
    "ml_dtypes==0.6.0",
    "tensorflow-serving-api==2.21.0",
    "grpcio==1.85.1",
    "protobuf==7.36.2",
    "ai-edge-litert==2.3.0",
    "faiss-cpu==1.15.1",  # gallery index (keras_hpnet.retrieval.index); numpy fallback without it
]

EXTRAS_REQUIRE = {
    "test": [
        "pytest==9.2.0",
        "pytest-xdist==3.8.0",
        "pytest-timeout==2.4.0",
    ],
    # What an edge device needs (install with --no-deps, then these).
    "edge": ["ai-edge-litert==2.3.0", "numpy==2.4.6", "pillow==13.0.0"],
}

setup(
    name="keras-hpnet",
    version="0.1.0",
    description=__doc__.strip().splitlines()[0],
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["keras_hpnet*", "training*", "export*", "edge*"]),
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="Apache-2.0",
)
