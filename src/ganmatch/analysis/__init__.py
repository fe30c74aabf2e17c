"""Analysis over embeddings and tables: embeddings, attribute models, distances, balance, outcomes, edit metrics.

Modules: attributes, balance, distances, edit_metrics, embeddings, outcomes.
"""

import importlib

__all__ = ["attributes", "balance", "distances", "edit_metrics", "embeddings", "outcomes"]


def __getattr__(name: str):
    """Submodules load on first use (`ganmatch.analysis.<module>`), so importing the package stays cheap."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
