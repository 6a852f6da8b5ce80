"""A gallery of known people: embeddings (+ attributes) with identity labels.

Saved as two files written atomically: `<name>.npz` (arrays) and
`<name>.json` (identities, paths, model description). Matching uses the
distance the model was trained for (Euclidean on the exported embedding).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import zipfile
import zlib

import numpy as np

from keras_hpnet.fileio import write_bytes_atomic, write_text_atomic
from edge import preprocess

GALLERY_FORMAT = 1
_MARKET = re.compile(r"^(-?\d+)_c(\d+)")


def parse_identity(path: str, root: str | None = None) -> tuple[str, int]:
    """Identity and camera of a person crop.

    A crop in a sub-folder of `root` takes the sub-folder's name as identity
    (`root/alice/001.jpg` -> "alice"); otherwise a Market-1501 style file name
    gives it (`0002_c1s1_000451_03.jpg` -> "2", camera 0). Camera is -1 when
    unknown. ValueError when neither applies.
    """
    name = os.path.basename(path)
    m = _MARKET.match(name)
    camid = int(m.group(2)) - 1 if m else -1
    if root is not None:
        rel = os.path.relpath(os.path.dirname(os.path.abspath(path)), os.path.abspath(root))
        if rel not in (".", "") and not rel.startswith(".."):
            return rel.split(os.sep)[0], camid
    if m:
        return str(int(m.group(1))), camid
    raise ValueError(f"image {path}: no identity (put it in a folder named after the person, "
                     "or use a Market-1501 file name like 0002_c1s1_000451_03.jpg)")


def pairwise_euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[M, D] x [N, D] -> [M, N] Euclidean distances (float32)."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


@dataclasses.dataclass
class Match:
    identity: str
    distance: float
    path: str


@dataclasses.dataclass
class Gallery:
    """Embeddings [N, D], one identity (str) per row, optional attributes [N, A]."""

    embeddings: np.ndarray
    identities: list[str]
    paths: list[str] = dataclasses.field(default_factory=list)
    camids: list[int] = dataclasses.field(default_factory=list)
    attributes: np.ndarray | None = None
    attribute_names: list[str] = dataclasses.field(default_factory=list)
    model_name: str = ""
    distance: str = "euclidean"
    input_size: list[int] | None = None  # (H, W) of the model that embedded it

    def __post_init__(self):
        emb = np.asarray(self.embeddings, np.float32)
        if not len(self.identities):
            self.embeddings = emb.reshape(0, emb.shape[1] if emb.ndim == 2 else 0)
        else:
            self.embeddings = emb.reshape(len(self.identities), -1)
        self.identities = [str(i) for i in self.identities]
        if not self.paths:
            self.paths = [""] * len(self.identities)
        if not self.camids:
            self.camids = [-1] * len(self.identities)
        if self.attributes is not None:
            a = np.asarray(self.attributes, np.float32)
            self.attributes = a.reshape(len(self.identities), a.shape[-1] if a.ndim == 2 else -1)
        if not (len(self.paths) == len(self.camids) == len(self.identities)):
            raise ValueError("gallery: identities, paths and camids differ in length")

    def __len__(self) -> int:
        return len(self.identities)

    def check_finite(self, source: str = "gallery") -> None:
        """ValueError naming the rows whose embedding is NaN or infinite."""
        bad = np.flatnonzero(~np.isfinite(self.embeddings).all(axis=1)) if len(self) else []
        if len(bad):
            rows = ", ".join(f"{i} ({self.paths[i] or self.identities[i]})" for i in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise ValueError(f"{source}: {len(bad)} of {len(self)} embeddings are not finite (NaN or inf): "
                             f"rows {rows}{more}; rebuild the gallery")

    def check_model(self, metadata, source: str = "gallery") -> None:
        """ValueError if the gallery was built with another model than `metadata` describes
        (model name, embedding size, attribute names, input size as recorded)."""
        model = {"model_name": metadata.model_name, "embedding_size": int(metadata.embedding_size),
                 "attribute_names": list(metadata.attribute_names),
                 "input_size": [int(metadata.input_height), int(metadata.input_width)]}
        mine = {"model_name": self.model_name, "embedding_size": self.embedding_dim if len(self) else None,
                "attribute_names": list(self.attribute_names), "input_size": self.input_size}
        differ = [f"{k} {mine[k]!r} vs the model's {model[k]!r}" for k in model
                  if mine[k] not in (None, "", []) and model[k] not in ("", []) and mine[k] != model[k]]
        if differ:
            raise ValueError(f"{source} was built with another model: {'; '.join(differ)} "
                             "(rebuild it with this model: python -m edge gallery build)")

    @property
    def embedding_dim(self) -> int:
        return int(self.embeddings.shape[1])

    def add(self, embedding, identity: str, path: str = "", camid: int = -1, attributes=None) -> None:
        emb = np.asarray(embedding, np.float32).reshape(1, -1)
        if not np.isfinite(emb).all():
            raise ValueError(f"gallery: embedding of {path or identity} is not finite (NaN or inf)")
        if len(self) and emb.shape[1] != self.embedding_dim:
            raise ValueError(f"gallery: embedding of size {emb.shape[1]}, gallery has {self.embedding_dim}")
        self.embeddings = emb if not len(self) else np.concatenate([self.embeddings, emb])
        self.identities.append(str(identity))
        self.paths.append(path)
        self.camids.append(int(camid))
        if self.attributes is not None or attributes is not None:
            a = np.asarray(attributes if attributes is not None else
                           np.full(len(self.attribute_names), np.nan), np.float32).reshape(1, -1)
            base = self.attributes if self.attributes is not None else np.full((len(self) - 1, a.shape[1]), np.nan, np.float32)
            self.attributes = np.concatenate([base, a])

    def distances(self, embeddings) -> np.ndarray:
        q = np.asarray(embeddings, np.float32)
        q = q.reshape(1, -1) if q.ndim == 1 else q
        if not np.isfinite(q).all():
            raise ValueError("query embedding is not finite (NaN or inf): the model output is broken")
        if q.shape[1] != self.embedding_dim:
            raise ValueError(f"query embedding of size {q.shape[1]} but gallery embeddings have {self.embedding_dim} "
                             "(was the gallery built with another model?)")
        return pairwise_euclidean(q, self.embeddings)

    def search(self, embedding, top_k: int = 5) -> list[Match]:
        """Top-k identities (each once, by its nearest gallery image), nearest first."""
        if not len(self):
            return []
        d = self.distances(embedding)[0]
        out, seen = [], set()
        for j in np.argsort(d, kind="stable"):
            ident = self.identities[j]
            if ident in seen:
                continue
            seen.add(ident)
            out.append(Match(ident, float(d[j]), self.paths[j]))
            if len(out) >= top_k:
                break
        return out

    def to_index(self, kind: str = "flat"):
        """This gallery as a keras_hpnet.retrieval.index.GalleryIndex (filters, attribute search)."""
        from keras_hpnet.retrieval.index import GalleryIndex

        index = GalleryIndex(max(1, self.embedding_dim), kind, attribute_names=self.attribute_names,
                             model_name=self.model_name)
        if len(self):  # an empty gallery gives an empty index ("the gallery index is empty" on search)
            index.add(self.embeddings, self.identities, cameras=self.camids, paths=self.paths,
                      attributes=self.attributes)
        return index

    # -- files ---------------------------------------------------------------
    @staticmethod
    def _paths(path: str) -> tuple[str, str]:
        root = re.sub(r"\.(npz|json)$", "", path)
        return root + ".npz", root + ".json"

    def save(self, path: str) -> tuple[str, str]:
        """Write `<path>.npz` and `<path>.json` atomically; returns both paths."""
        npz_path, json_path = self._paths(path)
        self.check_finite(f"gallery {npz_path}")
        buf = io.BytesIO()
        arrays = {"embeddings": self.embeddings}
        if self.attributes is not None:
            arrays["attributes"] = self.attributes
        np.savez(buf, **arrays)
        info = {
            "format": GALLERY_FORMAT,
            "model_name": self.model_name,
            "distance": self.distance,
            "embedding_size": self.embedding_dim if len(self) else 0,
            "attribute_names": list(self.attribute_names),
            "input_size": self.input_size,
            "identities": self.identities,
            "paths": self.paths,
            "camids": self.camids,
            "arrays": os.path.basename(npz_path),
        }
        write_bytes_atomic(npz_path, buf.getvalue())
        write_text_atomic(json_path, json.dumps(info, indent=1) + "\n")
        return npz_path, json_path

    @classmethod
    def load(cls, path: str) -> "Gallery":
        npz_path, json_path = cls._paths(path)
        for p in (json_path, npz_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"gallery {p}: no such file (a gallery is a .json and a .npz pair)")
        try:
            with open(json_path, encoding="utf-8") as f:
                info = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"gallery {json_path}: not valid JSON ({e})") from None
        if not isinstance(info, dict) or "identities" not in info:
            raise ValueError(f"gallery {json_path}: missing field 'identities'")
        try:
            with np.load(npz_path, allow_pickle=False) as z:
                emb = z["embeddings"]
                attrs = z["attributes"] if "attributes" in z.files else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise ValueError(f"gallery {npz_path}: cannot read arrays, truncated or not a gallery .npz "
                             f"({type(e).__name__}: {e})") from None
        n = len(info["identities"])
        if emb.ndim == 0 or emb.shape[0] != n or (n and (emb.ndim != 2 or not np.issubdtype(emb.dtype, np.floating))):
            raise ValueError(f"gallery {npz_path}: embeddings of shape {emb.shape} ({emb.dtype}) but {json_path} "
                             f"lists {n} identities")
        size = info.get("embedding_size")
        if n and size and emb.shape[1] != size:
            raise ValueError(f"gallery {npz_path}: embeddings of size {emb.shape[1]}, {json_path} says {size}")
        gallery = cls(
            embeddings=emb.reshape(n, -1) if n else np.zeros((0, int(info.get("embedding_size") or 0)), np.float32),
            identities=info["identities"],
            paths=info.get("paths") or [],
            camids=info.get("camids") or [],
            attributes=attrs,
            attribute_names=info.get("attribute_names") or [],
            model_name=info.get("model_name", ""),
            distance=info.get("distance", "euclidean"),
            input_size=info.get("input_size"),
        )
        gallery.check_finite(f"gallery {npz_path}")
        return gallery


def build_gallery(model, folder: str) -> tuple[Gallery, list[tuple[str, str]]]:
    """Embed every person crop under `folder` (identity from sub-folder or file name).

    Returns the gallery and the skipped files [(path, reason)] (unreadable
    images, files without an identity, Market junk id -1).
    """
    skipped, labelled = [], []
    for p in preprocess.list_images(folder):
        try:
            ident, cam = parse_identity(p, folder)
        except ValueError as e:
            skipped.append((p, str(e)))
            continue
        if ident == "-1":
            skipped.append((p, "junk identity -1"))
            continue
        labelled.append((p, ident, cam))
    out, kept, bad = model.predict_paths([p for p, _, _ in labelled], on_error="skip")
    skipped.extend(bad)
    info = {p: (i, c) for p, i, c in labelled}
    attrs = out.get("attributes")
    names = model.attribute_names
    gallery = Gallery(
        embeddings=out["embedding"],
        identities=[info[p][0] for p in kept],
        paths=[os.path.relpath(p, folder) for p in kept],
        camids=[info[p][1] for p in kept],
        attributes=attrs if names else None,
        attribute_names=names,
        model_name=model.metadata.model_name,
        distance=model.metadata.distance,
        input_size=list(model.input_size),
    )
    return gallery, skipped
