"""``python -m export.client`` and ``from export.client import GrpcClient``
(same flags and names as before the move); the code is export.serving.client."""

from export.serving.client import *  # noqa: F401,F403 - the public names (its __all__)
from export.serving.client import define_flags, main

if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
