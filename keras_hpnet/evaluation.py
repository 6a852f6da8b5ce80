"""The evaluation protocol, once, for any predictor (docs/evaluation.md).

A predictor is a function `predict_fn(images) -> {"embedding": [N, D],
"attributes": [N, A]}`: uint8 image batches `[N, H, W, 3]` in, float32 numpy
arrays out (`attributes` for models that predict them). The Keras model
(`keras_predictor`), a SavedModel signature or a serving client
(`callable_predictor`) and a TFLite interpreter (`edge.runtime.EdgeModel.run`)
are all predictors, so `training.fit`, `training.evaluate` and the TFLite
parity report compute the same metrics from the same pixels:

- Images: `keras_hpnet.data.make_dataset(training=False)`, the image rule of
  docs/design.md; unreadable files are skipped and counted.
- Re-id (datasets with `query` and `gallery` splits): Market-1501 protocol,
  Euclidean distance on the embedding, `rank1`, `rank5`, `rank10`, `mAP`,
  `mINP` (keras_hpnet.metrics.reid_metrics). A ranking feature that ends with
  an attribute part (HAT-CNN: L2(global) ++ L2(local) ++ L2(attribute
  logits)) is also ranked on its first `attribute_free_dims` dims, the paper's
  comparison, as `*_without_attributes`. Optional k-reciprocal re-ranking
  (Zhong et al., CVPR 2017): `*_rerank`.
- Attributes (on the `test` split of attribute datasets, query + gallery of
  re-id datasets): `mA`, `acc`, `prec`, `rec`, `f1`
  (keras_hpnet.metrics.attribute_metrics) and a per-attribute table, and
  attribute-search mAP for 1-, 2- and 3-attribute queries
  (`attribute_query_mAP[_n]`, keras_hpnet.retrieval.query). Rows
  without labels (distractors, junk) are masked out of the attribute metrics;
  they still take part in the ranking. A model is scored on another
  dataset's attributes by name, renamed first by an `AttributeMap`
  (cross-domain evaluation). Entries labelled `UNKNOWN_ATTRIBUTE`
  are masked per entry (keras_hpnet.metrics.attribute_metrics); an attribute
  with no known label in the split is left out, with a note.
- Video re-id (datasets of kind "video": tracklets): `evaluate` runs the
  frame predictor over every readable frame (`extract_tracklets`, through
  `keras_hpnet.data.tracklets.tracklet_frames`), pools the frames of each
  tracklet with the one temporal rule (`keras_hpnet.temporal`: average, or a
  video model's attention) and ranks tracklet queries against tracklet
  gallery with the same metrics (MARS's official rules, docs/evaluation.md
  "Video"), plus `mAP_trapezoid` and the same figures for one seeded random
  frame per tracklet (`frame_*`).
"""

from __future__ import annotations

import copy
import dataclasses
import weakref

import numpy as np

REID_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")
VIDEO_REID_KEYS = REID_KEYS + ("mAP_trapezoid",)  # + MARS's own AP rule (keras_hpnet.metrics.reid)
ATTRIBUTE_KEYS = ("mA", "acc", "prec", "rec", "f1")
OUTPUTS = ("embedding", "attributes")

_INFER_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


# -- predictors ------------------------------------------------------------------------

def callable_predictor(fn, *, input_name: str | None = None):
    """A predictor from any callable returning a dict with `embedding` (and `attributes`).

    `fn` takes the uint8 batch positionally, or as the keyword `input_name`
    (a SavedModel signature: `callable_predictor(loaded.signatures
    ["serving_default"], input_name="images")`); its values may be tensors.
    """

    def predict(images):
        out = fn(**{input_name: images}) if input_name else fn(images)
        return {k: np.asarray(v) for k, v in out.items()}

    return predict


