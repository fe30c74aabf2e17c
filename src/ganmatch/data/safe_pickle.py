"""The one base of every unpickler in ganmatch: nothing resolves unless a subclass allows it by name."""

from __future__ import annotations

import pickle


class RestrictedUnpickler(pickle.Unpickler):
    """Refuses every global and persistent id; a subclass overrides `find_class` with its allow list, so a
    file names data types, never code to run (the weights pickles, the released match files)."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"refusing persistent id {pid!r}")

    def resolve(self, module: str, name: str):
        """The named global, for a subclass that has checked it against its allow list."""
        return pickle.Unpickler.find_class(self, module, name)
