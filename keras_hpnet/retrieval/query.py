"""Attribute search: a small query language over a model's attribute names (numpy only).

Grammar (docs/retrieval.md "Attribute queries")::

    query  := or
    or     := and ( "|" and )*
    and    := unary ( "&" unary )*
    unary  := "!" unary | "(" or ")" | term
    term   := NAME [ "=" VALUE ]

NAME and VALUE are words of letters, digits and ``_ - . +`` or a double-quoted
string (for names holding an operator, e.g. PA-100K's ``"Skirt&Dress"``).
A name matches an attribute exactly, else case-insensitively when that is
unique (``female`` finds PA-100K's ``Female``). ``name=value`` selects

- one column of a one-hot group named ``name_value`` (Market-1501 with
  ``age="onehot"``: ``age=adult`` is ``age_adult``);
- a side of a binary attribute: ``yes/true/1`` (p) or ``no/false/0`` (1-p), and
  the Market-1501 codings of ``VALUE_LABELS`` (``gender=female`` is p(gender),
  ``gender=male`` 1-p(gender); keras_hpnet/datasets/market1501.py). A bare
  value label that names exactly one attribute side also works (``female``
  with Market names is ``gender=female``).

Probability semantics, with p the predicted probability of each term and the
terms treated as independent: ``!x`` = 1 - p(x); ``a & b`` = p(a) p(b) (the
product); ``a | b`` = 1 - (1 - p(a)) (1 - p(b)) (noisy-OR, the De Morgan dual
of the product, so ``!(a & b)`` and ``!a | !b`` score the same). On 0/1 labels
the same formulas are exact Boolean logic, which gives the ground truth of
:func:`attribute_query_map`.

Unknown names raise :class:`QueryError` listing the close names (difflib);
syntax errors (empty query, unbalanced parentheses, a dangling operator) name
the character position.
"""

from __future__ import annotations

import dataclasses
import difflib
import re

import numpy as np

# Market-1501 binary codings after decoding (value - 1): keras_hpnet/datasets/market1501.py.
VALUE_LABELS = {
    "gender": {"female": 1, "male": 0},
    "hair": {"long": 1, "short": 0},
    "up": {"short": 1, "long": 0},
    "down": {"short": 1, "long": 0},
    "clothes": {"pants": 1, "dress": 0},
}
TRUE_WORDS = ("yes", "true", "1")
FALSE_WORDS = ("no", "false", "0")

_TOKEN = re.compile(r'\s*(?:(?P<op>[!&|()=])|"(?P<quoted>[^"]*)"|(?P<word>[A-Za-z0-9_.+\-]+)|(?P<bad>\S))')


class QueryError(ValueError):
    """A query that cannot be parsed or names an unknown attribute."""


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # "op", "name" or "end"
    text: str
    pos: int


def _tokens(text: str) -> list[_Token]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing whitespace is left
            break
        start = m.start(m.lastgroup)
        if m.lastgroup == "bad":
            raise QueryError(f"query {text!r}: unexpected character {m.group('bad')!r} at position {start}")
        if m.lastgroup == "op":
            out.append(_Token("op", m.group("op"), start))
        else:
            value = m.group(m.lastgroup)
            if not value:
                raise QueryError(f"query {text!r}: empty quoted name at position {start}")
            out.append(_Token("name", value, start))
        pos = m.end()
    out.append(_Token("end", "", len(text)))
    return out


# The parsed tree: ("term", column, positive) | ("not", node) | ("and", [nodes]) | ("or", [nodes]).


class _Parser:
    def __init__(self, text, names):
        self.text, self.names = text, list(names)
        self.tokens = _tokens(text)
        self.i = 0
        self.columns: list[int] = []

    def error(self, msg, pos):
        raise QueryError(f"query {self.text!r}: {msg} at position {pos}")

    def peek(self):
        return self.tokens[self.i]

    def take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self):
        if self.peek().kind == "end":
            raise QueryError("empty attribute query (expected e.g. 'backpack & !hat')")
        node = self.parse_or()
        tok = self.peek()
        if tok.kind != "end":
            if tok.text == ")":
                self.error("unbalanced ')' (no matching '(')", tok.pos)
            self.error(f"expected '&', '|' or the end, got {tok.text!r}", tok.pos)
        return node

    def parse_chain(self, op, operand, kind):
        parts = [operand()]
        while self.peek().kind == "op" and self.peek().text == op:
            self.take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else (kind, parts)

    def parse_or(self):
        return self.parse_chain("|", self.parse_and, "or")

    def parse_and(self):
        return self.parse_chain("&", self.parse_unary, "and")

    def parse_unary(self):
        tok = self.take()
        if tok.kind == "op" and tok.text == "!":
            return ("not", self.parse_unary())
        if tok.kind == "op" and tok.text == "(":
            node = self.parse_or()
            close = self.take()
            if close.kind != "op" or close.text != ")":
                self.error(f"unbalanced '(' opened at position {tok.pos}: expected ')', got "
                           f"{close.text or 'the end'!r}", close.pos)
            return node
        if tok.kind == "name":
            value = None
            if self.peek().kind == "op" and self.peek().text == "=":
                self.take()
                vtok = self.take()
                if vtok.kind != "name":
                    self.error(f"expected a value after '{tok.text}=', got {vtok.text or 'the end'!r}", vtok.pos)
                value = vtok.text
            column, positive = resolve_term(tok.text, value, self.names, self.text, tok.pos)
            self.columns.append(column)
            return ("term", column, positive)
        what = "the end" if tok.kind == "end" else repr(tok.text)
        self.error(f"expected an attribute name, '!' or '(', got {what}", tok.pos)