def keras_predictor(model):
    """The predictor of a Keras model: `model(x, training=False)` traced once per model and input size."""
    import tensorflow as tf

    per_model = _INFER_CACHE.setdefault(model, {})
    key = tuple(int(s) for s in model.input_size)
    if key not in per_model:
        spec = tf.TensorSpec([None, key[0], key[1], 3], tf.uint8)
        ref = weakref.ref(model)  # the cache must not keep the model alive
        per_model[key] = tf.function(lambda x: ref()(x, training=False), input_signature=[spec])
    predict = callable_predictor(per_model[key])
    predict.model = model  # the predictor keeps its model alive (the cache does not)
    return predict


def attribute_free_dims(model):
    """Leading embedding dims without the attribute part, or None.

    A model whose ranking feature ends with its `num_attributes` attribute
    dims says so with `embedding_includes_attributes` (PedestrianModel reads
    its spec's `embedding_ends_with_attributes`: HAT-CNN).
    """
    num_attributes = int(getattr(model, "num_attributes", 0) or 0)
    if num_attributes <= 0 or not getattr(model, "embedding_includes_attributes", False):
        return None
    dims = int(model.embedding_dim) - num_attributes
    return dims if dims > 0 else None


# -- one split -------------------------------------------------------------------------

def _strip_attributes(records):
    """Records without attribute vectors (labels are read from `records` by index,
    so splits mixing labelled and unlabelled images, e.g. distractors, are fine)."""
    return [r._replace(attributes=None) if hasattr(r, "_replace") and r.attributes is not None else r
            for r in records]


def extract(predict_fn, records, *, input_size, batch_size=64):
    """Run `predict_fn` over `records` (keras_hpnet.data, eval mode).

    Returns a dict of numpy arrays over the readable images, in record order:
    `embedding` float32 `[N, D]`; `attributes` float32 `[N, A]` (predicted
    probabilities) when the predictor outputs them; `pids`, `camids` int64
    `[N]`; `labels` uint8 `[N, A]` (the records' attribute labels, zeros where
    a record has none) and `labeled` bool `[N]` when some record has them;
    `index` int64 `[N]` (positions in `records`); and `num_skipped`
    (unreadable files).
    """
    from keras_hpnet.data import make_dataset

    records = list(records)
    if not records:
        raise ValueError("extract: no records")
    dataset = make_dataset(_strip_attributes(records), input_size=tuple(input_size),
                           batch_size=int(batch_size), training=False)
    outputs, index = {}, []
    for images, labels in dataset:
        out = predict_fn(images.numpy())
        if "embedding" not in out:
            raise ValueError(f"predictor output has no 'embedding' (keys: {sorted(out)})")
        for k in OUTPUTS:
            if k in out:
                outputs.setdefault(k, []).append(np.asarray(out[k], np.float32))
        index.append(np.asarray(labels["index"], np.int64))
    index = np.concatenate(index)
    result = {k: np.concatenate(v) for k, v in outputs.items()}
    result.update(pids=np.array([int(records[i].pid) for i in index], np.int64),
                  camids=np.array([int(records[i].camid) for i in index], np.int64),
                  index=index, num_skipped=len(records) - len(index))
    _add_labels(result, [records[i] for i in index])
    return result


def _add_labels(result, records):
    """`labels` uint8 `[N, A]` (zeros where a record has none) and `labeled` bool `[N]`
    into `result` when some of `records` (images or tracklets) carry attribute vectors."""
    attrs = [r.attributes for r in records]
    lengths = {len(a) for a in attrs if a is not None}
    if len(lengths) > 1:
        raise ValueError(f"records: attribute vectors have different lengths {sorted(lengths)}")
    if lengths:
        (length,) = lengths
        result["labeled"] = np.array([a is not None for a in attrs])
        result["labels"] = np.stack([np.zeros(length, np.uint8) if a is None else np.asarray(a, np.uint8)
                                     for a in attrs])


# -- the protocol ----------------------------------------------------------------------

