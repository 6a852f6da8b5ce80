"""keras_hpnet.datasets."""
