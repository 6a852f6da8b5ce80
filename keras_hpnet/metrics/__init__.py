"""Re-id and attribute metrics, distances and re-ranking (numpy only: no TensorFlow).

See docs/metrics.md for the definitions.
"""

from keras_hpnet.metrics.attributes import attribute_metrics
from keras_hpnet.metrics.distance import cosine_distance, euclidean_distance
from keras_hpnet.metrics.reid import reid_metrics
from keras_hpnet.metrics.rerank import k_reciprocal_rerank

__all__ = [
    "attribute_metrics",
    "cosine_distance",
    "euclidean_distance",
    "k_reciprocal_rerank",
    "reid_metrics",
]
