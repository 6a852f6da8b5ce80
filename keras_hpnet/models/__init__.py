"""keras_hpnet.models."""
