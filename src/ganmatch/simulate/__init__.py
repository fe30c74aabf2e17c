"""Simulated worlds with a known truth, above the packages they use: the demo renders with the generator (gan)
and misaligns its photos with the face geometry (faces).

Modules: demo.
"""

from ganmatch import lazy_submodules

__all__ = ["demo"]
__getattr__ = lazy_submodules(__name__, __all__)
