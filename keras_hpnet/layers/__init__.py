"""keras_hpnet.layers."""