@dataclasses.dataclass
class Evaluation:
    """Everything one evaluation computed.

    `metrics`: the flat dict of floats (what metrics.json holds).
    `per_attribute`: one dict per attribute (`name`, `mA` term, `pos_acc`,
    `neg_acc`, `pos_ratio`, `num_pos`, `num_neg`), empty without attributes.
    `query`, `gallery`: `extract` results (re-id datasets), `test`: the
    attribute split's (attribute datasets). `distmat`: query x gallery
    distances used for `metrics` (`distmat_rerank` with re-ranking).
    `notes`: what was skipped and why.
    """

    metrics: dict
    per_attribute: list = dataclasses.field(default_factory=list)
    query: dict | None = None
    gallery: dict | None = None
    test: dict | None = None
    distmat: np.ndarray | None = None
    distmat_rerank: np.ndarray | None = None
    attribute_names: list = dataclasses.field(default_factory=list)
    attribute_split: str = ""
    notes: list = dataclasses.field(default_factory=list)

    def outputs(self) -> dict:
        """The predictor's outputs over every evaluated image (query then gallery, or test)."""
        parts = [p for p in (self.query, self.gallery, self.test) if p is not None]
        return {k: np.concatenate([p[k] for p in parts]) for k in OUTPUTS if parts and k in parts[0]}


def _has_split(dataset, name):
    return bool(getattr(dataset, "splits", {}).get(name))


def subsample(dataset, max_images: int | None, seed: int = 0):
    """`dataset` with at most `max_images` evaluation images, drawn at random (record order kept).

    Re-id: query and gallery in proportion (at least one query); attribute
    datasets: the `test` split. Other splits are unchanged.
    """
    if not max_images:
        return dataset
    rng = np.random.default_rng(seed)

    def pick(records, n):
        return [records[i] for i in sorted(rng.permutation(len(records))[:n])]

    splits = dict(dataset.splits)
    if _has_split(dataset, "query") and _has_split(dataset, "gallery"):
        query, gallery = splits["query"], splits["gallery"]
        if len(query) + len(gallery) > max_images:
            nq = max(1, int(max_images * len(query) / (len(query) + len(gallery))))
            splits["query"], splits["gallery"] = pick(query, nq), pick(gallery, max_images - nq)
    elif len(splits.get("test") or []) > max_images:
        splits["test"] = pick(splits["test"], max_images)
    out = copy.copy(dataset)
    out.splits = splits
    return out


def _reid(distmat, query, gallery, keys=REID_KEYS):
    from keras_hpnet.metrics import reid_metrics

    m = reid_metrics(distmat, query["pids"], gallery["pids"], query["camids"], gallery["camids"])
    return {k: float(m[k]) for k in keys}


