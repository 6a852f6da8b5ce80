"""Evaluation of a model on a dataset: features, re-id and attribute metrics.

Shared by `training.fit` (metrics.json at the end of training) and
`training.evaluate` (re-evaluation, other datasets, pictures).

- Re-id (datasets with `query` and `gallery` splits): Market-1501 protocol,
  Euclidean distance on the model's ranking feature, `rank1`, `rank5`,
  `rank10`, `mAP`, `mINP` (keras_hpnet.metrics.reid_metrics).
- HAT-CNN ranks on L2(global) ++ L2(local) ++ L2(attribute logits); the
  paper's comparison, ranking without the attribute part (the first
  1024 dims), is reported as `*_without_attributes`.
- Optional k-reciprocal re-ranking (Zhong et al., CVPR 2017): `*_rerank`.
- Attributes (models predicting them, on splits with labels: the `test` split
  of attribute datasets, query + gallery of re-id datasets): `mA`, `acc`,
  `prec`, `rec`, `f1` (keras_hpnet.metrics.attribute_metrics) and a
  per-attribute table.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np

REID_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")
ATTRIBUTE_KEYS = ("mA", "acc", "prec", "rec", "f1")

_INFER_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _inference_fn(model, image_size):
    """`model(x, training=False)` as one traced tf.function per model and input size."""
    import tensorflow as tf

    per_model = _INFER_CACHE.setdefault(model, {})
    key = tuple(int(s) for s in image_size)
    if key not in per_model:
        spec = tf.TensorSpec([None, key[0], key[1], 3], tf.uint8)
        ref = weakref.ref(model)  # the cache must not keep the model alive
        per_model[key] = tf.function(lambda x: ref()(x, training=False), input_signature=[spec])
    return per_model[key]


def _strip_attributes(records):
    """Records without attribute vectors (labels are read from `records` by index,
    so splits mixing labelled and unlabelled images, e.g. distractors, are fine)."""
    out = []
    for r in records:
        out.append(r._replace(attributes=None) if hasattr(r, "_replace") and r.attributes is not None else r)
    return out


def extract(model, records, *, image_size, batch_size=64):
    """Run `model` in inference mode over `records` (keras_hpnet.data, eval mode).

    Returns a dict of numpy arrays over the readable images, in record order:
    `embedding` float32 `[N, D]`; `attributes` float32 `[N, A]` (predicted
    probabilities) when the model outputs them; `pids`, `camids` int64 `[N]`;
    `labels` uint8 `[N, A]` (the records' attribute labels, zeros where a
    record has none) and `labeled` bool `[N]` when some record has them;
    `index` int64 `[N]` (positions in `records`); and
    `num_skipped` (unreadable files).
    """
    from keras_hpnet.data import make_dataset

    records = list(records)
    if not records:
        raise ValueError("extract: no records")
    dataset = make_dataset(_strip_attributes(records), image_size=tuple(image_size),
                           batch_size=int(batch_size), training=False)
    infer = _inference_fn(model, image_size)
    embeddings, probs, index = [], [], []
    for images, labels in dataset:
        out = infer(images)
        if "embedding" not in out:
            raise ValueError(f"model {getattr(model, 'name', model)!r}: inference output has no 'embedding' "
                             f"(keys: {sorted(out)})")
        embeddings.append(np.asarray(out["embedding"], np.float32))
        if "attributes" in out:
            probs.append(np.asarray(out["attributes"], np.float32))
        index.append(np.asarray(labels["index"], np.int64))
    index = np.concatenate(index)
    result = {
        "embedding": np.concatenate(embeddings),
        "pids": np.array([int(records[i].pid) for i in index], np.int64),
        "camids": np.array([int(records[i].camid) for i in index], np.int64),
        "index": index,
        "num_skipped": len(records) - len(index),
    }
    if probs:
        result["attributes"] = np.concatenate(probs)
    attrs = [records[i].attributes for i in index]
    lengths = {len(a) for a in attrs if a is not None}
    if len(lengths) > 1:
        raise ValueError(f"records: attribute vectors have different lengths {sorted(lengths)}")
    if lengths:
        (length,) = lengths
        result["labeled"] = np.array([a is not None for a in attrs])
        result["labels"] = np.stack([np.zeros(length, np.uint8) if a is None else np.asarray(a, np.uint8)
                                     for a in attrs])
    return result


def attribute_free_dims(model):
    """Leading embedding dims that exclude attribute predictions, or None.

    HAT-CNN's ranking feature is L2(global) ++ L2(local) ++ L2(attribute
    logits); the paper compares ranking with and without the attribute part.
    A model says so with `embedding_includes_attributes` (keras_hpnet models:
    their spec's `embedding_ends_with_attributes`; the attribute part being
    the last `num_attributes` dims).
    """
    num_attributes = int(getattr(model, "num_attributes", 0) or 0)
    if num_attributes <= 0:
        return None
    if getattr(model, "embedding_includes_attributes", False):
        dims = int(model.embedding_dim) - num_attributes
        return dims if dims > 0 else None
    return None


@dataclasses.dataclass
class Evaluation:
    """Everything one evaluation computed.

    `metrics`: the flat dict of floats (`evaluate_run`'s result).
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


def _has_split(dataset, name):
    return bool(getattr(dataset, "splits", {}).get(name))


def _reid(distmat, query, gallery):
    from keras_hpnet.metrics import reid_metrics

    m = reid_metrics(distmat, query["pids"], gallery["pids"], query["camids"], gallery["camids"])
    return {k: float(m[k]) for k in REID_KEYS}


def _attribute_columns(model_names, dataset_names, num_model_attributes):
    """Column pairs (model column, dataset column, name) to score, or None with a reason."""
    dataset_names = [str(n) for n in dataset_names]
    if model_names is None:
        if num_model_attributes != len(dataset_names):
            return None, (f"model predicts {num_model_attributes} attributes, the dataset has "
                          f"{len(dataset_names)}: attribute metrics skipped (pass attribute_names to match by name)")
        return [(i, i, n) for i, n in enumerate(dataset_names)], None
    model_names = [str(n) for n in model_names]
    if len(model_names) != num_model_attributes:
        raise ValueError(f"attribute_names: {len(model_names)} names for a model with {num_model_attributes} "
                         f"attributes")
    position = {n: j for j, n in enumerate(dataset_names)}
    cols = [(i, position[n], n) for i, n in enumerate(model_names) if n in position]
    if not cols:
        return None, "no attribute of the model is labelled in the dataset: attribute metrics skipped"
    return cols, None


def evaluate(model, dataset, *, batch_size=64, rerank=False, attribute_names=None, rerank_options=None):
    """Evaluate `model` on `dataset` (a keras_hpnet.datasets.PedestrianDataset).

    Args:
      model: a model following the model contract (docs/design.md), e.g. from
        `keras_hpnet.build_model` or `keras.saving.load_model`.
      dataset: splits `query`/`gallery` (re-id) and/or `test` (attributes).
      batch_size: inference batch size.
      rerank: also compute k-reciprocal re-ranked re-id metrics (`*_rerank`).
      attribute_names: the model's attribute names (e.g. config.json's); when
        given, attributes are matched to the dataset's by name, so a model can
        be scored on another dataset's shared attributes.
      rerank_options: k1, k2, lambda_value for `k_reciprocal_rerank`.

    Returns an `Evaluation`. Raises ValueError when there is nothing to
    evaluate (no query/gallery, and no attribute split the model can score).
    """
    from keras_hpnet.metrics import attribute_metrics, euclidean_distance, k_reciprocal_rerank

    image_size = tuple(int(s) for s in model.input_size)
    num_model_attributes = int(getattr(model, "num_attributes", 0) or 0)
    name = getattr(dataset, "name", "dataset")
    has_reid = _has_split(dataset, "query") and _has_split(dataset, "gallery")
    dataset_attributes = list(getattr(dataset, "attribute_names", []) or [])
    result = Evaluation(metrics={})

    if not has_reid and not (num_model_attributes and _has_split(dataset, "test") and dataset_attributes):
        missing = [s for s in ("query", "gallery") if not _has_split(dataset, s)]
        raise ValueError(
            f"{name}: nothing to evaluate: no re-id split(s) {', '.join(missing)} "
            + ("and the model predicts no attributes" if not num_model_attributes
               else "and no labelled 'test' split for the model's attributes"))

    if has_reid:
        result.query = extract(model, dataset.splits["query"], image_size=image_size, batch_size=batch_size)
        result.gallery = extract(model, dataset.splits["gallery"], image_size=image_size, batch_size=batch_size)
        q, g = result.query, result.gallery
        result.distmat = euclidean_distance(q["embedding"], g["embedding"])
        result.metrics.update(_reid(result.distmat, q, g))
        dims = attribute_free_dims(model)
        if dims is not None:
            d = euclidean_distance(q["embedding"][:, :dims], g["embedding"][:, :dims])
            result.metrics.update({f"{k}_without_attributes": v for k, v in _reid(d, q, g).items()})
        if rerank:
            opts = dict(rerank_options or {})
            result.distmat_rerank = k_reciprocal_rerank(
                result.distmat,
                euclidean_distance(q["embedding"], q["embedding"]),
                euclidean_distance(g["embedding"], g["embedding"]), **opts)
            result.metrics.update({f"{k}_rerank": v for k, v in _reid(result.distmat_rerank, q, g).items()})
        for split in (q, g):
            if split["num_skipped"]:
                result.notes.append(f"{split['num_skipped']} unreadable image(s) skipped")

    if num_model_attributes:
        if not dataset_attributes:
            result.notes.append(f"{name} has no attribute labels: attribute metrics skipped")
            return result
        cols, why = _attribute_columns(attribute_names, dataset_attributes, num_model_attributes)
        if cols is None:
            result.notes.append(why)
            return result
        if has_reid:
            parts, split_name = [result.query, result.gallery], "query+gallery"
        elif _has_split(dataset, "test"):
            result.test = extract(model, dataset.splits["test"], image_size=image_size, batch_size=batch_size)
            parts, split_name = [result.test], "test"
        else:
            result.notes.append(f"{name}: no 'test' split: attribute metrics skipped")
            return result
        probs, labels = [], []
        for part in parts:
            if "attributes" not in part:
                raise ValueError(f"model {getattr(model, 'name', '')!r}: num_attributes={num_model_attributes} "
                                 "but its inference output has no 'attributes'")
            if "labels" in part:
                probs.append(part["attributes"][part["labeled"]])
                labels.append(part["labels"][part["labeled"]])
        if not labels or not sum(len(x) for x in labels):
            result.notes.append(f"{name}: no labelled image in {split_name}: attribute metrics skipped")
            return result
        probs, labels = np.concatenate(probs), np.concatenate(labels)
        if labels.shape[1] != len(dataset_attributes):
            raise ValueError(f"{name}: records have {labels.shape[1]} attribute labels but attribute_names "
                             f"lists {len(dataset_attributes)}")
        mcols = [c[0] for c in cols]
        dcols = [c[1] for c in cols]
        names = [c[2] for c in cols]
        a = attribute_metrics(probs[:, mcols], labels[:, dcols], attribute_names=names)
        result.metrics.update({k: float(a[k]) for k in ATTRIBUTE_KEYS})
        result.per_attribute = a["per_attribute"]
        result.attribute_names = names
        result.attribute_split = split_name
        if len(cols) < max(num_model_attributes, len(dataset_attributes)):
            result.notes.append(f"attribute metrics on the {len(cols)} attribute(s) shared by model and dataset")
    return result


def evaluate_run(model, dataset, *, batch_size=64, rerank=False, attribute_names=None):
    """The flat dict of float metrics of `evaluate` (what metrics.json holds)."""
    return dict(evaluate(model, dataset, batch_size=batch_size, rerank=rerank,
                         attribute_names=attribute_names).metrics)
