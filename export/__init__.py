"""Export: SavedModel for TF-Serving, TFLite for edge devices, serving clients."""
