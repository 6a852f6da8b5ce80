"""keras_hpnet.metrics."""
