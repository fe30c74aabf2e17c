"""Analysis over embeddings and tables: embeddings, attribute models, distances, balance, outcomes, edit metrics.

Modules: attributes, balance, distances, edit_metrics, embeddings, outcomes.
"""

from ganmatch import lazy_submodules

__all__ = ["attributes", "balance", "distances", "edit_metrics", "embeddings", "outcomes"]
__getattr__ = lazy_submodules(__name__, __all__)
