"""Memory-bounded k-reciprocal re-ranking equals the dense computation; average query expansion."""

import numpy as np
import pytest

from keras_hpnet.metrics import (
    average_query_expansion, euclidean_distance, k_reciprocal_rerank, k_reciprocal_rerank_features, reid_metrics)


def problem(seed=0, num_q=40, num_g=120, dim=16, ids=12):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    q_pids, g_pids = rng.integers(0, ids, num_q), rng.integers(0, ids, num_g)
    q = (centres[q_pids] + 0.8 * rng.normal(size=(num_q, dim))).astype(np.float32)
    g = (centres[g_pids] + 0.8 * rng.normal(size=(num_g, dim))).astype(np.float32)
    return q, g, q_pids, g_pids


def dense_inputs(q, g):
    return euclidean_distance(q, g), euclidean_distance(q, q), euclidean_distance(g, g)


@pytest.mark.parametrize("k1, k2", [(20, 6), (7, 1), (3, 3)])
def test_chunked_rows_give_the_same_result(k1, k2):
    q, g, _, _ = problem()
    full = k_reciprocal_rerank(*dense_inputs(q, g), k1=k1, k2=k2)
    for budget in (160, 161 * 7, 1000):  # 1 row, 7 rows, 6 rows per block (Q+G = 160)
        chunked = k_reciprocal_rerank(*dense_inputs(q, g), k1=k1, k2=k2, memory_budget=budget)
        np.testing.assert_array_equal(chunked, full)


def test_features_version_equals_dense_and_top_k():
    q, g, _, _ = problem(1)
    full = k_reciprocal_rerank(*dense_inputs(q, g))
    from_features = k_reciprocal_rerank_features(q, g, memory_budget=500)
    np.testing.assert_allclose(from_features, full, atol=1e-5)
    dist, idx = k_reciprocal_rerank_features(q, g, top_k=10, memory_budget=500)
    assert dist.shape == idx.shape == (40, 10)
    np.testing.assert_array_equal(idx, np.argsort(from_features, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(dist, np.take_along_axis(from_features, idx, 1))
    with pytest.raises(ValueError, match="feature sizes differ"):
        k_reciprocal_rerank_features(q, g[:, :3])
    with pytest.raises(ValueError, match="top_k"):
        k_reciprocal_rerank_features(q, g, top_k=0)


def test_aqe_hand_computed():
    q = np.array([[1.0, 0.0]])
    g = np.array([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    # nearest 2 by cosine: g0 (0.707), g1 (0); plain average of unit vectors
    expected = np.array([1.0, 0.0]) + np.array([1, 1]) / np.sqrt(2) + np.array([0.0, 1.0])
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(average_query_expansion(q, g, k=2), [expected], atol=1e-6)
    # alpha = 1: weights are the similarities (g1's is 0)
    a1 = np.array([1.0, 0.0]) + (1 / np.sqrt(2)) * np.array([1, 1]) / np.sqrt(2)
    np.testing.assert_allclose(average_query_expansion(q, g, k=2, alpha=1.0), [a1 / np.linalg.norm(a1)], atol=1e-6)
    qe, ge = average_query_expansion(q, g, k=1, expand_gallery=True)
    g_unit = g / np.linalg.norm(g, axis=1, keepdims=True)
    e0 = g_unit[0] + g_unit[1]  # g0's nearest other gallery feature is g1
    np.testing.assert_allclose(ge[0], e0 / np.linalg.norm(e0), atol=1e-6)
    with pytest.raises(ValueError, match="k must be"):
        average_query_expansion(q, g, k=0)


def test_aqe_and_rerank_improve_a_clustered_problem():
    q, g, q_pids, g_pids = problem(2, num_q=60, num_g=300)
    q_cams, g_cams = np.zeros(60, int), np.ones(300, int)
    base = reid_metrics(euclidean_distance(q, g), q_pids, g_pids, q_cams, g_cams)["mAP"]
    aqe = reid_metrics(euclidean_distance(average_query_expansion(q, g, k=3), g / np.linalg.norm(g, axis=1,
                       keepdims=True)), q_pids, g_pids, q_cams, g_cams)["mAP"]
    rr = reid_metrics(k_reciprocal_rerank_features(q, g), q_pids, g_pids, q_cams, g_cams)["mAP"]
    both = reid_metrics(k_reciprocal_rerank_features(q, g, aqe_k=3), q_pids, g_pids, q_cams, g_cams)["mAP"]
    assert aqe > base + 0.05 and rr > base + 0.05 and both > base + 0.05, (base, aqe, rr, both)