class AttributeMap:
    """The model's attribute names -> another dataset's names (cross-domain
    evaluation, docs/evaluation.md "Attribute map"). `entries`: (where,
    model name, dataset name), `where` naming the file and line (or key) for
    errors. A model attribute not in the map keeps its own name."""

    def __init__(self, entries, source="attribute_map"):
        self.entries = [(str(w), str(a), str(b)) for w, a, b in entries]
        self.source = source
        seen = {}
        for where, a, _ in self.entries:
            if a in seen:
                raise ValueError(f"{where}: {a!r} is mapped twice (first at {seen[a]})")
            seen[a] = where

    @classmethod
    def read(cls, path: str) -> "AttributeMap":
        """A JSON object `{"model name": "dataset name"}` or a text file of
        `model_name dataset_name` lines (tab, comma or spaces between; `#`
        comments and blank lines ignored). ValueError naming the file and line."""
        import json

        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: cannot read the attribute map ({e})") from None
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
            bad = [k for k, v in data.items() if not isinstance(v, str) or not v.strip() or not k.strip()]
            if bad:
                raise ValueError(f"{path}: key {bad[0]!r}: expected a non-empty dataset attribute name (a string)")
            return cls([(f"{path}: key {k!r}", k.strip(), v.strip()) for k, v in data.items()], path)
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            fields = [f.strip() for f in (line.split("\t") if "\t" in line else
                                          line.split(",") if "," in line else line.split())]
            if len(fields) != 2 or not all(fields):
                raise ValueError(f"{path}:{number}: expected two names (model attribute, dataset attribute), "
                                 f"got {line!r}")
            entries.append((f"{path}:{number}", *fields))
        if not entries:
            raise ValueError(f"{path}: the attribute map has no entry")
        return cls(entries, path)

    def resolve(self, model_names, dataset_names) -> dict:
        """{model name: dataset name}, every name checked; ValueError naming the entry."""
        import difflib

        model_names, dataset_names = list(model_names), list(dataset_names)
        for where, a, b in self.entries:
            for name, known, whose in ((a, model_names, "the model's"), (b, dataset_names, "the dataset's")):
                if name not in known:
                    close = difflib.get_close_matches(name, known, n=3)
                    raise ValueError(f"{where}: {name!r} is not one of {whose} attribute names"
                                     + (f" (close: {', '.join(close)})" if close else ""))
        return {a: b for _, a, b in self.entries}


def _attribute_columns(model_names, dataset_names, num_model_attributes, attribute_map=None):
    """Column pairs (model column, dataset column, name) to score, or None with a
    reason; `attribute_map` (an AttributeMap) renames model attributes first."""
    dataset_names = [str(n) for n in dataset_names]
    if model_names is None:
        if attribute_map is not None:
            raise ValueError(f"{attribute_map.source}: the model's attributes have no names to map")
        if num_model_attributes != len(dataset_names):
            return None, (f"model predicts {num_model_attributes} attributes, the dataset has "
                          f"{len(dataset_names)}: attribute metrics skipped (pass attribute_names to match by name)")
        return [(i, i, n) for i, n in enumerate(dataset_names)], None
    model_names = [str(n) for n in model_names]
    if len(model_names) != num_model_attributes:
        raise ValueError(f"attribute_names: {len(model_names)} names for a model with {num_model_attributes} "
                         f"attributes")
    renamed = attribute_map.resolve(model_names, dataset_names) if attribute_map is not None else {}
    position = {n: j for j, n in enumerate(dataset_names)}
    cols = [(i, position[renamed.get(n, n)], renamed.get(n, n)) for i, n in enumerate(model_names)
            if renamed.get(n, n) in position]
    if attribute_map is not None and len({c[1] for c in cols}) < len(cols):
        raise ValueError(f"{attribute_map.source}: two model attributes score the same dataset attribute")
    if not cols:
        return None, "no attribute of the model is labelled in the dataset: attribute metrics skipped"
    return cols, None


def _reid_metrics(result, attribute_free, rerank, rerank_options, keys=REID_KEYS):
    from keras_hpnet.metrics import euclidean_distance, k_reciprocal_rerank

    q, g = result.query, result.gallery
    result.distmat = euclidean_distance(q["embedding"], g["embedding"])
    result.metrics.update(_reid(result.distmat, q, g, keys))
    if attribute_free is not None:
        d = euclidean_distance(q["embedding"][:, :attribute_free], g["embedding"][:, :attribute_free])
        result.metrics.update({f"{k}_without_attributes": v for k, v in _reid(d, q, g, keys).items()})
    if "frame_embedding" in q:  # tracklets: the same ranking from one frame per tracklet
        d = euclidean_distance(q["frame_embedding"], g["frame_embedding"])
        result.metrics.update({f"frame_{k}": v for k, v in _reid(d, q, g, keys).items()})
    if rerank:
        result.distmat_rerank = k_reciprocal_rerank(
            result.distmat, euclidean_distance(q["embedding"], q["embedding"]),
            euclidean_distance(g["embedding"], g["embedding"]), **dict(rerank_options or {}))
        result.metrics.update({f"{k}_rerank": v for k, v in _reid(result.distmat_rerank, q, g, keys).items()})


