"""Open-set calibration (keras_hpnet.retrieval.calibration), python -m training.calibrate, and the
calibrated threshold carried by the metadata into edge matching.

The small problem (1-d embeddings, distances in whole numbers):
  query  q1 pid 1 cam 0 x=100 | q2 pid 2 cam 0 x=200
  gallery g1 pid 1 cam 1 x=100, g2 pid 2 cam 1 x=110, g3 pid 1 cam 1 x=130,
          g4 pid 2 cam 1 x=190, g5 pid 2 cam 0 x=200 (same camera as q2: not genuine)
  genuine  q1g1 0, q1g3 30, q2g2 90, q2g4 10
  impostor q1g2 10, q1g4 90, q1g5 100, q2g1 100, q2g3 70
ROC (accept d <= t), by hand:
  t:   -inf  0    10   30   70   90   100
  TPR: 0    1/4  2/4  3/4  3/4  1    1
  FPR: 0    0    1/5  1/5  2/5  3/5  1
AUC = 0.075 + 0.15 + 0.175 + 0.4 = 0.8 (= P(gen < imp) + P(=)/2 = 16/20);
EER between t=30 (FPR .2, FNR .25) and t=70 (FPR .4, FNR .25): 0.25 at t = 40.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from edge.gallery import Gallery
from edge.stream import IdentityAssigner, match_threshold
from keras_hpnet.metadata import ModelMetadata
from keras_hpnet.retrieval import calibration as cal

QX = np.array([[100.0], [200.0]])
QP, QC = np.array([1, 2]), np.array([0, 0])
GX = np.array([[100.0], [110.0], [130.0], [190.0], [200.0]])
GP, GC = np.array([1, 2, 1, 2, 2]), np.array([1, 1, 1, 1, 0])


def test_pairs_and_hand_computed_roc():
    gq, gg = cal.genuine_pairs(QP, QC, GP, GC)
    assert sorted(zip(gq.tolist(), gg.tolist())) == [(0, 0), (0, 2), (1, 1), (1, 3)]
    iq, ig, sampled = cal.impostor_pairs(QP, GP, max_pairs=100)
    assert not sampled and sorted(zip(iq.tolist(), ig.tolist())) == [(0, 1), (0, 3), (0, 4), (1, 0), (1, 2)]
    genuine = cal.pair_distance(QX, GX, gq, gg)
    impostor = cal.pair_distance(QX, GX, iq, ig, chunk_size=2)  # gathered two pairs at a time
    assert cal.pair_distance(QX, GX, [0], [1], "cosine") == pytest.approx([0.0])
    fpr, tpr, thr = cal.roc_curve(genuine, impostor)
    assert thr.tolist() == [-np.inf, 0, 10, 30, 70, 90, 100]
    assert tpr.tolist() == [0, 0.25, 0.5, 0.75, 0.75, 1, 1]
    assert fpr.tolist() == pytest.approx([0, 0, 0.2, 0.2, 0.4, 0.6, 1])
    assert cal.auc(fpr, tpr) == pytest.approx(0.8)
    eer, t = cal.equal_error_rate(fpr, tpr, thr)
    assert eer == pytest.approx(0.25) and t == pytest.approx(40.0)
    assert cal.tpr_at_fpr(fpr, tpr, 0.2) == 0.75 and cal.tpr_at_fpr(fpr, tpr, 0.1) == 0.25
    assert cal.threshold_at_fpr(fpr, thr, 0.2) == 30 and cal.threshold_at_fpr(fpr, thr, 0.1) == 0


def test_calibrate_report_and_rank1_precision():
    report, genuine, impostor = cal.calibrate(QX, QP, QC, GX, GP, GC, target_fpr=0.2, target_precision=0.9)
    assert report["auc"] == pytest.approx(0.8) and report["eer"] == pytest.approx(0.25)
    assert report["threshold"] == 30 and report["tpr_at_fpr"]["0.2"] == 0.75
    assert report["num_genuine_pairs"] == 4 and report["num_impostor_pairs"] == 5
    assert set(report["tpr_at_fpr"]) == {"0.01", "0.001", "0.0001", "0.2"}
    assert any("below the resolution 1/5" in n for n in report["notes"])
    # nearest (same id+camera excluded): q1 -> g1 at 0 (right), q2 -> g4 at 10 (right; g5 excluded)
    assert report["rank1_precision_threshold"] == 10 and report["rank1_accepted_fraction"] == 1.0
    t, frac = cal.threshold_at_rank1_precision([1, 2, 3, 3, 5], [True, True, False, True, False], 0.75)
    assert t == 3 and frac == 0.8  # precision 1, 1, (tie at 3) 3/4, then 3/5
    assert cal.threshold_at_rank1_precision([1, 2], [False, True], 0.9) == (None, 0.0)


def test_impostor_sampling_is_seeded_and_bounded():
    rng = np.random.default_rng(0)
    pids = rng.integers(0, 50, 400)
    a = cal.impostor_pairs(pids, pids, max_pairs=1000, seed=3, chunk=512)
    b = cal.impostor_pairs(pids, pids, max_pairs=1000, seed=3, chunk=512)
    assert a[2] and len(a[0]) == 1000 and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.all(pids[a[0]] != pids[a[1]])
    report, _, _ = cal.calibrate(rng.normal(size=(400, 4)), pids, np.zeros(400, int), rng.normal(size=(400, 4)),
                                 pids, np.ones(400, int), max_impostor_pairs=1000, max_genuine_pairs=300)
    assert report["num_impostor_pairs"] == 1000 and report["impostor_pairs_sampled"]
    assert report["num_genuine_pairs"] == 300 and report["genuine_pairs_sampled"]
    assert 0.4 < report["auc"] < 0.6  # random embeddings


@pytest.mark.parametrize("kwargs, message", [
    ({"q": np.full((2, 1), np.nan)}, "NaN"),
    ({"q": np.zeros((2, 3))}, "embedding sizes differ"),
    ({"qp": np.array([7, 8])}, "no genuine pair"),
    ({"target_fpr": 2.0}, "target_fpr"),
    ({"distance": "manhattan"}, "distance must be"),
])
def test_calibrate_bad_input(kwargs, message):
    q = kwargs.pop("q", QX)
    qp = kwargs.pop("qp", QP)
    with pytest.raises(ValueError, match=message):
        cal.calibrate(q, qp, QC, GX, GP, GC, **kwargs)


def test_picture_marks_threshold():
    report, genuine, impostor = cal.calibrate(QX, QP, QC, GX, GP, GC, target_fpr=0.2)
    fpr, tpr, _ = cal.roc_curve(genuine, impostor)
    img = cal.calibration_picture(genuine, impostor, fpr, tpr, report["threshold"], title="t")
    assert img.dtype == np.uint8 and img.shape == (384, 720, 3)
    for colour in ((0, 200, 0), (230, 0, 0), (30, 90, 230)):  # genuine, impostor, threshold / ROC
        assert np.all(img == colour, -1).any()


def test_metadata_and_edge_matching_use_the_calibrated_threshold(tmp_path):
    md = ModelMetadata("tiny", 32, 16, 8)
    assert md.match_threshold is None
    with pytest.raises(ValueError, match="never calibrated"):
        match_threshold(None, md)
    assert cal.apply_calibration(md, str(tmp_path)).match_threshold is None  # no calibration.json
    report, _, _ = cal.calibrate(QX, QP, QC, GX, GP, GC, target_fpr=0.2)
    cal.write_calibration(str(tmp_path), report)
    cal.apply_calibration(md, str(tmp_path))
    assert md.match_threshold == 30 and md.match_distance == "euclidean"
    assert md.extra["calibration"]["num_impostor_pairs"] == 5
    back = ModelMetadata.from_json(md.to_json())
    assert back.match_threshold == 30.0 and back.match_distance == "euclidean"
    old = ModelMetadata.from_dict({"model_name": "m", "input_height": 1, "input_width": 1, "embedding_size": 2})
    assert old.match_threshold is None  # metadata written before calibration existed
    with pytest.raises(ValueError, match="match_threshold"):
        ModelMetadata.from_dict({**md.to_dict(), "match_threshold": "far"})

    gallery = Gallery(embeddings=[[0.0]], identities=["a"])
    assigner = IdentityAssigner(gallery, metadata=md)
    assert assigner.threshold == 30
    assert not assigner.assign(np.array([29.0])).is_new and assigner.assign(np.array([31.0])).is_new
    assert IdentityAssigner(gallery, threshold=5.0, metadata=md).threshold == 5.0  # the flag overrides
    md.match_distance = "cosine"
    with pytest.raises(ValueError, match="for cosine distance"):
        IdentityAssigner(gallery, metadata=md)
    assert IdentityAssigner(gallery, threshold=2.0, metadata=md).threshold == 2.0  # explicit: no check


def test_read_calibration_errors(tmp_path):
    assert cal.read_calibration(str(tmp_path)) is None
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the calibration"):
        cal.read_calibration(str(tmp_path))
    (tmp_path / "calibration.json").write_text("{}")
    with pytest.raises(ValueError, match="missing field 'threshold'"):
        cal.read_calibration(str(tmp_path))


def test_cli_writes_calibration_json_and_picture(tmp_path, capsys):
    from test_training_evaluate import make_run_dir, write_csv_dataset
    from training import calibrate

    data = str(tmp_path / "data")
    write_csv_dataset(data)  # the same query/gallery as above, x = R / 255 of solid images
    run_dir = make_run_dir(tmp_path / "run", data)
    report = calibrate.run(run_dir, target_fpr=0.2, target_precision=0.9)
    with open(os.path.join(run_dir, "calibration.json")) as f:
        written = json.load(f)
    assert written == report
    for key in ("auc", "eer", "tpr_at_fpr", "threshold", "target_fpr", "distance", "num_genuine_pairs",
                "num_impostor_pairs"):
        assert key in written
    assert written["num_genuine_pairs"] == 4 and written["num_impostor_pairs"] == 5
    # float32 colour means may break the two ties (10/255, 90/255) either way: AUC 0.8 +- 2/40
    assert abs(written["auc"] - 0.8) <= 0.051 and written["eer"] == pytest.approx(0.25, abs=0.01)
    assert written["threshold"] == pytest.approx(30 / 255, abs=1e-5)
    assert Image.open(os.path.join(run_dir, "calibration.png")).size == (720, 384)
    assert "AUC" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no such directory"):
        calibrate.run(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="target_fpr"):
        calibrate.run(run_dir, target_fpr=0)


def test_nearest_gallery_chunked_equals_one_block():
    rng = np.random.default_rng(0)
    qp, gp = rng.integers(0, 50, 300), rng.integers(0, 50, 900)
    qc, gc = rng.integers(0, 3, 300), rng.integers(0, 3, 900)
    qx, gx = rng.normal(size=(300, 8)), rng.normal(size=(900, 8))
    d, ok = cal.nearest_gallery(qx, qp, qc, gx, gp, gc, budget=10**9)
    d7, ok7 = cal.nearest_gallery(qx, qp, qc, gx, gp, gc, budget=900 * 7)  # 7 queries per block
    assert np.array_equal(d, d7) and np.array_equal(ok, ok7)
    full = np.sqrt(((qx[:, None] - gx[None]) ** 2).sum(-1))
    full[(qp[:, None] == gp[None]) & (qc[:, None] == gc[None])] = np.inf
    assert d == pytest.approx(full.min(1), abs=1e-4)
    assert np.array_equal(ok, gp[full.argmin(1)] == qp)
