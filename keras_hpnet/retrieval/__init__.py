"""Retrieval over a gallery (numpy only; faiss optional): docs/retrieval.md.

- `keras_hpnet.retrieval.query`: attribute search (query language, scoring,
  combining with appearance, attribute-query mAP).
"""

from keras_hpnet.retrieval.query import (
    AttributeQuery, QueryError, attribute_query_map, combine_with_appearance, parse_query, rank, search)

__all__ = ["AttributeQuery", "QueryError", "attribute_query_map", "combine_with_appearance", "parse_query",
           "rank", "search"]
