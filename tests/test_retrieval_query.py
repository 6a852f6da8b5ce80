"""Attribute query language, scoring, appearance combination and attribute-query mAP."""

import numpy as np
import pytest

from keras_hpnet.datasets.synthetic.market import MARKET_FIELDS
from keras_hpnet.datasets.synthetic.pa100k import PA100K_ATTRIBUTES
from keras_hpnet.retrieval.query import (
    QueryError, attribute_query_map, average_precision, combine_with_appearance, parse_query, random_queries, rank,
    search)

MARKET = list(MARKET_FIELDS[1:])  # the 26 binary attributes (age dropped)
COL = {n: i for i, n in enumerate(MARKET)}


def _probs(rows):
    p = np.zeros((len(rows), len(MARKET)))
    for i, row in enumerate(rows):
        for name, v in row.items():
            p[i, COL[name]] = v
    return p


def test_score_semantics_product_not_noisy_or():
    q = parse_query("gender=female & backpack & (upblack | upwhite) & !hat", MARKET)
    p = _probs([{"gender": 0.9, "backpack": 0.8, "upblack": 0.5, "upwhite": 0.2, "hat": 0.1}])
    expected = 0.9 * 0.8 * (1 - (1 - 0.5) * (1 - 0.2)) * (1 - 0.1)
    assert q.score(p)[0] == pytest.approx(expected)
    assert parse_query("gender=male", MARKET).score(p)[0] == pytest.approx(0.1)
    assert parse_query("female", MARKET).score(p)[0] == pytest.approx(0.9)
    # De Morgan: !(a & b) == !a | !b
    a = parse_query("!(backpack & upblack)", MARKET).score(p)
    b = parse_query("!backpack | !upblack", MARKET).score(p)
    assert a == pytest.approx(b)
    # precedence: & binds tighter than |
    c = parse_query("hat | backpack & upwhite", MARKET).score(p)[0]
    assert c == pytest.approx(1 - (1 - 0.1) * (1 - 0.8 * 0.2))


def test_onehot_and_case_insensitive_and_quoted_names():
    names = ["age_young", "age_adult", "hat"]
    q = parse_query("age=adult & hat=no", names)
    assert q.score(np.array([[0.2, 0.7, 0.4]]))[0] == pytest.approx(0.7 * 0.6)
    pa = list(PA100K_ATTRIBUTES)
    q = parse_query('female & backpack & !"Skirt&Dress" & Age18-60', pa)
    assert q.columns == (pa.index("Female"), pa.index("Backpack"), pa.index("Skirt&Dress"), pa.index("Age18-60"))


@pytest.mark.parametrize("text, fragment", [
    ("", "empty attribute query"),
    ("   ", "empty attribute query"),
    ("(backpack & hat", "unbalanced '(' opened at position 0"),
    ("backpack & hat)", "unbalanced ')' (no matching '(') at position 14"),
    ("backpack &", "expected an attribute name, '!' or '(', got the end at position 10"),
    ("backpack hat", "expected '&', '|' or the end, got 'hat' at position 9"),
    ("backpack # hat", "unexpected character '#' at position 9"),
    ("gender=", "expected a value after 'gender='"),
    ("gender=tall", "attribute 'gender' has no value 'tall'"),
    ("long", "ambiguous: write one of"),
])
def test_syntax_errors_name_the_position(text, fragment):
    with pytest.raises(QueryError, match=None) as e:
        parse_query(text, MARKET)
    assert fragment in str(e.value)


def test_unknown_name_lists_close_names():
    with pytest.raises(QueryError) as e:
        parse_query("backpak & upblak", MARKET)
    msg = str(e.value)
    assert "unknown attribute 'backpak' at position 0" in msg and "backpack" in msg
    with pytest.raises(QueryError, match="no attribute names"):
        parse_query("hat", [])


