"""The run's settings: config validation (defaults from the schema), start-up checks and the run plan.

Modules: checks, config, plan.
"""

from ganmatch import lazy_submodules

__all__ = ["checks", "config", "plan"]
__getattr__ = lazy_submodules(__name__, __all__)
