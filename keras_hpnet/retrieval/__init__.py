"""Retrieval over a gallery (numpy only; faiss optional): docs/retrieval.md.

- `keras_hpnet.retrieval.query`: attribute search (query language, scoring,
  combining with appearance, attribute-query mAP).
- `keras_hpnet.retrieval.calibration`: open-set match threshold (ROC, EER,
  TPR at FPR, thresholds) and `apply_calibration` for the exporters.
- `keras_hpnet.retrieval.index`: `GalleryIndex` (faiss-cpu or numpy), filters,
  persistence.
- `keras_hpnet.retrieval.picture`: the attribute-search picture.
"""

from keras_hpnet.retrieval.query import (
    AttributeQuery, QueryError, attribute_query_map, combine_with_appearance, parse_query, rank, search)

__all__ = ["AttributeQuery", "QueryError", "attribute_query_map", "combine_with_appearance", "parse_query",
           "rank", "search"]
