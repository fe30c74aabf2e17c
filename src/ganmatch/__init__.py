"""ganmatch: remove confounding from face datasets by matching images in a GAN's latent space."""

import importlib

__version__ = "0.1.0"


def lazy_submodules(package: str, names: list[str]):
    """A module `__getattr__` that imports `package.<name>` on first use, so importing a subpackage stays
    cheap."""

    def __getattr__(name: str):
        if name in names:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
