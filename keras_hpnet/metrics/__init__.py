"""Re-id and attribute metrics, distances and re-ranking (numpy only: no TensorFlow).

See docs/metrics.md for the definitions.
"""

from keras_hpnet.metrics.attributes import attribute_metrics
from keras_hpnet.metrics.distance import cosine_distance, euclidean_distance
from keras_hpnet.metrics.reid import reid_metrics
from keras_hpnet.metrics.rerank import average_query_expansion, k_reciprocal_rerank, k_reciprocal_rerank_features

__all__ = [
    "attribute_metrics",
    "average_query_expansion",
    "cosine_distance",
    "euclidean_distance",
    "k_reciprocal_rerank",
    "k_reciprocal_rerank_features",
    "reid_metrics",
]
