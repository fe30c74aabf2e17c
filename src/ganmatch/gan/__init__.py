"""The generator side: StyleGAN2, weights (ours and official pickles), latent projection, the encoder and latent edits.

Modules: editing, encoder, project, stylegan2, weights.
"""

import importlib

__all__ = ["editing", "encoder", "project", "stylegan2", "weights"]


def __getattr__(name: str):
    """Submodules load on first use (`ganmatch.gan.<module>`), so importing the package stays cheap."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
