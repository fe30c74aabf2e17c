"""Figures (the paper's, the comparison with its numbers, the edits) and their plotting helpers.

Modules: edit_figures, figures, paper_comparison, plots.
"""

from ganmatch import lazy_submodules

__all__ = ["edit_figures", "figures", "paper_comparison", "plots"]
__getattr__ = lazy_submodules(__name__, __all__)
