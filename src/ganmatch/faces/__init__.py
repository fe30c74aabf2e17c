"""Faces in photos: robust image reading, detection, FFHQ alignment, face descriptors and face-model
attributes (FairFace race included).

Modules: align, detect, face_attributes, face_embeddings, fairface, images.
"""

from ganmatch import lazy_submodules

__all__ = ["align", "detect", "face_attributes", "face_embeddings", "fairface", "images"]
__getattr__ = lazy_submodules(__name__, __all__)
