"""Data in and out: typed atomic file I/O, the image index, CelebA-HQ metadata, downloads, the demo dataset.

Modules: celeba, dataset, demo, download, io.
"""

import importlib

__all__ = ["celeba", "dataset", "demo", "download", "io"]


def __getattr__(name: str):
    """Submodules load on first use (`ganmatch.data.<module>`), so importing the package stays cheap."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
