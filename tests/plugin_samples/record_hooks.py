"""Implements every hook iasf-search declares, each one recording its calls (hook name -> the arguments it got),
for the meta-test that a real search calls every hook (tests/test_hookspecs.py)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from iasf_search import hookimpl, hookspecs

CALLS: list[tuple[str, dict[str, Any]]] = []
"""Every call, in order: ``(hook name, {argument name: value})``."""


def _recorder(spec: Callable[..., None]) -> Callable[..., None]:
    names = list(inspect.signature(spec).parameters)

    # wraps: the recorder takes the spec's name and, for pluggy, its parameters (pluggy reads them through
    # __wrapped__), so every argument the hook declares is passed to it; updated=(): not the spec's marker.
    @functools.wraps(spec, updated=())
    def record(*args: Any, **kwargs: Any) -> None:
        CALLS.append((spec.__name__, {**dict(zip(names, args, strict=False)), **kwargs}))

    return hookimpl(record)


for _name, _spec in list(vars(hookspecs).items()):
    if hasattr(_spec, "iasf_search_spec"):  # what pluggy's HookspecMarker("iasf_search") sets on each hook
        globals()[_name] = _recorder(_spec)
