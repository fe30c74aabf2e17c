"""Faces in photos: robust image reading, detection, FFHQ alignment, face descriptors and face-model attributes (FairFace race included).

Modules: align, detect, face_attributes, face_embeddings, fairface, images.
"""

import importlib

__all__ = ["align", "detect", "face_attributes", "face_embeddings", "fairface", "images"]


def __getattr__(name: str):
    """Submodules load on first use (`ganmatch.faces.<module>`), so importing the package stays cheap."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
