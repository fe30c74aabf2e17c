"""Figures (the paper's, the comparison with its numbers, the edits) and their plotting helpers.

Modules: edit_figures, figures, paper_comparison, plots.
"""

import importlib

__all__ = ["edit_figures", "figures", "paper_comparison", "plots"]


def __getattr__(name: str):
    """Submodules load on first use (`ganmatch.report.<module>`), so importing the package stays cheap."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
