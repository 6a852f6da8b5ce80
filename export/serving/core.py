"""Request validation and execution shared by the gRPC and REST front ends.

Everything a request claims is checked before TensorFlow sees it: signature
and input names, dtype, rank, fixed dimensions and the batch size (from the
declared shape: :meth:`PredictionCore.check_shape` runs before any tensor is
materialised), and for encoded images their size in bytes and, from the
header, in pixels (docs/serving.md "Bounds").
"""

from __future__ import annotations

import numpy as np

from export.serving.signatures import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_SIGNATURE,
    ServingError,
)
from export.serving.store import ModelStore, ServedVersion, Signature, first_line


def dtype_name(dtype) -> str:
    """The TensorFlow name of a numpy dtype ("string" for bytes/objects)."""
    return "string" if dtype == object or getattr(dtype, "kind", "") in "SO" else str(np.dtype(dtype))


class PredictionCore:
    """Checks requests against a signature and its bounds, then runs them."""

    def __init__(self, store: ModelStore, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        for name, value in (("max_batch_size", max_batch_size), ("max_image_bytes", max_image_bytes),
                            ("max_image_pixels", max_image_pixels)):
            if int(value) < 1:
                raise ValueError(f"--{name} {value}: must be at least 1")
        self.store = store
        self.max_batch_size = int(max_batch_size)
        self.max_image_bytes = int(max_image_bytes)
        self.max_image_pixels = int(max_image_pixels)

    def signature(self, served: ServedVersion, signature_name: str) -> Signature:
        sig = served.signatures.get(signature_name or DEFAULT_SIGNATURE)
        if sig is None:
            raise ServingError(
                "NOT_FOUND",
                f"Serving signature name: {signature_name!r} not found in signature def "
                f"(available: {', '.join(sorted(served.signatures))})",
            )
        return sig

    def check_names(self, sig: Signature, names) -> None:
        missing = sorted(set(sig.inputs) - set(names))
        extra = sorted(set(names) - set(sig.inputs))
        if missing or extra:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"inputs must be exactly {sorted(sig.inputs)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else ""),
            )

    def check_shape(self, name: str, spec, shape: tuple) -> None:
        """Rank, fixed dims and batch size of input `name` against its spec."""
        want = spec.shape.as_list()
        if len(shape) != len(want):
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: expected rank {len(want)} {want}, got shape {list(shape)}")
        for i, (got, exp) in enumerate(zip(shape, want)):
            if exp is not None and got != exp:
                raise ServingError("INVALID_ARGUMENT", f"input {name!r}: dimension {i} must be {exp}, got shape {list(shape)}")
        if want and want[0] is None:
            if shape[0] == 0:
                raise ServingError("INVALID_ARGUMENT", f"input {name!r}: empty batch")
            if shape[0] > self.max_batch_size:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"input {name!r}: batch of {shape[0]} exceeds the maximum {self.max_batch_size} (--max_batch_size)",
                )

    def check_dtype(self, name: str, spec, dtype: str) -> None:
        want = spec.dtype.name
        if dtype != want:
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: expects {want} but {dtype} was provided")

    def check_image_bytes(self, name: str, arr: np.ndarray) -> None:
        """Each element: non-empty bytes, at most max_image_bytes, and (read
        from its header, before anything decodes it) at most max_image_pixels."""
        from export.serving.images import image_size

        for i, b in enumerate(arr.reshape(-1)):
            if not isinstance(b, bytes) or not b:
                raise ServingError("INVALID_ARGUMENT", f"input {name!r}: element {i} is empty or not bytes")
            if len(b) > self.max_image_bytes:
                raise ServingError("INVALID_ARGUMENT", f"input {name!r}: element {i} is {len(b)} bytes (max {self.max_image_bytes})")
            size = image_size(b)
            if size is not None and size[0] * size[1] > self.max_image_pixels:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"input {name!r}: element {i} is a {size[0]}x{size[1]} image ({size[0] * size[1]} pixels), "
                    f"over the limit of {self.max_image_pixels} pixels (--max_image_pixels)",
                )

    def run(self, served: ServedVersion, sig: Signature, arrays: dict, output_filter=()) -> dict:
        """Check `arrays` (name -> numpy) against `sig` and run it -> name -> numpy."""
        import tensorflow as tf

        self.check_names(sig, arrays)
        batch = set()
        feeds = {}
        for name, arr in arrays.items():
            spec = sig.inputs[name]
            self.check_dtype(name, spec, dtype_name(arr.dtype))
            self.check_shape(name, spec, arr.shape)
            if spec.shape.rank:
                batch.add(arr.shape[0])
            if spec.dtype == tf.string:  # encoded images (the serve_image_bytes contract)
                self.check_image_bytes(name, arr)
                feeds[name] = arr.astype(object)
            else:
                feeds[name] = np.asarray(arr, spec.dtype.as_numpy_dtype)
        if len(batch) > 1:
            raise ServingError("INVALID_ARGUMENT", f"inputs disagree on the batch size: {sorted(batch)}")
        unknown = sorted(set(output_filter) - set(sig.outputs))
        if unknown:
            raise ServingError("INVALID_ARGUMENT", f"output_filter: unknown output(s) {unknown} (have {sig.outputs})")
        try:
            return served.run(sig, feeds, list(output_filter) or sig.outputs)
        except tf.errors.InvalidArgumentError as e:
            raise ServingError("INVALID_ARGUMENT", f"the model rejected the input: {first_line(e)}") from None
        except tf.errors.OpError as e:
            raise ServingError("INTERNAL", f"model execution failed: {first_line(e)}") from None
