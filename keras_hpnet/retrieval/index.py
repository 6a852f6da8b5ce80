"""A gallery index: embeddings + per-vector metadata, exact or approximate search (docs/retrieval.md).

Built on faiss-cpu (Douze et al., "The Faiss library", 2024) when it is
installed, with a numpy brute-force fallback for the exact kind; importing
this module imports neither TensorFlow nor faiss.

Kinds (`KINDS`):

- ``flat``: exact search (faiss IndexFlatL2, or numpy when faiss is absent);
  float32 storage, 4 D bytes per vector.
- ``hnsw``: HNSW graph over float32 vectors (Malkov & Yashunin, TPAMI 2020),
  `M` links per node; fastest queries, more memory than flat.
- ``ivf_sq8``: inverted file (`nlist` k-means cells, `nprobe` searched) with
  8-bit scalar-quantised vectors: 4x smaller than float32 (3.9x with the
  8-byte id faiss keeps per vector).
- ``ivf_sq6``: the same with 6-bit codes: 5.3x smaller than float32 with ids.
- ``ivf_pq``: inverted file with product quantisation (`pq_m` sub-vectors of
  8 bits, Jegou et al., TPAMI 2011): D / pq_m x 4 times smaller.

Exact re-ranking ("refine", IVF kinds): with ``vectors_path=`` the float32
vectors also go to a raw file beside the index (row = slot, appended on
`add`), read back through ``np.memmap`` only for the candidates; with
``refine_factor=r`` a search takes the ``k * r`` nearest by the compressed
codes and re-ranks them by exact distance from that file, so RAM holds the
codes and ids only (`nbytes`) and the float32 copy stays on disk
(`vectors_nbytes`).

IVF kinds are trained (k-means) on the first `add`; `nlist` is lowered to
fit a small first batch (>= 39 vectors per cell) and ``ivf_pq`` needs at
least 256 vectors. Distances are Euclidean (``metric="euclidean"``) or
1 - cosine (``metric="cosine"``: vectors are L2-normalised, d = |a-b|^2 / 2).

Metadata per vector: identity (str), camera (int, -1 unknown), timestamp
(float seconds, NaN unknown), path (str), attribute probabilities `[A]`
(optional, with `attribute_names`). Vectors are added with `add` and removed
with `remove` (by identity or slot); filters (cameras, time window, an
attribute query of keras_hpnet.retrieval.query with a minimum score) restrict
a search to the matching vectors (faiss IDSelectorBitmap, so the approximate
kinds search inside the filter).

`save` writes one .npz atomically: a JSON header (format version, kind,
metric, dim, parameters, model name, sha256 of the faiss bytes) and the
arrays. `load` checks the header, the format version, every array's shape and
the checksum before any byte reaches faiss, so a corrupt or older file gives
an `IndexFormatError`, never a crash in native code. With a vectors file the
header records its name (relative to the index file), rows, dim, dtype and a
fingerprint (sha256 of its size and of 257 evenly spaced rows); `load` refuses
a missing (FileNotFoundError), short or different vectors file
(IndexFormatError). `add` writes rows at their slots (cutting off any rows
after them) and `save` fsyncs the file before the index file names it, so a
saved index stays valid while rows are added after it; removed slots stay in
the file, masked by `alive` and dropped from the codes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import zipfile

import numpy as np

from keras_hpnet.fileio import write_bytes_atomic

INDEX_FORMAT_VERSION = 1
KINDS = ("flat", "hnsw", "ivf_sq8", "ivf_sq6", "ivf_pq")
_SQ_CODES = {"ivf_sq8": "QT_8bit", "ivf_sq6": "QT_6bit"}
METRICS = ("euclidean", "cosine")
DEFAULT_PARAMS = {"hnsw_m": 32, "ef_construction": 80, "ef_search": 64, "nlist": 1024, "nprobe": 16,
                  "pq_m": 32, "refine_factor": 0}
_MIN_PER_CELL = 39  # faiss warns below 39 training points per k-means centroid
_PQ_MIN_TRAIN = 256  # 2^8 centroids per PQ sub-quantizer
_FINGERPRINT_ROWS = 257


class IndexFormatError(ValueError):
    """An index file that cannot be read (corrupt, truncated, or another format version)."""


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError("this index kind needs faiss-cpu (pip install faiss-cpu); the 'flat' kind works "
                          "without it (numpy brute force)") from None
    return faiss


@dataclasses.dataclass
class Hit:
    slot: int
    identity: str
    distance: float
    camera: int
    timestamp: float
    path: str
    score: float | None = None  # attribute query score, when the search had one

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["timestamp"] = None if np.isnan(self.timestamp) else self.timestamp
        return d


def _embeddings(x, dim, name="embeddings"):
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name}: expected [N, D], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{name}: expected numbers, got dtype {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name}: wrong dimension {x.shape[1]}, the index holds {dim}-d embeddings "
                         "(a gallery made with another model?)")
    x = np.ascontiguousarray(x, np.float32)
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(1))
        raise ValueError(f"{name}: NaN or inf in row(s) {bad[:5].tolist()}{' ...' if len(bad) > 5 else ''}")
    return x


def _normalized(x):
    from keras_hpnet.metrics.distance import _l2_normalize

    return np.ascontiguousarray(_l2_normalize(x), np.float32)


class GalleryIndex:
    """Gallery embeddings with metadata and a search structure (see the module docstring)."""

    def __init__(self, dim: int, kind: str = "flat", *, metric: str = "euclidean", backend: str = "auto",
                 attribute_names=(), model_name: str = "", vectors_path: str | None = None, **params):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if backend not in ("auto", "faiss", "numpy"):
            raise ValueError(f"backend must be auto, faiss or numpy, got {backend!r}")
        unknown = set(params) - set(DEFAULT_PARAMS)
        if unknown:
            raise ValueError(f"unknown index parameter(s) {sorted(unknown)} (known: {sorted(DEFAULT_PARAMS)})")
        if not int(dim) > 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        if backend == "auto":
            backend = "faiss" if faiss_available() else "numpy"
        if backend == "numpy" and kind != "flat":
            raise ValueError(f"kind {kind!r} needs faiss-cpu (pip install faiss-cpu); use kind='flat' for "
                             "numpy brute force")
        if backend == "faiss":
            _faiss()
        self.dim, self.kind, self.metric, self.backend = int(dim), kind, metric, backend
        self.params = {**DEFAULT_PARAMS, **{k: int(v) for k, v in params.items()}}
        if kind == "ivf_pq" and self.dim % self.params["pq_m"]:
            raise ValueError(f"ivf_pq: dim {self.dim} is not a multiple of pq_m={self.params['pq_m']}")
        if (vectors_path is not None or self.params["refine_factor"]) and not kind.startswith("ivf_"):
            raise ValueError("vectors_path / refine_factor re-rank compressed codes: only the ivf kinds, "
                             f"not {kind!r}")
        if self.params["refine_factor"] < 0:
            raise ValueError(f"refine_factor must be >= 0, got {self.params['refine_factor']}")
        if self.params["refine_factor"] and vectors_path is None:
            raise ValueError("refine_factor needs vectors_path= (the raw float32 file the exact re-ranking reads)")
        self.vectors_path = None if vectors_path is None else os.path.abspath(vectors_path)
        self._disk = None  # read-only np.memmap [slots, D] of vectors_path
        self.attribute_names = [str(n) for n in attribute_names]
        self.model_name = str(model_name)
        self._index = None  # faiss index (ids = slots), built on the first add
        self._vectors = np.zeros((0, self.dim), np.float32)  # numpy backend only
        self._norms = None  # their squared norms, cached
        self.identities = np.zeros(0, dtype="<U1")
        self.cameras = np.zeros(0, np.int64)
        self.timestamps = np.zeros(0, np.float64)
        self.paths = np.zeros(0, dtype="<U1")
        self.attributes = np.zeros((0, len(self.attribute_names)), np.float32)
        self.alive = np.zeros(0, bool)

    # -- size ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.alive.sum())

    @property
    def num_slots(self) -> int:
        return len(self.alive)

    def nbytes(self) -> int:
        """RAM bytes of the vector store (faiss serialised index: codes, ids, quantizer; or the numpy
        array), per-vector metadata excluded; the on-disk vectors of `vectors_path` are `vectors_nbytes`."""
        if self.backend == "numpy":
            return int(self._vectors.nbytes)
        return 0 if self._index is None else int(len(_faiss().serialize_index(self._index)))

    def vectors_nbytes(self) -> int:
        """Bytes of the float32 vectors kept on disk for exact re-ranking (0 without `vectors_path`)."""
        return 0 if self.vectors_path is None else self.num_slots * self.dim * 4

    # -- the on-disk vectors (refine) ----------------------------------------------------
    def _append_vectors(self, vectors):
        """Write rows num_slots.. of the vectors file (anything after them, e.g. rows added after the last
        save and then discarded by a reload, is cut off) and re-open the memmap."""
        path, offset = self.vectors_path, self.num_slots * self.dim * 4
        size = os.path.getsize(path) if os.path.exists(path) else 0
        if size < offset:
            raise IndexFormatError(f"vectors file {path}: {size // (4 * self.dim)} rows, the index has "
                                   f"{self.num_slots} slots (truncated?)")
        with open(path, "r+b" if os.path.exists(path) else "wb") as f:
            f.seek(offset)
            f.write(np.ascontiguousarray(vectors, np.float32).tobytes())
            f.truncate()
        self._open_vectors(self.num_slots + len(vectors))

    def _open_vectors(self, rows):
        self._disk = (np.memmap(self.vectors_path, np.float32, "r", shape=(rows, self.dim)) if rows else None)

    def _vectors_record(self, index_path) -> dict | None:
        if self.vectors_path is None:
            return None
        with open(self.vectors_path, "rb" if os.path.exists(self.vectors_path) else "wb") as f:
            os.fsync(f.fileno())  # the rows reach the disk before an index file names them
        return {"file": os.path.relpath(self.vectors_path, os.path.dirname(os.path.abspath(index_path))),
                "rows": self.num_slots, "dim": self.dim, "dtype": "float32",
                "fingerprint": _fingerprint(self._disk, self.num_slots, self.dim)}

    # -- building -----------------------------------------------------------------------
    def _new_faiss_index(self, train):
        faiss = _faiss()
        d, p = self.dim, self.params
        if self.kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatL2(d))
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(d, p["hnsw_m"])
            inner.hnsw.efConstruction = p["ef_construction"]
            return faiss.IndexIDMap(inner)
        if self.kind == "ivf_pq" and len(train) < _PQ_MIN_TRAIN:
            raise ValueError(f"ivf_pq: needs at least {_PQ_MIN_TRAIN} vectors in the first add to train, got "
                             f"{len(train)} (use kind='flat' or 'hnsw' for small galleries)")
        nlist = max(1, min(p["nlist"], len(train) // _MIN_PER_CELL))
        self.params["nlist"] = nlist
        quantizer = faiss.IndexFlatL2(d)
        if self.kind in _SQ_CODES:
            code = getattr(faiss.ScalarQuantizer, _SQ_CODES[self.kind])
            index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, code)
        else:
            index = faiss.IndexIVFPQ(quantizer, d, nlist, p["pq_m"], 8)
        index.train(train)  # faiss's Python wrapper keeps `quantizer` alive with `index`
        return index

    def add(self, embeddings, identities, *, cameras=None, timestamps=None, paths=None, attributes=None):
        """Add vectors with their metadata; returns their slots (ids used by `remove`)."""
        x = _embeddings(embeddings, self.dim)
        n = len(x)
        if n == 0:
            return np.zeros(0, np.int64)
        identities = [str(i) for i in identities]
        if len(identities) != n:
            raise ValueError(f"identities: {len(identities)} for {n} embeddings")

        def column(values, default, dtype, name):
            if values is None:
                return np.full(n, default, dtype)
            v = np.asarray(values, dtype)
            if v.shape != (n,):
                raise ValueError(f"{name}: expected {n} values, got shape {v.shape}")
            return v

        cams = column(cameras, -1, np.int64, "cameras")
        times = column(timestamps, np.nan, np.float64, "timestamps")
        pths = np.asarray([""] * n if paths is None else [str(p) for p in paths])
        if len(pths) != n:
            raise ValueError(f"paths: {len(pths)} for {n} embeddings")
        na = len(self.attribute_names)
        if attributes is None:
            attrs = np.full((n, na), np.nan, np.float32)
        else:
            attrs = np.asarray(attributes, np.float32).reshape(n, -1)
            if attrs.shape[1] != na:
                raise ValueError(f"attributes: {attrs.shape[1]} per vector, the index has {na} attribute_names")
        vectors = _normalized(x) if self.metric == "cosine" else x
        slots = np.arange(self.num_slots, self.num_slots + n, dtype=np.int64)
        if self.vectors_path is not None:
            self._append_vectors(vectors)
        if self.backend == "numpy":
            self._vectors = np.concatenate([self._vectors, vectors])
        else:
            if self._index is None:
                self._index = self._new_faiss_index(vectors)
            self._index.add_with_ids(vectors, slots)
        self.identities = np.concatenate([self.identities, np.asarray(identities)])
        self.cameras = np.concatenate([self.cameras, cams])
        self.timestamps = np.concatenate([self.timestamps, times])
        self.paths = np.concatenate([self.paths, pths])
        self.attributes = np.concatenate([self.attributes, attrs])
        self.alive = np.concatenate([self.alive, np.ones(n, bool)])
        return slots

    def remove(self, *, identity: str | None = None, slots=None) -> int:
        """Remove the vectors of `identity` and/or `slots`; returns how many were removed.

        The flat and IVF kinds drop them from the faiss index; HNSW cannot
        delete graph nodes, so they stay as tombstones excluded from every search.
        """
        mask = np.zeros(self.num_slots, bool)
        if identity is not None:
            mask |= self.identities == str(identity)
        if slots is not None:
            s = np.asarray(slots, np.int64).ravel()
            if s.size and (s.min() < 0 or s.max() >= self.num_slots):
                raise ValueError(f"slots: outside 0..{self.num_slots - 1}")
            mask[s] = True
        mask &= self.alive
        gone = np.flatnonzero(mask)
        if len(gone) and self.backend == "faiss" and self.kind != "hnsw":
            self._index.remove_ids(gone.astype(np.int64))
        self.alive[gone] = False
        return int(len(gone))

    # -- searching ----------------------------------------------------------------------
    def filter_mask(self, *, cameras=None, time_window=None, attributes=None, min_score: float = 0.5):
        """Slots that are alive and pass the filters: (mask [slots], attribute scores or None)."""
        mask = self.alive.copy()
        if cameras is not None:
            mask &= np.isin(self.cameras, np.asarray(list(cameras), np.int64))
        if time_window is not None:
            t0, t1 = time_window
            t0 = -np.inf if t0 is None else float(t0)
            t1 = np.inf if t1 is None else float(t1)
            with np.errstate(invalid="ignore"):
                mask &= (self.timestamps >= t0) & (self.timestamps <= t1)
        scores = None
        if attributes is not None:
            scores = self.attribute_scores(attributes)
            mask &= scores >= min_score
        return mask, scores

    def attribute_scores(self, query) -> np.ndarray:
        """Score `[slots]` of an attribute query (text or AttributeQuery); ValueError without attributes."""
        from keras_hpnet.retrieval.query import AttributeQuery, parse_query

        if not self.attribute_names:
            raise ValueError("the gallery has no attribute predictions (the model predicts no attributes)")
        q = query if isinstance(query, AttributeQuery) else parse_query(query, self.attribute_names)
        scores = np.zeros(self.num_slots)
        known = ~np.isnan(self.attributes).any(1)
        if known.any():
            scores[known] = q.score(np.clip(self.attributes[known], 0.0, 1.0))
        return scores

    def _check_searchable(self):
        if len(self) == 0:
            raise ValueError("the gallery index is empty (add embeddings first)")

    def search(self, queries, top_k: int = 10, *, cameras=None, time_window=None, attributes=None,
               min_score: float = 0.5) -> list[list[Hit]]:
        """The `top_k` nearest gallery vectors of each query `[Q, D]` (or `[D]`) inside the filters."""
        self._check_searchable()
        q = _embeddings(queries, self.dim, "queries")
        if self.metric == "cosine":
            q = _normalized(q)
        top_k = int(top_k)
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        mask, scores = self.filter_mask(cameras=cameras, time_window=time_window, attributes=attributes,
                                        min_score=min_score)
        if not mask.any():
            return [[] for _ in range(len(q))]
        dist, slots = self._knn(q, min(top_k, int(mask.sum())), None if mask.all() else mask)
        if self.metric == "euclidean":
            dist = np.sqrt(np.maximum(dist, 0.0))
        else:
            dist = dist / 2.0
        out = []
        for drow, srow in zip(dist, slots):
            out.append([self._hit(int(s), float(d), scores) for d, s in zip(drow, srow) if s >= 0])
        return out

    def search_attributes(self, query, top_k: int = 10, *, cameras=None, time_window=None,
                          min_score: float = 0.0) -> list[Hit]:
        """Gallery vectors ranked by an attribute query's score (ties by slot)."""
        self._check_searchable()
        mask, scores = self.filter_mask(cameras=cameras, time_window=time_window, attributes=query,
                                        min_score=min_score)
        order = np.flatnonzero(mask)
        order = order[np.argsort(-scores[order], kind="stable")][: max(0, int(top_k))]
        return [self._hit(int(s), float("nan"), scores) for s in order]

    def _hit(self, slot, distance, scores):
        return Hit(slot, str(self.identities[slot]), distance, int(self.cameras[slot]),
                   float(self.timestamps[slot]), str(self.paths[slot]),
                   None if scores is None else float(scores[slot]))

    def _knn(self, q, k, mask):
        """Squared L2 distances and slots `[Q, k]` (slot -1 when fewer were found).

        `mask`: the slots to search (alive and inside the filters; HNSW
        tombstones are excluded this way), None for every slot.
        """
        if self.backend == "numpy":
            if mask is None:  # no copy of the gallery
                return _brute_force(q, self._vectors, k, None, self._squared_norms())
            rows = np.flatnonzero(mask)
            return _brute_force(q, self._vectors[rows], k, rows, self._squared_norms()[rows])
        faiss = _faiss()
        p = self.params
        kwargs = {}
        bits = None
        if mask is not None:
            bits = np.packbits(mask, bitorder="little")
            kwargs["sel"] = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(p["ef_search"], k), **kwargs)
        elif self.kind.startswith("ivf_"):
            params = faiss.SearchParametersIVF(nprobe=min(p["nprobe"], p["nlist"]), **kwargs)
        else:
            params = faiss.SearchParameters(**kwargs) if kwargs else None
        refine = p["refine_factor"] if self.kind.startswith("ivf_") else 0
        if refine:
            if self._disk is None:
                raise ValueError("refine_factor needs vectors_path= (the index keeps no float32 vectors)")
            searchable = self._index.ntotal if mask is None else int(mask.sum())
            _, slots = self._index.search(q, min(k * refine, searchable), params=params)
            del bits  # as below
            return _exact_rerank(q, slots, self._disk, k)
        dist, slots = self._index.search(q, k, params=params)
        del bits  # the selector reads it during the search only
        return dist, slots

    def _squared_norms(self):
        if getattr(self, "_norms", None) is None or len(self._norms) != len(self._vectors):
            self._norms = np.einsum("ij,ij->i", self._vectors, self._vectors)
        return self._norms

    # -- persistence --------------------------------------------------------------------
    def _header(self, index_bytes, index_path) -> dict:
        return {"format_version": INDEX_FORMAT_VERSION, "kind": self.kind, "metric": self.metric, "dim": self.dim,
                "params": self.params, "attribute_names": self.attribute_names, "model_name": self.model_name,
                "num_slots": self.num_slots, "store": "vectors" if self._stores_vectors() else "faiss",
                "sha256": hashlib.sha256(index_bytes.tobytes()).hexdigest(),
                "vectors": self._vectors_record(index_path)}

    def _stores_vectors(self) -> bool:
        # flat indexes keep raw vectors in the file, so either backend can read them
        return self.kind == "flat"

    def save(self, path: str) -> str:
        """Write the index to `path` (.npz) atomically; returns `path`."""
        if self._stores_vectors():
            if self.backend == "numpy":
                store = self._vectors
            else:
                store = (self._index.index.reconstruct_n(0, self._index.ntotal) if self._index is not None
                         else np.zeros((0, self.dim), np.float32))
                ids = (faiss_ids(self._index) if self._index is not None else np.zeros(0, np.int64))
                full = np.zeros((self.num_slots, self.dim), np.float32)
                full[ids] = store
                store = full
            store = np.ascontiguousarray(store, np.float32)
            index_bytes = store.view(np.uint8).ravel()
        else:
            index_bytes = (_faiss().serialize_index(self._index) if self._index is not None
                           else np.zeros(0, np.uint8))
        buf = io.BytesIO()
        np.savez(buf, header=np.array(json.dumps(self._header(index_bytes, path))), index=index_bytes,
                 identities=self.identities, cameras=self.cameras, timestamps=self.timestamps, paths=self.paths,
                 attributes=self.attributes, alive=self.alive)
        write_bytes_atomic(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str, *, backend: str = "auto", dim: int | None = None,
             model_name: str | None = None, vectors_path: str | None = None) -> "GalleryIndex":
        """Read an index written by `save`; IndexFormatError for anything unexpected.

        `dim` / `model_name`: what the caller's model produces; a gallery made
        with another model is refused. `vectors_path`: where the re-ranking
        vectors file is when it moved (default: the name the header records,
        beside the index file).
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise FileNotFoundError(f"gallery index {path}: no such file") from None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise IndexFormatError(f"gallery index {path}: not a readable index file ({type(e).__name__}: {e})") \
                from None
        missing = [k for k in ("header", "index", "identities", "cameras", "timestamps", "paths", "attributes",
                               "alive") if k not in arrays]
        if missing:
            raise IndexFormatError(f"gallery index {path}: missing array(s) {', '.join(missing)}")
        try:
            header = json.loads(str(arrays["header"]))
        except ValueError as e:
            raise IndexFormatError(f"gallery index {path}: header is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise IndexFormatError(f"gallery index {path}: header is not a JSON object")
        version = header.get("format_version")
        if version != INDEX_FORMAT_VERSION:
            raise IndexFormatError(f"gallery index {path}: format version {version!r}, this keras-hpnet reads "
                                   f"version {INDEX_FORMAT_VERSION} (rebuild the index)")
        try:
            kind, metric, d, n = header["kind"], header["metric"], int(header["dim"]), int(header["num_slots"])
            params, names = dict(header["params"]), list(header["attribute_names"])
            store, digest = header["store"], header["sha256"]
        except (KeyError, TypeError, ValueError) as e:
            raise IndexFormatError(f"gallery index {path}: bad header ({type(e).__name__}: {e})") from None
        if kind not in KINDS or metric not in METRICS or store not in ("vectors", "faiss") or d <= 0 or n < 0:
            raise IndexFormatError(f"gallery index {path}: bad header values (kind {kind!r}, metric {metric!r}, "
                                   f"dim {d}, slots {n})")
        index_bytes = arrays["index"]
        if index_bytes.dtype != np.uint8 or index_bytes.ndim != 1 or \
                hashlib.sha256(index_bytes.tobytes()).hexdigest() != digest:
            raise IndexFormatError(f"gallery index {path}: the index data does not match its checksum (corrupt)")
        shapes = {"identities": (n,), "cameras": (n,), "timestamps": (n,), "paths": (n,),
                  "attributes": (n, len(names)), "alive": (n,)}
        for k, shape in shapes.items():
            if arrays[k].shape != shape:
                raise IndexFormatError(f"gallery index {path}: {k} has shape {arrays[k].shape}, expected {shape}")
        if dim is not None and int(dim) != d:
            raise ValueError(f"gallery index {path}: holds {d}-d embeddings, the model makes {dim}-d ones "
                             "(made with another model?)")
        saved_model = str(header.get("model_name", ""))
        if model_name and saved_model and model_name != saved_model:
            raise ValueError(f"gallery index {path}: made with model {saved_model!r}, not {model_name!r}")
        disk = _check_vectors_file(path, header.get("vectors"), vectors_path, n, d)
        self = cls(d, kind, metric=metric, backend=backend, attribute_names=names, model_name=saved_model,
                   vectors_path=disk, **{k: v for k, v in params.items() if k in DEFAULT_PARAMS})
        if disk is not None:
            self._open_vectors(n)
        self.params.update({k: int(v) for k, v in params.items() if k in DEFAULT_PARAMS})
        alive = arrays["alive"].astype(bool)
        if store == "vectors":
            if index_bytes.size != n * d * 4:
                raise IndexFormatError(f"gallery index {path}: {index_bytes.size} vector bytes for {n} x {d}")
            vectors = index_bytes.view(np.float32).reshape(n, d)
            if self.backend == "numpy":
                self._vectors = vectors.copy()
            elif n:
                self._index = self._new_faiss_index(vectors)
                live = np.flatnonzero(alive)
                self._index.add_with_ids(np.ascontiguousarray(vectors[live]), live.astype(np.int64))
        elif index_bytes.size:
            faiss = _faiss()
            try:
                self._index = faiss.deserialize_index(index_bytes)
            except RuntimeError as e:
                raise IndexFormatError(f"gallery index {path}: faiss cannot read the index ({e})") from None
            if self._index.d != d:
                raise IndexFormatError(f"gallery index {path}: faiss index is {self._index.d}-d, header says {d}")
        self.identities, self.cameras = arrays["identities"], arrays["cameras"].astype(np.int64)
        self.timestamps, self.paths = arrays["timestamps"].astype(np.float64), arrays["paths"]
        self.attributes, self.alive = arrays["attributes"].astype(np.float32), alive
        return self

    @staticmethod
    def is_index_file(path: str) -> bool:
        """True when `path` is an .npz holding an index header (for CLIs accepting both gallery forms)."""
        try:
            with zipfile.ZipFile(path) as zf:
                return "header.npy" in zf.namelist()
        except (OSError, zipfile.BadZipFile):
            return False


def _fingerprint(vectors, rows, dim) -> str:
    """sha256 of (rows, dim) and of `_FINGERPRINT_ROWS` evenly spaced rows of `vectors` (a memmap: cheap)."""
    h = hashlib.sha256(f"{rows}x{dim}".encode())
    if rows:
        picks = np.unique(np.linspace(0, rows - 1, min(rows, _FINGERPRINT_ROWS)).astype(np.int64))
        h.update(np.ascontiguousarray(vectors[picks], np.float32).tobytes())
    return h.hexdigest()


def _check_vectors_file(index_path, record, override, rows, dim) -> str | None:
    """The vectors file of an index header's `vectors` record, checked; None when the index has none."""
    if record is None:
        return None
    try:
        name, rec_rows, rec_dim = str(record["file"]), int(record["rows"]), int(record["dim"])
        dtype, digest = str(record["dtype"]), str(record["fingerprint"])
    except (KeyError, TypeError, ValueError) as e:
        raise IndexFormatError(f"gallery index {index_path}: bad vectors record ({type(e).__name__}: {e})") from None
    if (rec_rows, rec_dim, dtype) != (rows, dim, "float32"):
        raise IndexFormatError(f"gallery index {index_path}: vectors record says {rec_rows} x {rec_dim} {dtype}, "
                               f"the index has {rows} x {dim} float32")
    path = override or os.path.join(os.path.dirname(os.path.abspath(index_path)), name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"gallery index {index_path}: its vectors file {path} (float32 vectors for exact "
                                "re-ranking) is missing; pass vectors_path= if it moved")
    size, need = os.path.getsize(path), rows * dim * 4
    if size < need:
        raise IndexFormatError(f"gallery index {index_path}: vectors file {path} has {size} bytes, needs {need} "
                               f"({rows} x {dim} float32): truncated")
    mapped = np.memmap(path, np.float32, "r", shape=(rows, dim)) if rows else None
    if _fingerprint(mapped, rows, dim) != digest:
        raise IndexFormatError(f"gallery index {index_path}: vectors file {path} does not match the index "
                               "(another gallery's vectors, or overwritten)")
    return path


