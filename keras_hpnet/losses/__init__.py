"""keras_hpnet.losses."""
