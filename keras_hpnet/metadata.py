"""The metadata record that travels with every exported model.

Numpy/json only: the edge runtime reads it on devices without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json

from keras_hpnet.fileio import write_text_atomic

FORMAT_VERSION = 1

# ImageNet statistics on the 0..255 scale; models apply them internally.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclasses.dataclass
class ModelMetadata:
    """What a consumer of an exported model needs to feed it and read it."""

    model_name: str
    input_height: int
    input_width: int
    embedding_size: int
    attribute_names: list[str] = dataclasses.field(default_factory=list)
    version: int = 1
    input_dtype: str = "uint8"
    # Applied inside the model: callers pass raw RGB 0..255.
    normalization_mean: tuple[float, ...] = IMAGENET_MEAN
    normalization_std: tuple[float, ...] = IMAGENET_STD
    normalization_inside_model: bool = True
    quantization: str = "none"
    distance: str = "euclidean"
    extra: dict = dataclasses.field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # Open-set "same person" threshold and the distance it applies to
    # (keras_hpnet.retrieval.calibration, docs/retrieval.md); None: never calibrated.
    match_threshold: float | None = None
    match_distance: str | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["normalization_mean"] = list(self.normalization_mean)
        d["normalization_std"] = list(self.normalization_std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict, source: str = "metadata") -> "ModelMetadata":
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        required = ["model_name", "input_height", "input_width", "embedding_size"]
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"{source}: missing field(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in d.items() if k in names}
        for k in ("input_height", "input_width", "embedding_size", "version"):
            if k in kwargs:
                try:
                    kwargs[k] = int(kwargs[k])
                except (TypeError, ValueError):
                    raise ValueError(f"{source}: field {k!r} must be an integer, got {d[k]!r}") from None
        for k in ("normalization_mean", "normalization_std"):
            if k in kwargs:
                kwargs[k] = tuple(float(v) for v in kwargs[k])
        if kwargs.get("match_threshold") is not None:
            try:
                kwargs["match_threshold"] = float(kwargs["match_threshold"])
            except (TypeError, ValueError):
                raise ValueError(f"{source}: field 'match_threshold' must be a number, "
                                 f"got {d['match_threshold']!r}") from None
        kwargs["attribute_names"] = [str(a) for a in kwargs.get("attribute_names") or []]
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> "ModelMetadata":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source}: not valid JSON ({e})") from None
        return cls.from_dict(d, source)

    def save(self, path: str) -> None:
        """Write atomically (temp file + rename)."""
        write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str) -> "ModelMetadata":
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise FileNotFoundError(f"cannot read model metadata {path}: {e.strerror}") from None
        return cls.from_json(text, source=path)

