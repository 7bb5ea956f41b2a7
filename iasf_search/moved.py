"""Import paths of modules that moved into sub-packages keep working: ``import iasf_search.records``
gives :mod:`iasf_search.results.records` (the same module object), for plugins and scripts written
against the earlier layout. A module that was split (``iasf_search.study`` into the search's set-up and
loop) is answered by a module that finds each name in the modules it became. Installed by
``iasf_search/__init__.py``; new code imports the new paths.
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
    "iasf_search.workers": "iasf_search.search.workers",
    "iasf_search.storage": "iasf_search.search.storage",
    "iasf_search.interrupts": "iasf_search.search.interrupts",
    "iasf_search.enqueue": "iasf_search.search.enqueue",
    "iasf_search.prescreen": "iasf_search.search.prescreen",
    "iasf_search.cost_measurement": "iasf_search.trial.cost_measurement",
    "iasf_search.representations": "iasf_search.trial.representations",
    "iasf_search.cross_validation": "iasf_search.trial.cross_validation",
}
"""Old module path -> where it lives now."""

SPLIT = {
    "iasf_search.study": ("iasf_search.search.study", "iasf_search.search.setup"),
    "iasf_search.objective": ("iasf_search.trial.objective", "iasf_search.sampling", "iasf_search.train"),
}
"""Old module path -> the modules its names went to (looked up in this order)."""


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A finder that answers an old path with the module at its new path."""

    def __init__(self) -> None:
        self._own_specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED and fullname not in SPLIT:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        if spec.name in SPLIT:
            return SplitModule(spec.name, [importlib.import_module(name) for name in SPLIT[spec.name]])
        module = importlib.import_module(MOVED[spec.name])
        self._own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the import system has just set __spec__ to the old path's: a moved module keeps its own
        if module.__name__ in self._own_specs:
            module.__spec__ = self._own_specs[module.__name__]


class SplitModule(ModuleType):
    """Stands at the old path of a split module: each name is read from the first new module that has it."""

    def __init__(self, name: str, parts: list[ModuleType]) -> None:
        super().__init__(name, f"Moved: the names of {name} now live in {', '.join(p.__name__ for p in parts)}.")
        self._parts = parts

    def __getattr__(self, name: str) -> object:
        for part in self._parts:
            if hasattr(part, name):
                return getattr(part, name)
        places = ", ".join(p.__name__ for p in self._parts)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r} (its names moved to {places})")

    def __dir__(self) -> list[str]:
        return sorted({name for part in self._parts for name in dir(part)})


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())