def _exact_rerank(q, candidates, vectors, k):
    """Re-rank each query's candidate slots (-1 = none) by exact squared L2 to `vectors[slot]`:
    (distances, slots) `[Q, k]`, ties by slot, slot -1 / inf where fewer candidates."""
    dist = np.full((len(q), k), np.inf, np.float32)
    slots = np.full((len(q), k), -1, np.int64)
    for i, row in enumerate(candidates):
        cand = np.sort(row[row >= 0])  # ascending offsets: sequential reads of the file
        if not len(cand):
            continue
        diff = np.asarray(vectors[cand]) - q[i]
        d = np.einsum("ij,ij->i", diff, diff)
        order = np.lexsort((cand, d))[:k]
        dist[i, : len(order)], slots[i, : len(order)] = d[order], cand[order]
    return dist, slots


def faiss_ids(index) -> np.ndarray:
    """The ids of an IndexIDMap(2), in storage order."""
    from faiss import vector_to_array

    return vector_to_array(index.id_map).astype(np.int64)


def _brute_force(q, vectors, k, rows=None, squared_norms=None, chunk_size=4096):
    """Exact squared-L2 top-k: (distances, slots) `[Q, k]` over `vectors` (slots `rows`, default 0..N-1)."""
    k = min(k, len(vectors))
    v2 = np.einsum("ij,ij->i", vectors, vectors) if squared_norms is None else squared_norms
    dist = np.empty((len(q), k), np.float32)
    slots = np.empty((len(q), k), np.int64)
    for s in range(0, len(q), chunk_size):
        part = q[s : s + chunk_size]
        d = part @ vectors.T
        d *= -2.0
        d += v2[None, :]
        d += np.einsum("ij,ij->i", part, part)[:, None]
        if k < d.shape[1]:
            top = np.argpartition(d, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(d.shape[1]), d.shape).copy()
        td = np.take_along_axis(d, top, 1)
        order = np.lexsort((top, td), axis=1)  # distance, then slot
        dist[s : s + len(part)] = np.take_along_axis(td, order, 1)
        top = np.take_along_axis(top, order, 1)
        slots[s : s + len(part)] = top if rows is None else rows[top]
    return dist, slots