def _find_name(name: str, names: list[str]):
    if name in names:
        return names.index(name)
    folded = [i for i, n in enumerate(names) if n.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def _close(word: str, candidates) -> str:
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=5, cutoff=0.6)
    return ", ".join(lowered[c] for c in close) if close else "none"


def resolve_term(name: str, value, names, text: str = "", pos: int = 0) -> tuple[int, bool]:
    """(column, positive) of `name` or `name=value` among `names`; QueryError otherwise."""
    names = list(names)
    where = f"query {text!r}: " if text else ""
    if value is None:
        col = _find_name(name, names)
        if col is not None:
            return col, True
        sides = [(attr, bit) for attr, labels in VALUE_LABELS.items() for label, bit in labels.items()
                 if label == name.lower() and _find_name(attr, names) is not None]
        if len(sides) == 1:
            return _find_name(sides[0][0], names), bool(sides[0][1])
        if sides:
            raise QueryError(f"{where}{name!r} at position {pos} is ambiguous: write one of "
                             f"{', '.join(f'{attr}={name.lower()}' for attr, _ in sides)}")
        aliases = [lab for attr, labels in VALUE_LABELS.items() if _find_name(attr, names) is not None
                   for lab in labels]
        raise QueryError(f"{where}unknown attribute {name!r} at position {pos} (close names: "
                         f"{_close(name, names + aliases)}; the model has {len(names)} attributes)")
    onehot = _find_name(f"{name}_{value}", names)
    if onehot is not None:
        return onehot, True
    col = _find_name(name, names)
    if col is None:
        groups = sorted({n.rsplit("_", 1)[0] for n in names if "_" in n})
        raise QueryError(f"{where}unknown attribute {name!r} at position {pos} (close names: "
                         f"{_close(name, names + groups)})")
    labels = VALUE_LABELS.get(names[col].lower(), {})
    v = value.lower()
    if v in labels:
        return col, bool(labels[v])
    if v in TRUE_WORDS or v in FALSE_WORDS:
        return col, v in TRUE_WORDS
    allowed = list(labels) + list(TRUE_WORDS + FALSE_WORDS)
    raise QueryError(f"{where}attribute {names[col]!r} has no value {value!r} at position {pos} "
                     f"(allowed: {', '.join(allowed)})")


def _evaluate(node, p):
    kind = node[0]
    if kind == "term":
        col = p[:, node[1]]
        return col if node[2] else 1.0 - col
    if kind == "not":
        return 1.0 - _evaluate(node[1], p)
    parts = [_evaluate(n, p) for n in node[1]]
    if kind == "and":
        return np.prod(parts, axis=0)
    return 1.0 - np.prod([1.0 - x for x in parts], axis=0)


