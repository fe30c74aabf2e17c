"""Data in and out: typed atomic file I/O, the image index, CelebA-HQ metadata, downloads, the demo dataset.

Modules: celeba, dataset, demo, download, io.
"""

from ganmatch import lazy_submodules

__all__ = ["celeba", "dataset", "demo", "download", "io"]
__getattr__ = lazy_submodules(__name__, __all__)
