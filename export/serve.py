"""``python -m export.serve``: the development model server (same flags as
before the move); the code is export.serving.server."""

from export.serving.server import ModelServer, define_flags, main  # noqa: F401
from export.serving.signatures import ServingError  # noqa: F401

if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
