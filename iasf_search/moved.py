"""Import paths of modules that moved into sub-packages keep working: ``import iasf_search.records``
gives :mod:`iasf_search.results.records` (the same module object), for plugins and scripts written
against the earlier layout. Installed by ``iasf_search/__init__.py``; new code imports the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

MOVED = {
    "iasf_search.records": "iasf_search.results.records",
    "iasf_search.artifacts": "iasf_search.results.artifacts",
    "iasf_search.figures": "iasf_search.results.figures",
    "iasf_search.attention_maps": "iasf_search.results.attention_maps",
    "iasf_search.report": "iasf_search.results.report",
    "iasf_search.export": "iasf_search.results.export",
    "iasf_search.dashboard": "iasf_search.results.dashboard",
    "iasf_search.retrain": "iasf_search.results.retrain",
    "iasf_search.kernels": "iasf_search.hardware.kernels",
    "iasf_search.timing": "iasf_search.hardware.timing",
    "iasf_search.calibration": "iasf_search.hardware.calibration",
    "iasf_search.progress": "iasf_search.plugins.console_progress",
    "iasf_search.event_log": "iasf_search.plugins.json_event_log",
}
"""Old module path -> where it lives now."""


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A finder that answers an old path with the module at its new path."""

    def __init__(self) -> None:
        self._own_specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the import system has just set __spec__ to the old path's: the module keeps its own
        module.__spec__ = self._own_specs[module.__name__]


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())