def test_bad_probability_matrices():
    q = parse_query("hat", MARKET)
    with pytest.raises(ValueError, match=r"expected \[N, 26\]"):
        q.score(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        q.score(np.full((1, 26), np.nan))
    with pytest.raises(ValueError, match="outside 0..1"):
        q.score(np.full((1, 26), 3.0))


def test_matches_is_boolean_logic_on_labels():
    labels = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [0, 0, 0]])
    q = parse_query("(a & !b) | (c & b)", ["a", "b", "c"])
    assert q.matches(labels).tolist() == [True, False, True, False]


def test_search_rank_and_appearance_combination():
    q = parse_query("hat", MARKET)
    p = _probs([{"hat": 0.2}, {"hat": 0.9}, {"hat": 0.9}, {"hat": 0.6}])
    idx, scores = search(q, p, top_k=3, min_score=0.5)
    assert idx.tolist() == [1, 2, 3] and scores.tolist() == [0.9, 0.9, 0.6]
    assert rank([0.1, 0.5, 0.5], top_k=2).tolist() == [1, 2]
    dist = np.array([0.1, 0.4, 0.3, 0.2])
    s = q.score(p)
    # rerank: the 3 nearest (0, 3, 2) re-ordered by attribute score; 1 is not a candidate
    assert combine_with_appearance(dist, s, mode="rerank", candidates=3).tolist() == [2, 3, 0]
    # filter: score >= 0.5, by distance
    assert combine_with_appearance(dist, s, mode="filter", threshold=0.5).tolist() == [3, 2, 1]
    with pytest.raises(ValueError, match="differ in length"):
        combine_with_appearance(dist, s[:2])
    with pytest.raises(ValueError, match="mode must be"):
        combine_with_appearance(dist, s, mode="both")


def test_average_precision_hand_computed():
    # ranking 0, 1, 2, 3; relevant 0 and 2: (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.1], [True, False, True, False]) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(average_precision([0.5], [False]))


def test_attribute_query_map_perfect_random_and_seeded():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 8)) < 0.4).astype(np.uint8)
    names = [f"a{i}" for i in range(8)]
    perfect = attribute_query_map(labels * 0.8 + 0.1, labels, names, num_queries=20, seed=1)
    for n in ("1", "2", "3"):
        assert perfect[n]["mAP"] == pytest.approx(1.0)
        assert perfect[n]["num_queries"] + perfect[n]["num_skipped"] == 20
    noise = rng.random(labels.shape)
    chance = attribute_query_map(noise, labels, names, num_queries=20, seed=1)
    assert chance["1"]["mAP"] < 0.6 and chance["3"]["mAP"] < 0.3
    assert attribute_query_map(noise, labels, names, num_queries=20, seed=1) == chance
    assert random_queries(names, 2, 3, seed=5) == random_queries(names, 2, 3, seed=5)
    with pytest.raises(ValueError, match="num_terms"):
        random_queries(names, 9, 1)


def test_attribute_query_map_leaves_unknown_labels_out():
    """A row whose queried attribute is UNKNOWN_ATTRIBUTE is not ranked for that query (hand-computed)."""
    from keras_hpnet.datasets import UNKNOWN_ATTRIBUTE as U

    labels = np.array([[1, 1], [U, 0], [1, 0], [0, 1]])
    probs = np.array([[0.9, 0.5], [0.05, 0.5], [0.8, 0.5], [0.5, 0.5]])
    got = attribute_query_map(probs, labels, ["a", "b"], sizes=(1,), num_queries=2, seed=0)
    # query a: rows 0, 2, 3 ranked 0 (rel), 2 (rel), 3 -> AP 1 (row 1 would have been a relevant last: 0.917)
    # query b: all rows known, probs tied -> ranked by index 0 (rel), 1, 2, 3 (rel): (1 + 2/4) / 2
    aps = {'"a"': 1.0, '"b"': 0.75}
    queries = random_queries(["a", "b"], 1, 2, seed=1)
    assert got["1"]["mAP"] == pytest.approx(np.mean([aps[q] for q in queries]))
