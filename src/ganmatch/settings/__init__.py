"""The run's settings: config validation (defaults from the schema), start-up checks and the run plan.

Modules: checks, config, plan.
"""

import importlib

__all__ = ["checks", "config", "plan"]


def __getattr__(name: str):
    """Submodules load on first use (`ganmatch.settings.<module>`), so importing the package stays cheap."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
