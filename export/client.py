"""``python -m export.client`` and ``from export.client import GrpcClient``
(same flags and names as before the move); the code is export.serving.client."""

from export.serving.client import (  # noqa: F401
    BadImageError,
    GrpcClient,
    InvalidInputError,
    NotFoundError,
    RestClient,
    ServerUnavailableError,
    ServingError,
    define_flags,
    main,
    read_image_bytes,
)

if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