def _attribute_metrics(result, parts, split_name, cols, dataset_attributes, num_attributes, name,
                       model_names=None):
    """Attribute metrics over the labelled rows of `parts` (unlabelled rows masked out)."""
    from keras_hpnet.metrics import attribute_metrics

    matched = {c[0] for c in cols}
    unmatched = [n for i, n in enumerate(model_names or ()) if i not in matched]

    probs, labels = [], []
    for part in parts:
        if "attributes" not in part:
            raise ValueError(f"predictor: num_attributes={num_attributes} but its output has no 'attributes'")
        if "labels" in part:
            probs.append(part["attributes"][part["labeled"]])
            labels.append(part["labels"][part["labeled"]])
    if not sum(len(x) for x in labels):
        result.notes.append(f"{name}: no labelled image in {split_name}: attribute metrics skipped")
        return
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    if labels.shape[1] != len(dataset_attributes):
        raise ValueError(f"{name}: records have {labels.shape[1]} attribute labels but attribute_names "
                         f"lists {len(dataset_attributes)}")
    from keras_hpnet.datasets.base import UNKNOWN_ATTRIBUTE

    unlabelled = [c for c in cols if (labels[:, c[1]] == UNKNOWN_ATTRIBUTE).all()]
    if unlabelled:
        result.notes.append(f"{name}: {len(unlabelled)} attribute(s) have no known label in {split_name}, left out: "
                            + ", ".join(c[2] for c in unlabelled))
        cols = [c for c in cols if c not in unlabelled]
        if not cols:
            return
    mcols, dcols, names = ([c[i] for c in cols] for i in range(3))
    a = attribute_metrics(probs[:, mcols], labels[:, dcols], attribute_names=names)
    result.metrics.update({k: float(a[k]) for k in ATTRIBUTE_KEYS})
    result.per_attribute = a["per_attribute"]
    result.attribute_names = names
    result.metrics.update(_attribute_query_metrics(probs[:, mcols], labels[:, dcols], names))
    result.attribute_split = split_name
    if len(cols) < max(num_attributes, len(dataset_attributes)):
        result.notes.append(f"attribute metrics on the {len(cols)} attribute(s) shared by model and dataset")
    if unmatched:
        result.notes.append(f"model attribute(s) without a counterpart in {name} (not mapped): "
                            + ", ".join(unmatched))


def _attribute_query_metrics(probs, labels, names) -> dict:
    """Attribute-search quality (docs/retrieval.md): mAP of the images ranked by
    random seeded conjunctions of 1, 2 and 3 attributes, ground truth from the
    labels (keras_hpnet.retrieval.query.attribute_query_map). Sizes no query of
    which any image satisfies are left out."""
    from keras_hpnet.retrieval.query import attribute_query_map

    sizes = tuple(n for n in (1, 2, 3) if n <= len(names))
    if not sizes:
        return {}
    aq = attribute_query_map(probs, labels, names, sizes=sizes)
    out = {f"attribute_query_mAP_{n}": aq[str(n)]["mAP"] for n in sizes}
    out["attribute_query_mAP"] = aq["mAP"]
    return {k: float(v) for k, v in out.items() if np.isfinite(v)}


