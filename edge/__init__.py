"""Edge runtime: LiteRT only, never TensorFlow."""
