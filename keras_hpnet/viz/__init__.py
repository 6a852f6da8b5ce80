"""keras_hpnet.viz."""
