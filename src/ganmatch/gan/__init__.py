"""The generator side: StyleGAN2, weights (ours and official pickles), latent projection, the encoder and
latent edits.

Modules: editing, encoder, project, stylegan2, weights.
"""

from ganmatch import lazy_submodules

__all__ = ["editing", "encoder", "project", "stylegan2", "weights"]
__getattr__ = lazy_submodules(__name__, __all__)
