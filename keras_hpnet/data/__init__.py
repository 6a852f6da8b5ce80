"""keras_hpnet.data."""
