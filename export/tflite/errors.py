"""The one error of the TFLite export."""


class ExportError(ValueError):
    """A model that cannot be exported as asked (the message says why)."""