@dataclasses.dataclass(frozen=True)
class AttributeQuery:
    """A parsed attribute query bound to a model's attribute names."""

    text: str
    attribute_names: tuple
    tree: tuple
    columns: tuple  # attribute columns the query uses (in query order)

    def _matrix(self, x, name):
        x = np.asarray(x, np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(self.attribute_names):
            raise ValueError(f"{name}: expected [N, {len(self.attribute_names)}] (one column per attribute), "
                             f"got shape {np.shape(x)}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name}: contains NaN or inf")
        return x

    def score(self, probabilities) -> np.ndarray:
        """Query probability `[N]` (float64) of attribute probabilities `[N, A]` in 0..1."""
        p = self._matrix(probabilities, "attribute probabilities")
        if p.size and (p.min() < 0 or p.max() > 1):
            raise ValueError("attribute probabilities: values outside 0..1 (pass sigmoid outputs, not logits)")
        return np.clip(_evaluate(self.tree, p), 0.0, 1.0)

    def matches(self, labels) -> np.ndarray:
        """Boolean `[N]`: the 0/1 labels `[N, A]` satisfy the query (exact logic)."""
        return _evaluate(self.tree, (self._matrix(labels, "attribute labels") > 0.5).astype(np.float64)) > 0.5


def parse_query(text: str, attribute_names) -> AttributeQuery:
    """Parse `text` against `attribute_names` (see the module docstring)."""
    names = [str(n) for n in attribute_names]
    if not names:
        raise QueryError("attribute query: the model has no attribute names (it predicts no attributes)")
    if not isinstance(text, str):
        raise QueryError(f"attribute query: expected a string, got {type(text).__name__}")
    parser = _Parser(text, names)
    tree = parser.parse()
    return AttributeQuery(text, tuple(names), tree, tuple(parser.columns))


def rank(scores, top_k: int | None = None) -> np.ndarray:
    """Indices by decreasing score, ties by index (stable); the first `top_k` when given."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return order if top_k is None else order[: max(0, int(top_k))]


def search(query: AttributeQuery, probabilities, top_k: int | None = None, min_score: float = 0.0):
    """(indices, scores) of the gallery rows ranked by the query, score >= `min_score`."""
    scores = query.score(probabilities)
    order = rank(scores)
    order = order[scores[order] >= min_score]
    if top_k is not None:
        order = order[: max(0, int(top_k))]
    return order, scores[order]


def combine_with_appearance(distances, attribute_scores, *, mode: str = "rerank", candidates: int = 100,
                            threshold: float = 0.5, top_k: int | None = None) -> np.ndarray:
    """Gallery indices for "looks like this image AND satisfies the query".

    `distances` `[G]`: appearance distances of one query image to the gallery;
    `attribute_scores` `[G]`: `AttributeQuery.score` of the gallery.

    - ``mode="rerank"``: the `candidates` nearest appearance neighbours,
      re-ordered by decreasing attribute score (ties by distance); the rest of
      the gallery is not returned.
    - ``mode="filter"``: gallery rows with attribute score >= `threshold`,
      ordered by distance (ties by index).
    """
    d = np.asarray(distances, np.float64).ravel()
    s = np.asarray(attribute_scores, np.float64).ravel()
    if d.shape != s.shape:
        raise ValueError(f"distances ({d.shape[0]}) and attribute_scores ({s.shape[0]}) differ in length")
    if not (np.isfinite(d).all() and np.isfinite(s).all()):
        raise ValueError("distances / attribute_scores: contain NaN or inf")
    by_distance = np.argsort(d, kind="stable")
    if mode == "rerank":
        near = by_distance[: max(1, int(candidates))]
        out = near[np.lexsort((np.arange(len(near)), -s[near]))]
    elif mode == "filter":
        out = by_distance[s[by_distance] >= threshold]
    else:
        raise ValueError(f"mode must be 'rerank' or 'filter', got {mode!r}")
    return out if top_k is None else out[: max(0, int(top_k))]


def average_precision(scores, relevant) -> float:
    """AP of the ranking of `scores` (decreasing, ties by index) for the boolean `relevant`."""
    rel = np.asarray(relevant, bool)[rank(scores)]
    if not rel.any():
        return float("nan")
    hits = np.cumsum(rel)
    return float(np.mean(hits[rel] / (np.flatnonzero(rel) + 1)))


def random_queries(attribute_names, num_terms: int, count: int, *, seed: int = 0, negate: float = 0.0):
    """`count` conjunctions of `num_terms` distinct attributes (each negated with prob `negate`)."""
    names = [str(n) for n in attribute_names]
    if not 1 <= num_terms <= len(names):
        raise ValueError(f"num_terms must be in 1..{len(names)}, got {num_terms}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(count)):
        cols = rng.choice(len(names), size=num_terms, replace=False)
        neg = rng.random(num_terms) < negate
        out.append(" & ".join(("!" if n else "") + '"' + names[c] + '"' for c, n in zip(cols, neg)))
    return out


def attribute_query_map(probabilities, labels, attribute_names, *, sizes=(1, 2, 3), num_queries: int = 100,
                        seed: int = 0, negate: float = 0.0) -> dict:
    """Attribute-query retrieval quality: mAP of the ranked set per query size.

    For each size n in `sizes`, `num_queries` random conjunctions of n
    attributes (`random_queries`, seeded by `seed + n`) rank the rows of
    `probabilities` `[N, A]`; the relevant rows are those whose `labels`
    `[N, A]` satisfy the query. A row whose label of an attribute the query
    uses is `UNKNOWN_ATTRIBUTE` (keras_hpnet.datasets) is left out of that
    query's ranking. Queries no row satisfies have no AP and are counted in
    `num_skipped`. Returns ``{"1": {"mAP", "num_queries",
    "num_skipped"}, ...}`` plus ``"mAP"``, the mean over all scored queries.
    """
    names = [str(n) for n in attribute_names]
    probs = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    if probs.shape != labels.shape:
        raise ValueError(f"probabilities {probs.shape} and labels {labels.shape} differ in shape")
    from keras_hpnet.datasets.base import UNKNOWN_ATTRIBUTE

    known = labels != UNKNOWN_ATTRIBUTE
    result, all_ap = {}, []
    for n in sizes:
        aps, skipped = [], 0
        for text in random_queries(names, int(n), num_queries, seed=seed + int(n), negate=negate):
            q = parse_query(text, names)
            rows = known[:, list(q.columns)].all(1)
            relevant = q.matches(labels[rows])
            if not relevant.any():
                skipped += 1
                continue
            aps.append(average_precision(q.score(probs[rows]), relevant))
        result[str(n)] = {"mAP": float(np.mean(aps)) if aps else float("nan"), "num_queries": len(aps),
                          "num_skipped": skipped}
        all_ap.extend(aps)
    result["mAP"] = float(np.mean(all_ap)) if all_ap else float("nan")
    return result
