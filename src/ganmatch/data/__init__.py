"""Data in and out: typed atomic file I/O, the image index, CelebA-HQ metadata, downloads, manifests, torch
files.

Modules: celeba, dataset, download, io, manifest, tensors.
"""

from ganmatch import lazy_submodules

__all__ = ["celeba", "dataset", "download", "io", "manifest", "tensors"]
__getattr__ = lazy_submodules(__name__, __all__)