def evaluate(predict_fn, dataset, *, input_size, num_attributes=0, attribute_names=None,
             attribute_free_dims=None, batch_size=64, rerank=False, rerank_options=None,
             attribute_map=None, temporal_pooling="avg", chunk_len=8, frame_seed=0) -> Evaluation:
    """Evaluate a predictor on `dataset` (a keras_hpnet.datasets.PedestrianDataset).

    A video dataset (`kind` "video": query/gallery tracklets) is scored on
    tracklets (`extract_tracklets`: every frame through `predict_fn`, pooled
    per tracklet by `temporal_pooling`, "avg" or a
    `VideoModel.temporal_pooling_params()` dict; `chunk_len` frames per chunk;
    `frame_seed` draws the single frame of the `frame_*` metrics), with
    `mAP_trapezoid` too (docs/evaluation.md "Video").

    Args:
      predict_fn: uint8 `[N, H, W, 3]` -> {"embedding", "attributes"} (module doc).
      dataset: splits `query`/`gallery` (re-id) and/or `test` (attributes).
      input_size: (H, W) the predictor takes.
      num_attributes: attributes the predictor outputs (0: re-id only).
      attribute_names: the predictor's attribute names (e.g. config.json's);
        when given, attributes are matched to the dataset's by name, so a model
        can be scored on another dataset's shared attributes.
      attribute_free_dims: embedding dims before the attribute part (see
        `attribute_free_dims(model)`): adds `*_without_attributes`.
      batch_size: inference batch size.
      rerank: also compute k-reciprocal re-ranked re-id metrics (`*_rerank`).
      rerank_options: k1, k2, lambda_value for `k_reciprocal_rerank`.
      attribute_map: an `AttributeMap` (or a dict) from `attribute_names` to
        the dataset's names, for a dataset that names its attributes otherwise.

    Returns an `Evaluation`. Raises ValueError when there is nothing to
    evaluate (no query/gallery, and no attribute split the predictor can score).
    """
    input_size = tuple(int(s) for s in input_size)
    num_attributes = int(num_attributes or 0)
    name = getattr(dataset, "name", "dataset")
    has_reid = _has_split(dataset, "query") and _has_split(dataset, "gallery")
    dataset_attributes = list(getattr(dataset, "attribute_names", []) or [])
    result = Evaluation(metrics={})
    if not has_reid and not (num_attributes and _has_split(dataset, "test") and dataset_attributes):
        missing = [s for s in ("query", "gallery") if not _has_split(dataset, s)]
        raise ValueError(
            f"{name}: nothing to evaluate: no re-id split(s) {', '.join(missing)} "
            + ("and the model predicts no attributes" if not num_attributes
               else "and no labelled 'test' split for the model's attributes"))

    video = getattr(dataset, "kind", None) == "video"

    def run_tracklets(tracklets):
        return extract_tracklets(predict_fn, tracklets, input_size=input_size, temporal_pooling=temporal_pooling,
                                 chunk_len=chunk_len, batch_size=batch_size, frame_seed=frame_seed)

    def run(split):
        return extract(predict_fn, dataset.splits[split], input_size=input_size, batch_size=batch_size)

    if has_reid and video:
        result.query = run_tracklets(dataset.query)
        result.gallery = _gallery_reusing_queries(run_tracklets, dataset.query, result.query, dataset.gallery)
    elif has_reid:
        result.query, result.gallery = run("query"), run("gallery")
    if has_reid:
        _reid_metrics(result, attribute_free_dims, rerank, rerank_options, VIDEO_REID_KEYS if video else REID_KEYS)
        for split in (result.query, result.gallery):
            if split["num_skipped"]:
                what = "tracklet(s) without a readable frame" if video else "unreadable image(s)"
                result.notes.append(f"{split['num_skipped']} {what} skipped")
            if split.get("num_dropped_frames"):
                result.notes.append(f"{split['num_dropped_frames']} unreadable frame(s) left out of their tracklets")
    if not num_attributes:
        return result
    if not dataset_attributes:
        result.notes.append(f"{name} has no attribute labels: attribute metrics skipped")
        return result
    if isinstance(attribute_map, dict):
        attribute_map = AttributeMap([(f"attribute_map[{a!r}]", a, b) for a, b in attribute_map.items()])
    cols, why = _attribute_columns(attribute_names, dataset_attributes, num_attributes, attribute_map)
    if cols is None:
        result.notes.append(why)
        return result
    if has_reid:
        parts, split_name = [result.query, result.gallery], "query+gallery"
    elif _has_split(dataset, "test"):
        result.test = run("test")
        parts, split_name = [result.test], "test"
    else:
        result.notes.append(f"{name}: no 'test' split: attribute metrics skipped")
        return result
    _attribute_metrics(result, parts, split_name, cols, dataset_attributes, num_attributes, name, attribute_names)
    return result


