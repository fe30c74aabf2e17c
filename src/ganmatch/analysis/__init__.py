"""Analysis over embeddings and tables: embeddings, attribute models, distances (the exact kNN engine),
neighbour tables, retrieval quality, balance, outcomes, edit metrics.

Modules: attributes, balance, balance_text, distances, edit_metrics, embeddings, headline, knn_kernels,
neighbours, outcomes, retrieval.
"""

from ganmatch import lazy_submodules

__all__ = ["attributes", "balance", "balance_text", "distances", "edit_metrics", "embeddings", "headline",
           "knn_kernels", "neighbours", "outcomes", "retrieval"]
__getattr__ = lazy_submodules(__name__, __all__)
