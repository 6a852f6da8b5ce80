"""keras_hpnet.evaluation (the protocol, any predictor) and python -m training.evaluate.

A tiny stand-in model whose ranking feature is the mean colour of the image
makes every distance, ranking and prediction known in advance: the metrics are
checked against numbers worked out by hand and against loop references written
here from the definitions (docs/metrics.md), not against keras_hpnet.metrics.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np

from keras_hpnet.retrieval.query import attribute_query_map
import pytest
from PIL import Image

from keras_hpnet.datasets import PedestrianDataset, Record
from keras_hpnet.evaluation import (attribute_free_dims, callable_predictor, evaluate, evaluate_model, extract,
                                    keras_predictor, subsample)
from training import evaluate as evaluate_cli

SIZE = (16, 8)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@keras.saving.register_keras_serializable(package="keras_hpnet_tests")
class ColourNet(keras.Model):
    """Embedding = mean red / 255 (1-d); attributes = mean (G, B) / 255 (the first
    `num_attributes` of them). With `embedding_includes_attributes` the
    embedding is followed by `attribute_scale` x the attribute probabilities
    (like HAT-CNN's attribute part). Attention: the red channel, and 4 fixed
    stripes as hard-attention boxes."""

    model_name = "colournet"

    def __init__(self, num_attributes=0, embedding_includes_attributes=False, attribute_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.num_attributes = int(num_attributes)
        self.embedding_includes_attributes = bool(embedding_includes_attributes)
        self.attribute_scale = float(attribute_scale)
        self.input_size = SIZE
        self.num_classes = 0
        self.embedding_dim = 1 + (self.num_attributes if self.embedding_includes_attributes else 0)

    def call(self, x, training=False):
        mean = keras.ops.mean(keras.ops.cast(x, "float32"), axis=(1, 2)) / 255.0
        out = {"embedding": mean[:, :1]}
        if self.num_attributes:
            probs = mean[:, 1:1 + self.num_attributes]
            out["attributes"] = probs
            if self.embedding_includes_attributes:
                out["embedding"] = keras.ops.concatenate([mean[:, :1], self.attribute_scale * probs], axis=-1)
        return out

    def attention_maps(self, x):
        x = np.asarray(x, np.float32)
        n = len(x)
        stripes = np.array([[i / 4, 0.0, (i + 1) / 4, 1.0] for i in range(4)], np.float32)
        return {"soft_level1": x[..., 0] / 255.0, "soft_level2": x[:, ::2, ::2, 1] / 255.0,
                "boxes_level1": np.repeat(stripes[None], n, 0), "boxes_level2": np.repeat(stripes[None], n, 0),
                "translations_level1": np.zeros((n, 4, 2), np.float32)}

    def get_config(self):
        return {"num_attributes": self.num_attributes, "name": self.name,
                "embedding_includes_attributes": self.embedding_includes_attributes,
                "attribute_scale": self.attribute_scale}


def solid(path, rgb):
    Image.fromarray(np.full(SIZE + (3,), rgb, np.uint8)).save(path)
    return path


# Hand-designed split (R channel decides the ranking; G, B the attributes):
#   q1 pid 1 cam 0 R=100 | q2 pid 2 cam 0 R=200
#   gallery (cam 1 unless said): g1 pid 1 R=100, g2 pid 2 R=110, g3 pid 1 R=130,
#   g4 pid 2 R=190, g5 pid 2 cam 0 R=200 (same pid+cam as q2: ignored for q2),
#   g6 pid 0 R=195 (distractor, no attribute labels).
# q1 ranks g1(T) g2 g3(T) g4 g6 g5 -> AP (1 + 2/3)/2, rank1 hit, NP 2/3
# q2 ranks g6 g4(T) g3 g2(T) g1 -> AP (1/2 + 2/4)/2, first hit at 2, NP 2/4
HAND = {"rank1": 0.5, "rank5": 1.0, "rank10": 1.0, "mAP": (5 / 6 + 0.5) / 2, "mINP": (2 / 3 + 0.5) / 2}
# (G, B) of each image: attribute 0 is "G > 127", attribute 1 "B > 127".
Q = [("q1", 1, 0, (100, 200, 10), (1, 0)), ("q2", 2, 0, (200, 30, 240), (0, 1))]
G = [("g1", 1, 1, (100, 220, 20), (1, 0)), ("g2", 2, 1, (110, 100, 200), (1, 1)),
     ("g3", 1, 1, (130, 140, 90), (1, 0)), ("g4", 2, 1, (190, 20, 250), (0, 1)),
     ("g5", 2, 0, (200, 10, 100), (0, 0)), ("g6", 0, 1, (195, 128, 128), None)]
ATTRS = ["green", "blue"]


def make_records(root, rows):
    out = []
    for name, pid, cam, rgb, attrs in rows:
        path = solid(os.path.join(root, f"{name}.png"), rgb)
        out.append(Record(path, pid, cam, None if attrs is None else np.array(attrs, np.uint8)))
    return out


@pytest.fixture
def hand_dataset(tmp_path):
    q, g = make_records(str(tmp_path), Q), make_records(str(tmp_path), G)
    return PedestrianDataset("hand", {"train": q, "query": q, "gallery": g}, kind="reid", attribute_names=ATTRS)


def reference_reid(q_feat, g_feat, q_pids, g_pids, q_cams, g_cams):
    """Loop reference from the Market-1501 protocol definitions."""
    d = np.sqrt(((q_feat[:, None] - g_feat[None]) ** 2).sum(-1))
    cmc, aps, nps = [], [], []
    for i in range(len(q_feat)):
        order = np.argsort(d[i], kind="stable")
        keep = [j for j in order if not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i]) and g_pids[j] != -1]
        hits = np.array([g_pids[j] == q_pids[i] for j in keep])
        if not hits.any():
            continue
        ranks = np.flatnonzero(hits) + 1
        cmc.append([bool((ranks <= k).any()) for k in (1, 5, 10)])
        aps.append(np.mean([(n + 1) / r for n, r in enumerate(ranks)]))
        nps.append(len(ranks) / ranks[-1])
    cmc = np.mean(cmc, 0)
    return {"rank1": cmc[0], "rank5": cmc[1], "rank10": cmc[2], "mAP": np.mean(aps), "mINP": np.mean(nps)}


def reference_attributes(probs, labels):
    pred, gt = probs > 0.5, labels.astype(bool)
    terms = []
    for j in range(gt.shape[1]):
        parts = []
        if gt[:, j].any():
            parts.append((pred[:, j] & gt[:, j]).sum() / gt[:, j].sum())
        if (~gt[:, j]).any():
            parts.append((~pred[:, j] & ~gt[:, j]).sum() / (~gt[:, j]).sum())
        terms.append(np.mean(parts))
    ratio = lambda a, b: a / b if b else 0.0  # noqa: E731
    acc = np.mean([ratio((p & t).sum(), (p | t).sum()) for p, t in zip(pred, gt)])
    prec = np.mean([ratio((p & t).sum(), p.sum()) for p, t in zip(pred, gt)])
    rec = np.mean([ratio((p & t).sum(), t.sum()) for p, t in zip(pred, gt)])
    return {"mA": np.mean(terms), "acc": acc, "prec": prec, "rec": rec, "f1": 2 * prec * rec / (prec + rec)}, terms


def colour_features(rows, with_attributes=0, scale=1.0):
    """ColourNet's embedding of solid-colour images."""
    rgb = np.array([r[3] for r in rows], np.float64) / 255.0
    if with_attributes:
        return np.concatenate([rgb[:, :1], scale * rgb[:, 1:1 + with_attributes]], 1)
    return rgb[:, :1]


def colour_probs(rows):
    return np.array([r[3] for r in rows], np.float64)[:, 1:3] / 255.0


def split_labels():
    """(query pids, gallery pids, query camids, gallery camids) of the hand split."""
    return (np.array([r[1] for r in Q]), np.array([r[1] for r in G]),
            np.array([r[2] for r in Q]), np.array([r[2] for r in G]))


def test_extract_returns_features_in_record_order_and_skips_unreadable(tmp_path, hand_dataset):
    records = list(hand_dataset.gallery)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    records.insert(2, Record(str(bad), 5, 1, np.array([0, 0], np.uint8)))
    with pytest.warns(Warning):
        out = extract(keras_predictor(ColourNet(num_attributes=2)), records, input_size=SIZE, batch_size=4)
    assert out["num_skipped"] == 1
    np.testing.assert_array_equal(out["index"], [0, 1, 3, 4, 5, 6])
    np.testing.assert_allclose(out["embedding"], colour_features(G), atol=1e-6)
    np.testing.assert_allclose(out["attributes"], colour_probs(G), atol=1e-6)
    np.testing.assert_array_equal(out["pids"], [1, 2, 1, 2, 2, 0])
    np.testing.assert_array_equal(out["camids"], [1, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(out["labeled"], [True] * 5 + [False])  # the distractor has no labels
    np.testing.assert_array_equal(out["labels"][:5], [g[4] for g in G[:5]])


def test_evaluate_run_matches_hand_computed_and_reference(hand_dataset):
    metrics = evaluate_model(ColourNet(num_attributes=2), hand_dataset, batch_size=3).metrics
    for k, v in HAND.items():
        assert metrics[k] == pytest.approx(v, abs=1e-9), k
    ref = reference_reid(colour_features(Q), colour_features(G), *split_labels())
    for k in HAND:
        assert metrics[k] == pytest.approx(ref[k], abs=1e-9), k
    # Attributes over query + gallery images that have labels (the distractor has none).
    labelled = [r for r in Q + G if r[4] is not None]
    ref_attr, _ = reference_attributes(colour_probs(labelled), np.array([r[4] for r in labelled]))
    for k, v in ref_attr.items():
        assert metrics[k] == pytest.approx(v, abs=1e-9), k
    # By hand: green pred (G>127) = q1 g1 g3 (g2 G=100 missed): pos 3/4, neg 3/3; blue (B>127) = q2 g2 g4: 3/3, 4/4.
    assert metrics["mA"] == pytest.approx(((3 / 4 + 1) / 2 + 1) / 2)
    # Attribute search over the same labelled rows: one-term and two-term conjunctions.
    aq = attribute_query_map(colour_probs(labelled), np.array([r[4] for r in labelled]),
                             ATTRS, sizes=(1, 2))
    for n in ("1", "2"):
        assert metrics[f"attribute_query_mAP_{n}"] == pytest.approx(aq[n]["mAP"], abs=1e-12)
    assert 0.0 < metrics["attribute_query_mAP"] <= 1.0
    assert set(metrics) == {"rank1", "rank5", "rank10", "mAP", "mINP", "mA", "acc", "prec", "rec", "f1",
                            "attribute_query_mAP", "attribute_query_mAP_1", "attribute_query_mAP_2"}
    assert all(isinstance(v, float) for v in metrics.values())


def test_attribute_part_of_ranking_feature_reported_both_ways(hand_dataset):
    """HAT-CNN-style feature: with the attribute part the ranking changes; without it
    (`*_without_attributes`) it is the hand-computed colour ranking."""
    model = ColourNet(num_attributes=2, embedding_includes_attributes=True, attribute_scale=3.0)
    result = evaluate_model(model, hand_dataset, batch_size=8)
    m = result.metrics
    for k, v in HAND.items():
        assert m[f"{k}_without_attributes"] == pytest.approx(v, abs=1e-9), k
    ref = reference_reid(colour_features(Q, 2, 3.0), colour_features(G, 2, 3.0), *split_labels())
    for k in HAND:
        assert m[k] == pytest.approx(ref[k], abs=1e-6), k
    assert m["mAP"] != pytest.approx(m["mAP_without_attributes"])  # the design makes them differ
    # Per-attribute table for the pictures.
    assert [r["name"] for r in result.per_attribute] == ATTRS
    assert result.per_attribute[0]["mA"] == pytest.approx((3 / 4 + 1) / 2)
    assert result.per_attribute[1]["pos_ratio"] == pytest.approx(3 / 7)


def colour_predictor(images):
    """ColourNet(num_attributes=2) in numpy: a predictor that is no Keras model."""
    mean = np.asarray(images, np.float64).mean(axis=(1, 2)) / 255.0
    return {"embedding": mean[:, :1], "attributes": mean[:, 1:3]}


def test_any_predictor_gets_the_same_metrics(hand_dataset, tmp_path):
    """The protocol is predictor-agnostic: a numpy function and a SavedModel signature
    score exactly what the Keras model does on the same images."""
    import tensorflow as tf

    model = ColourNet(num_attributes=2)
    want = evaluate_model(model, hand_dataset, batch_size=4)
    plain = evaluate(colour_predictor, hand_dataset, input_size=SIZE, num_attributes=2, batch_size=4)
    assert plain.metrics == pytest.approx(want.metrics, abs=1e-6)
    assert plain.metrics["rank1"] == pytest.approx(HAND["rank1"])

    module = tf.Module()
    module.serve = tf.function(lambda images: model(images, training=False),
                               input_signature=[tf.TensorSpec([None, *SIZE, 3], tf.uint8, name="images")])
    tf.saved_model.save(module, str(tmp_path / "saved"), signatures={"serving_default": module.serve})
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    served = callable_predictor(loaded.signatures["serving_default"], input_name="images")
    via_saved_model = evaluate_model(model, hand_dataset, predict_fn=served, batch_size=3)
    assert via_saved_model.metrics == pytest.approx(want.metrics, abs=1e-6)
    out = via_saved_model.outputs()  # query then gallery, the order parity reports compare in
    np.testing.assert_allclose(out["embedding"], colour_features(Q + G), atol=1e-6)
    np.testing.assert_allclose(out["attributes"], colour_probs(Q + G), atol=1e-6)
    with pytest.raises(ValueError, match="no 'embedding'"):
        evaluate(lambda x: {"features": x}, hand_dataset, input_size=SIZE)


def test_unlabelled_rows_are_masked_out_of_attribute_metrics(hand_dataset):
    """The distractor g6 (no labels) is ranked but scored in no attribute metric, whatever it predicts."""
    def predictor(flip_g6):
        def predict(images):
            out = colour_predictor(images)
            if flip_g6:  # g6 is the only image with R = 195
                g6 = np.isclose(out["embedding"][:, 0], 195 / 255)
                out["attributes"][g6] = 1.0 - out["attributes"][g6]
            return out
        return predict

    a, b = (evaluate(predictor(f), hand_dataset, input_size=SIZE, num_attributes=2) for f in (False, True))
    assert a.metrics == b.metrics
    assert [r["num_pos"] + r["num_neg"] for r in a.per_attribute] == [7, 7]  # 8 images, 7 labelled


def test_attribute_free_dims_is_what_the_model_declares():
    import keras_hpnet

    class Named:
        model_name, num_attributes, embedding_dim = "hatcnn", 4, 1028  # a name alone declares nothing

    assert attribute_free_dims(Named()) is None
    assert attribute_free_dims(ColourNet(num_attributes=2, embedding_includes_attributes=True)) == 1
    assert attribute_free_dims(ColourNet(num_attributes=2)) is None
    hatcnn = keras_hpnet.build_model("hatcnn", num_classes=3, num_attributes=2, channels=(8, 16, 24), feature_dim=16)
    assert attribute_free_dims(hatcnn) == 32
    assert attribute_free_dims(keras_hpnet.build_model("hacnn", num_classes=3, channels=(8, 16, 24))) is None


def test_subsample_keeps_proportions_and_order(hand_dataset):
    small = subsample(hand_dataset, 4, seed=0)
    assert (len(small.query), len(small.gallery)) == (1, 3)
    order = {r.path: i for i, r in enumerate(hand_dataset.gallery)}
    assert [order[r.path] for r in small.gallery] == sorted(order[r.path] for r in small.gallery)
    assert small.train == hand_dataset.train and len(hand_dataset.gallery) == 6  # the original is unchanged
    assert subsample(hand_dataset, None) is hand_dataset
    assert [r.path for r in subsample(hand_dataset, 4, seed=0).gallery] == [r.path for r in small.gallery]


def test_rerank_adds_rerank_keys(hand_dataset):
    from keras_hpnet.metrics import euclidean_distance, k_reciprocal_rerank, reid_metrics

    result = evaluate_model(ColourNet(), hand_dataset, rerank=True)
    q, g = colour_features(Q).astype(np.float32), colour_features(G).astype(np.float32)
    d = k_reciprocal_rerank(euclidean_distance(q, g), euclidean_distance(q, q), euclidean_distance(g, g))
    ref = reid_metrics(d, [1, 2], [r[1] for r in G], [0, 0], [r[2] for r in G])
    for k in ("rank1", "rank5", "rank10", "mAP", "mINP"):
        assert result.metrics[f"{k}_rerank"] == pytest.approx(ref[k], abs=1e-6)
        assert result.metrics[k] == pytest.approx(HAND[k])
    assert "mA" not in result.metrics  # no attribute predictions


def test_attribute_dataset_uses_test_split(tmp_path):
    train = make_records(str(tmp_path), [("t0", -1, -1, (0, 255, 0), (1, 0))])
    test_rows = [(f"s{i}", -1, -1, (0, gv, bv), lab) for i, (gv, bv, lab) in
                 enumerate([(200, 10, (1, 0)), (60, 220, (1, 1)), (10, 10, (0, 0)), (140, 140, (0, 1))])]
    test = make_records(str(tmp_path), test_rows)
    ds = PedestrianDataset("attr", {"train": train, "val": train, "test": test}, kind="attribute",
                           attribute_names=ATTRS)
    result = evaluate_model(ColourNet(num_attributes=2), ds)
    ref, terms = reference_attributes(colour_probs(test_rows), np.array([r[4] for r in test_rows]))
    aq = attribute_query_map(colour_probs(test_rows), np.array([r[4] for r in test_rows]), ATTRS, sizes=(1, 2))
    ref.update({"attribute_query_mAP": aq["mAP"], "attribute_query_mAP_1": aq["1"]["mAP"],
                "attribute_query_mAP_2": aq["2"]["mAP"]})
    assert set(result.metrics) == set(ref)
    for k, v in ref.items():
        assert result.metrics[k] == pytest.approx(v, abs=1e-9), k
    assert result.attribute_split == "test"
    assert [r["mA"] for r in result.per_attribute] == pytest.approx(terms)
    # Matching by name: a model whose 2nd output is "green" only scores that attribute.
    by_name = evaluate_model(ColourNet(num_attributes=2), ds, attribute_names=["other", "green"])
    assert [r["name"] for r in by_name.per_attribute] == ["green"]
    # A re-id-only model has nothing to do on an attribute-only dataset.
    with pytest.raises(ValueError, match="nothing to evaluate.*query, gallery"):
        evaluate_model(ColourNet(), ds)


def test_unknown_attribute_entries_are_masked_per_entry(tmp_path):
    """UNKNOWN_ATTRIBUTE entries are left out of every attribute metric (hand-computed)."""
    from keras_hpnet.datasets import UNKNOWN_ATTRIBUTE as U

    # predictions (G, B > 127): s0 (1, 0), s1 (0, 1), s2 (0, 0), s3 (1, 1)
    rows = [(f"s{i}", -1, -1, (0, gv, bv), lab) for i, (gv, bv, lab) in
            enumerate([(200, 10, (1, 0)), (60, 220, (U, 1)), (10, 10, (0, 0)), (140, 140, (0, U))])]
    test = make_records(str(tmp_path), rows)
    ds = PedestrianDataset("attr", {"train": test, "test": test}, kind="attribute", attribute_names=ATTRS)
    m = evaluate_model(ColourNet(num_attributes=2), ds)
    # green over s0, s2, s3: TP 1/1, TN 1/2 -> .75; blue over s0, s1, s2: 1/1, 2/2 -> 1
    assert m.metrics["mA"] == pytest.approx((0.75 + 1.0) / 2)
    # rows over their known entries: s0 {g}/{g}, s1 {b}/{b}, s2 {}/{}, s3 {g}/{}
    for k in ("acc", "prec", "rec"):
        assert m.metrics[k] == pytest.approx(0.5), k
    assert [r["num_unknown"] for r in m.per_attribute] == [1, 1]
    # an attribute nobody labelled in the split is left out, with a note
    blank = [r._replace(attributes=np.array([r.attributes[0], U], np.uint8)) for r in test]
    ds2 = PedestrianDataset("attr", {"train": blank, "test": blank}, kind="attribute", attribute_names=ATTRS)
    m2 = evaluate_model(ColourNet(num_attributes=2), ds2)
    assert [r["name"] for r in m2.per_attribute] == ["green"]
    assert m2.metrics["mA"] == pytest.approx(0.75)
    assert any("no known label in test, left out: blue" in n for n in m2.notes)


def test_attribute_map_renames_model_attributes(tmp_path, hand_dataset):
    """Cross-domain: a model naming its attributes otherwise is scored through an AttributeMap, one mechanism
    with the by-name match; bad files and unknown names are errors naming the file and line."""
    from keras_hpnet.evaluation import AttributeMap

    direct = evaluate(colour_predictor, hand_dataset, input_size=SIZE, num_attributes=2)
    (tmp_path / "map.txt").write_text("# run name -> dataset name\nG\tgreen\n\nB, blue  # comment\n")
    (tmp_path / "map.json").write_text('{"G": "green", "B": "blue"}')
    for path in ("map.txt", "map.json"):
        amap = AttributeMap.read(str(tmp_path / path))
        mapped = evaluate(colour_predictor, hand_dataset, input_size=SIZE, num_attributes=2,
                          attribute_names=["G", "B"], attribute_map=amap)
        assert mapped.metrics == pytest.approx(direct.metrics)
        assert [r["name"] for r in mapped.per_attribute] == ATTRS
    # a partial map: the mapped attribute is scored, the other noted
    part = evaluate(colour_predictor, hand_dataset, input_size=SIZE, num_attributes=2, attribute_names=["G", "B"],
                    attribute_map={"B": "blue"})
    assert [r["name"] for r in part.per_attribute] == ["blue"]
    assert part.per_attribute[0]["mA"] == pytest.approx(direct.per_attribute[1]["mA"])
    assert any("without a counterpart in hand (not mapped): G" in n for n in part.notes)
    (tmp_path / "bad.txt").write_text("G green\nB\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected two names"):
        AttributeMap.read(str(tmp_path / "bad.txt"))
    (tmp_path / "twice.txt").write_text("G green\nG blue\n")
    with pytest.raises(ValueError, match=r"twice\.txt:2: 'G' is mapped twice \(first at .*twice\.txt:1\)"):
        AttributeMap.read(str(tmp_path / "twice.txt"))
    (tmp_path / "unknown.txt").write_text("G green\nB bleu\n")
    with pytest.raises(ValueError, match=r"unknown\.txt:2: 'bleu' is not one of the dataset's attribute names "
                                         r"\(close: blue\)"):
        evaluate(colour_predictor, hand_dataset, input_size=SIZE, num_attributes=2, attribute_names=["G", "B"],
                 attribute_map=AttributeMap.read(str(tmp_path / "unknown.txt")))
    with pytest.raises(ValueError, match=r"map\.json: key 'B': 'B' is not one of the model's attribute names"):
        evaluate(colour_predictor, hand_dataset, input_size=SIZE, num_attributes=2, attribute_names=["G", "Q"],
                 attribute_map=AttributeMap.read(str(tmp_path / "map.json")))
    (tmp_path / "bad.json").write_text('{"G": 3}')
    with pytest.raises(ValueError, match=r"bad\.json: key 'G': expected a non-empty dataset attribute name"):
        AttributeMap.read(str(tmp_path / "bad.json"))


# -- the command line -------------------------------------------------------------------

def write_csv_dataset(root):
    os.makedirs(root, exist_ok=True)
    for split, rows in (("train", Q), ("query", Q), ("gallery", G[:5])):  # CSV needs labels on every row
        lines = ["path,pid,camid," + ",".join(ATTRS)]
        for name, pid, cam, rgb, attrs in rows:
            solid(os.path.join(root, f"{name}.png"), rgb)
            lines.append(f"{name}.png,{pid},{cam},{attrs[0]},{attrs[1]}")
        with open(os.path.join(root, f"{split}.csv"), "w") as f:
            f.write("\n".join(lines) + "\n")


def make_run_dir(path, data_dir, model=None, model_name="colournet", **config):
    os.makedirs(path, exist_ok=True)
    model = model or ColourNet(num_attributes=2)
    if not model.built:
        model(np.zeros((1,) + tuple(model.input_size) + (3,), np.uint8))  # built before saving
    model.save(os.path.join(path, "model.keras"))
    cfg = {"model": model_name, "dataset": "custom", "data_dir": data_dir, "input_height": SIZE[0],
           "input_width": SIZE[1], "num_classes": 2, "attribute_names": ATTRS, "embedding_dim": 1, "seed": 0}
    cfg.update(config)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    return str(path)


def test_cli_cross_domain_with_an_attribute_map(tmp_path):
    """A run trained on one dataset (here: recorded as synthetic_pa100k, PA-100K attribute names) evaluated on
    another (synthetic, Market names): re-id transfer from the features, attributes through --attribute_map,
    the unmapped one noted; the CLI's numbers are the library's."""
    from support import make_tiny_model

    from keras_hpnet import datasets
    from keras_hpnet.evaluation import AttributeMap

    names = ["Female", "Hat", "Backpack"]
    model = make_tiny_model(input_size=(32, 16), embedding_dim=8, num_attributes=3, num_classes=0)
    run_dir = make_run_dir(tmp_path / "run", None, model=model, model_name="tiny", dataset="synthetic_pa100k",
                           input_height=32, input_width=16, num_classes=0, attribute_names=names, embedding_dim=8)
    amap = tmp_path / "pa100k_to_market.txt"
    amap.write_text("# run (PA-100K) name -> dataset (Market) name\nFemale\tgender\nHat\that\n")
    data, sizes = str(tmp_path / "data"), ["num_train_ids=2", "num_test_ids=4", "max_images=2"]
    res = subprocess.run([sys.executable, "-m", "training.evaluate", f"--run_dir={run_dir}", "--dataset=synthetic",
                          f"--data_dir={data}", *[f"--dataset_option={o}" for o in sizes],
                          f"--attribute_map={amap}", "--nopictures", f"--out={tmp_path / 'eval'}"],
                         capture_output=True, text=True, cwd=REPO, timeout=300,
                         env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"))
    assert res.returncode == 0, res.stderr[-3000:]
    details = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    metrics = details["metrics"]
    assert {"rank1", "mAP", "mA", "f1"} <= set(metrics) and details["dataset"] == "synthetic"
    assert [r["name"] for r in details["per_attribute"]] == ["gender", "hat"]
    assert any("(not mapped): Backpack" in n for n in details["notes"])
    assert "mA" in res.stdout and "not mapped" in res.stdout
    print("cross-domain metrics:", {k: round(v, 4) for k, v in metrics.items()})
    ds = datasets.load("synthetic", data, num_train_ids=2, num_test_ids=4, max_images=2)
    want = evaluate_model(model, ds, attribute_names=names, attribute_map=AttributeMap.read(str(amap)))
    assert metrics == pytest.approx(want.metrics, abs=1e-6)
    # a bad entry names the file and line, before any model is loaded
    amap.write_text("Female gender\nHat\n")
    with pytest.raises(evaluate_cli.EvaluateError, match=r"--attribute_map: .*pa100k_to_market\.txt:2: expected two"):
        evaluate_cli.run(run_dir, dataset="synthetic", data_dir=data, attribute_map=str(amap), dataset_option=sizes)
    amap.write_text("Female gendr\n")
    with pytest.raises(evaluate_cli.EvaluateError, match=r"txt:1: 'gendr' is not one of the dataset's .*close: gender"):
        evaluate_cli.run(run_dir, dataset="synthetic", data_dir=data, attribute_map=str(amap), dataset_option=sizes,
                         pictures=False)


def test_cli_run_writes_metrics_and_pictures(tmp_path, capsys):
    data = str(tmp_path / "data")
    write_csv_dataset(data)
    run_dir = make_run_dir(tmp_path / "run", data)
    out = os.path.join(run_dir, "eval")
    os.makedirs(out)
    for old in ("attention_09.png", "mine.txt"):  # an earlier evaluation's picture, a user's file
        open(os.path.join(out, old), "w").close()
    metrics = evaluate_cli.run(run_dir, rerank=True, num_queries=2, queries_per_picture=1, top_k=3, num_attention=2)
    with open(os.path.join(out, "metrics.json")) as f:
        written = json.load(f)
    assert written == pytest.approx(metrics)
    # Without the distractor g6 (CSV rows need labels): q2 ranks g4(T) g3 g2(T): AP 5/6 like q1.
    assert written["rank1"] == 1.0 and written["mAP"] == pytest.approx(5 / 6)
    assert written["mINP"] == pytest.approx(2 / 3)
    assert {"rank1_rerank", "mA", "f1"} <= set(written)
    with open(os.path.join(out, "evaluation.json")) as f:
        details = json.load(f)
    assert details["num_query"] == 2 and details["num_gallery"] == 5 and details["attribute_split"] == "query+gallery"
    names = sorted(os.listdir(out))
    assert names == ["attention_01.png", "attention_02.png", "attributes.png", "evaluation.json", "metrics.json",
                     "mine.txt", "per_attribute.csv", "ranked_lists_01.png", "ranked_lists_02.png",
                     "ranked_lists_rerank_01.png", "ranked_lists_rerank_02.png"]
    assert sorted(details["pictures"]) == [n for n in names if n.endswith(".png")]
    with open(os.path.join(out, "per_attribute.csv")) as f:
        assert f.readline().startswith("name,mA,")
    # q1's ranked list: 3 tiles, the first (g1, same identity) framed green.
    img = np.asarray(Image.open(os.path.join(out, "ranked_lists_01.png")).convert("RGB"))
    green = np.all(img == (0, 200, 0), -1)
    red = np.all(img == (230, 0, 0), -1)
    assert green.any() and red.any()
    assert np.flatnonzero(green.any(0))[0] < np.flatnonzero(red.any(0))[0]  # rank 1 correct
    assert "rank1" in capsys.readouterr().out


def test_cli_subprocess_and_errors(tmp_path):
    data = str(tmp_path / "data")
    write_csv_dataset(data)
    run_dir = make_run_dir(tmp_path / "run", data)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.path.join(REPO, "tests"))

    def cli(*args):
        return subprocess.run([sys.executable, "-c",
                               "import test_training_evaluate, sys; from absl import app; from training import evaluate; "
                               "sys.argv[0] = 'evaluate'; evaluate.define_flags(); app.run(evaluate.main)", *args],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=300)

    ok = cli(f"--run_dir={run_dir}", f"--out={tmp_path / 'o'}", "--nopictures")
    assert ok.returncode == 0, ok.stderr
    assert os.path.isfile(tmp_path / "o" / "metrics.json") and "mAP" in ok.stdout
    assert not [n for n in os.listdir(tmp_path / "o") if n.endswith(".png")]

    # The real entry point; bad input fails before TensorFlow is imported.
    missing = subprocess.run([sys.executable, "-m", "training.evaluate", f"--run_dir={tmp_path / 'nope'}"],
                             capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert missing.returncode == 2 and "no such directory" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize("case, message", [
    ("no_config", "config.json: missing"),
    ("bad_json", "config.json: not valid JSON"),
    ("no_model_field", r"missing field\(s\) model"),
    ("no_model", "model.keras: missing"),
    ("bad_model", "model.keras: cannot load the model"),
    ("unknown_dataset", "--dataset='nosuch'.*unknown dataset"),
    ("bad_data_dir", "--data_dir=.*no such directory"),
    ("no_query_gallery", "nothing to evaluate"),
])
def test_cli_errors_name_the_problem(tmp_path, case, message):
    data = str(tmp_path / "data")
    write_csv_dataset(data)
    run_dir = make_run_dir(tmp_path / "run", data, model=ColourNet())
    kwargs = {}
    if case == "no_config":
        os.remove(os.path.join(run_dir, "config.json"))
    elif case == "bad_json":
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            f.write("{not json")
    elif case == "no_model_field":
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump({"dataset": "custom"}, f)
    elif case == "no_model":
        os.remove(os.path.join(run_dir, "model.keras"))
    elif case == "bad_model":
        with open(os.path.join(run_dir, "model.keras"), "wb") as f:
            f.write(b"garbage")
    elif case == "unknown_dataset":
        kwargs["dataset"] = "nosuch"
    elif case == "bad_data_dir":
        kwargs.update(dataset="custom", data_dir=str(tmp_path / "missing"))
    elif case == "no_query_gallery":  # an attribute-only dataset for a re-id-only model
        attr = str(tmp_path / "attr")
        os.makedirs(attr)
        for split in ("train", "val", "test"):
            solid(os.path.join(attr, f"{split}.png"), (10, 200, 30))
            with open(os.path.join(attr, f"{split}.csv"), "w") as f:
                f.write(f"path,pid,camid,green\n{split}.png,-1,-1,1\n")
        kwargs.update(dataset="custom", data_dir=attr)
    with pytest.raises(evaluate_cli.EvaluateError, match=message):
        evaluate_cli.run(run_dir, pictures=False, verbose=False, **kwargs)
    assert not os.path.exists(os.path.join(run_dir, "eval", "metrics.json"))


# -- end to end with a real network -----------------------------------------------------

def draw_person(path, top, bottom, background):
    from PIL import ImageDraw

    im = Image.new("RGB", (64, 128), background)
    d = ImageDraw.Draw(im)
    d.ellipse([23, 6, 41, 26], fill=(225, 185, 160))
    d.rectangle([15, 26, 49, 72], fill=top)
    d.rectangle([19, 72, 45, 122], fill=bottom)
    im.save(path)


def test_end_to_end_hatcnn_run_dir(tmp_path):
    """An (untrained) HAT-CNN saved as a run: the CLI reloads it and reproduces the
    in-memory metrics, ranks with and without the attribute part of the
    1024 + A feature, and draws HA-CNN soft maps with hard-attention regions."""
    import keras_hpnet

    data = tmp_path / "data"
    data.mkdir()
    people = {1: ((200, 40, 40), (30, 30, 30)), 2: ((40, 60, 200), (200, 200, 200)), 3: ((40, 160, 40), (30, 30, 90))}
    for split, cams in (("train", (0,)), ("query", (0,)), ("gallery", (1, 2))):
        lines = ["path,pid,camid,red_top,light_bottom"]
        for pid, (top, bottom) in people.items():
            for cam in cams:
                name = f"{split}_{pid}_{cam}.png"
                draw_person(str(data / name), top, bottom, (100 + 20 * cam, 110, 120 - 10 * cam))
                lines.append(f"{name},{pid},{cam},{int(pid == 1)},{int(pid == 2)}")
        (data / f"{split}.csv").write_text("\n".join(lines) + "\n")

    model = keras_hpnet.build_model("hatcnn", num_classes=3, num_attributes=2)
    run_dir = make_run_dir(tmp_path / "run", str(data), model=model, model_name="hatcnn",
                           attribute_names=["red_top", "light_bottom"])
    from keras_hpnet.datasets import load

    result = evaluate_model(model, load("custom", str(data)), batch_size=4)
    q, g = result.query, result.gallery
    assert q["embedding"].shape == (3, 1026)
    labels = (q["pids"], g["pids"], q["camids"], g["camids"])
    full = reference_reid(q["embedding"], g["embedding"], *labels)
    base = reference_reid(q["embedding"][:, :1024], g["embedding"][:, :1024], *labels)
    for k in ("rank1", "mAP", "mINP"):
        assert result.metrics[k] == pytest.approx(full[k], abs=1e-6)
        assert result.metrics[f"{k}_without_attributes"] == pytest.approx(base[k], abs=1e-6)
    assert {"mA", "acc", "prec", "rec", "f1"} <= set(result.metrics)

    metrics = evaluate_cli.run(run_dir, batch_size=4, num_queries=3, num_attention=1, verbose=False)
    assert metrics == pytest.approx(result.metrics, abs=1e-5)  # .keras round trip + CLI path
    att = np.asarray(Image.open(os.path.join(run_dir, "eval", "attention_01.png")).convert("RGB"))
    for colour in viz_palette()[:4]:  # the 4 hard-attention regions
        assert mask_of_colour(att, colour).sum() > 100
    assert os.path.isfile(os.path.join(run_dir, "eval", "ranked_lists_01.png"))


def viz_palette():
    from keras_hpnet.viz import _draw

    return _draw.PALETTE


def mask_of_colour(img, colour):
    return np.all(img == np.asarray(colour, np.uint8), axis=-1)


def test_fit_and_evaluate_import_together():
    # Both modules' library functions are used side by side (tests, notebooks): importing
    # them in one process must not clash over flag names (--dataset, --data_dir, ...).
    proc = subprocess.run([sys.executable, "-c", "import training.fit, training.evaluate; print('ok')"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