def evaluate_model(model, dataset, *, predict_fn=None, attribute_names=None, batch_size=64, rerank=False,
                   rerank_options=None, attribute_map=None) -> Evaluation:
    """`evaluate` with what a model declares (input size, attributes, feature split; docs/design.md).

    `predict_fn`: another predictor of the same network (its SavedModel or
    TFLite export); default `keras_predictor(model)`. A video model (one with
    a `frame_model`, keras_hpnet.models.video) is evaluated through its frame
    model, pooled by its own `temporal_pooling_params()`; an image model on a
    video dataset pools by the average.
    """
    frame_model = getattr(model, "frame_model", model)
    pooling = model.temporal_pooling_params() if hasattr(model, "temporal_pooling_params") else "avg"
    return evaluate(predict_fn or keras_predictor(frame_model), dataset, input_size=model.input_size,
                    num_attributes=int(getattr(model, "num_attributes", 0) or 0),
                    attribute_names=attribute_names, attribute_free_dims=attribute_free_dims(model),
                    batch_size=batch_size, rerank=rerank, rerank_options=rerank_options,
                    attribute_map=attribute_map, temporal_pooling=pooling)


# -- video re-id: tracklets ------------------------------------------------------------

def _gallery_reusing_queries(run_tracklets, query, query_out, gallery):
    """`run_tracklets(gallery)`, where gallery tracklets that are also queries (same frames:
    MARS's official gallery is the whole test set) take the query's rows instead of
    being read again; their dropped frames are counted once, with the query."""
    def row_keys(out):
        return {k for k, v in out.items() if k != "index" and isinstance(v, np.ndarray) and len(v) == len(out["index"])}

    known = {tuple(query[i].frames): row for row, i in enumerate(query_out["index"])}
    reused = [(i, known[tuple(t.frames)]) for i, t in enumerate(gallery) if tuple(t.frames) in known]
    if not reused:
        return run_tracklets(gallery)
    per_row = sorted(row_keys(query_out))
    parts = [({k: query_out[k][[r for _, r in reused]] for k in per_row}, np.array([i for i, _ in reused]))]
    taken = {i for i, _ in reused}
    rest = [i for i in range(len(gallery)) if i not in taken]
    dropped = 0
    if rest:
        out = run_tracklets([gallery[i] for i in rest])
        if row_keys(out) != set(per_row):  # labels on one side only: read the whole gallery
            return run_tracklets(gallery)
        parts.append(({k: out[k] for k in per_row}, np.asarray(rest, np.int64)[out["index"]]))
        dropped = out["num_dropped_frames"]
    index = np.concatenate([i for _, i in parts])
    order = np.argsort(index, kind="stable")
    merged = {k: np.concatenate([p[k] for p, _ in parts])[order] for k in per_row}
    merged.update(index=index[order], num_skipped=len(gallery) - len(index), num_dropped_frames=dropped)
    return merged


def _pooling_rule(temporal_pooling):
    """(mode, params) of "avg" / "attention" or of a `VideoModel.temporal_pooling_params()` dict."""
    from keras_hpnet import temporal

    if isinstance(temporal_pooling, dict):
        mode = temporal.check_mode(temporal_pooling.get("mode"))
        params = temporal.attention_params(temporal_pooling) if mode == "attention" else None
        return mode, params
    mode = temporal.check_mode(temporal_pooling)
    if mode == "attention":
        raise ValueError("temporal_pooling 'attention' needs the video model's parameters: pass "
                         "model.temporal_pooling_params()")
    return mode, None


def extract_tracklets(predict_fn, tracklets, *, input_size, temporal_pooling="avg", chunk_len=8, batch_size=64,
                      frame_seed=0):
    """Run a frame predictor over every readable frame of `tracklets` and pool per tracklet.

    Frames come from `keras_hpnet.data.tracklets.tracklet_frames` (the image
    rule; unreadable frames dropped and counted, tracklets without a readable
    frame skipped) in chunks of `chunk_len`, about `batch_size` frames per
    predictor call; each tracklet's frames are pooled as they complete
    (`keras_hpnet.temporal`: weights from the frame embeddings, applied to the
    embedding and the attributes), so memory holds one tracklet's frames.

    Returns `extract`'s dict over the kept tracklets (`embedding`,
    `attributes`, `pids`, `camids`, `index` into `tracklets`, `labels` /
    `labeled`, `num_skipped` tracklets) plus `num_frames` int64 `[N]` (frames
    pooled), `num_dropped_frames`, and `frame_embedding` / `frame_attributes`:
    the outputs of one frame per tracklet drawn with `frame_seed` (the
    single-frame baseline).
    """
    from keras_hpnet import temporal
    from keras_hpnet.data.tracklets import tracklet_frames

    mode, params = _pooling_rule(temporal_pooling)
    tracklets = list(tracklets)
    if not tracklets:
        raise ValueError("extract_tracklets: no tracklets")
    chunk_len = int(chunk_len)
    dataset = tracklet_frames(_strip_attributes(tracklets), input_size=tuple(input_size), seq_len=chunk_len,
                              batch_size=max(1, int(batch_size) // chunk_len))
    rng = np.random.default_rng(frame_seed)
    pooled, single, kept, lengths = {}, {}, [], []
    current, frames = None, {}

    def flush():
        outs = {k: np.concatenate(v) for k, v in frames.items()}
        w = temporal.frame_weights(outs["embedding"], mode=mode, params=params)
        pick = int(rng.integers(len(w)))
        for k, v in outs.items():
            pooled.setdefault(k, []).append(temporal.pool_frames(v, weights=w))
            single.setdefault(k, []).append(v[pick])
        kept.append(current)
        lengths.append(len(w))

    for chunks, labels in dataset:
        chunks = chunks.numpy()
        out = predict_fn(chunks.reshape(-1, *chunks.shape[2:]))
        if "embedding" not in out:
            raise ValueError(f"predictor output has no 'embedding' (keys: {sorted(out)})")
        out = {k: np.asarray(out[k], np.float32).reshape(len(chunks), chunk_len, -1) for k in OUTPUTS if k in out}
        for row, (index, valid) in enumerate(zip(labels["index"].numpy(), labels["num_valid"].numpy())):
            if index != current:
                if current is not None:
                    flush()
                current, frames = int(index), {}
            for k, v in out.items():
                frames.setdefault(k, []).append(v[row, :valid])
    if current is None:
        raise ValueError(f"extract_tracklets: none of the {len(tracklets)} tracklets has a readable frame")
    flush()
    report = dataset.report
    index = np.asarray(kept, np.int64)
    if np.any(np.diff(index) <= 0):
        raise AssertionError("tracklet_frames did not yield the tracklets in order")
    result = {k: np.stack(v) for k, v in pooled.items()}
    result.update({f"frame_{k}": np.stack(v) for k, v in single.items()})
    result.update(pids=np.array([int(tracklets[i].pid) for i in index], np.int64),
                  camids=np.array([int(tracklets[i].camid) for i in index], np.int64),
                  index=index, num_frames=np.asarray(lengths, np.int64),
                  num_skipped=len(tracklets) - len(index), num_dropped_frames=int(report.num_dropped_frames))
    _add_labels(result, [tracklets[i] for i in index])
    return result
