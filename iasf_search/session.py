"""A session: a validated search space together with the plugins it was validated against.

The space (:class:`~iasf_search.space.SearchSpace`) is plain data: what the file says, defaults
filled in. The loaded plugins (:class:`~iasf_search.plugin_manager.Components`: registries and the
plugin manager whose life-cycle hooks observe a study) are runtime state. A search, a retraining or
a report runs on the pair; hooks receive both.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from iasf_search.errors import SpaceError
from iasf_search.plugin_manager import (
    DISABLE_AUTOLOAD_ENV,
    Components,
    PluginImportError,
    load_components,
    plugins_to_load,
)
from iasf_search.search.enqueue import resolve as resolve_enqueued
from iasf_search.space import SearchSpace, parse_space, plugin_modules, read_space_file


@dataclass(frozen=True)
class Session:
    """A validated space and its loaded plugins."""

    space: SearchSpace
    components: Components


def open_session(path: str | Path, *, plugins: Sequence[str] = (), observers: Iterable[tuple[object, str]] = (),
                 autoload: bool | None = None) -> Session:
    """Read a space file, load its plugins, validate it and check the architectures it queues (``search.enqueue``:
    each baseline name or arch.json file must describe a graph of the space).

    :param path: the YAML file.
    :param plugins: extra plugin modules to load (like ``--plugin``), before the file's ``plugins:``.
    :param observers: ``(plugin object, name)`` pairs registered for this session only, such as the
        CLI's progress display (life-cycle hooks; they register no components).
    :param autoload: load installed entry-point plugins (default: unless :data:`DISABLE_AUTOLOAD_ENV` is set).
    :raises BadInput: the file is missing or invalid, or a plugin cannot be loaded.
    """
    file = str(path)
    doc = read_space_file(path)
    listed = plugin_modules(doc, file)
    autoload = _autoload(autoload)
    modules = plugins_to_load(plugins, listed)
    try:
        components = load_components(modules, autoload=autoload, observers=observers)
    except PluginImportError as exc:
        if exc.source != "space file":
            raise
        raise SpaceError(file, f"plugins[{listed.index(exc.module)}]", str(exc)) from None
    space = parse_space(doc, components, file=file, extra_plugins=plugins, autoload=autoload)
    resolve_enqueued(space, components)  # every search.enqueue entry must be in the space (raises BadInput naming it)
    return Session(space, components)


def load_space(path: str | Path, *, plugins: Sequence[str] = (), autoload: bool | None = None) -> SearchSpace:
    """Read and validate a space file (loading its plugins to check it against them): the plain space.

    Arguments as :func:`open_session`, whose ``space`` this is.
    """
    return open_session(path, plugins=plugins, autoload=autoload).space


def session_for(space: SearchSpace | Session) -> Session:
    """``space``'s session: a session as it is, or a plain space with the plugins it records loaded again."""
    if isinstance(space, Session):
        return space
    return Session(space, load_components(plugins_to_load(space.extra_plugins, space.plugins), autoload=space.autoload))


def _autoload(autoload: bool | None) -> bool:
    return not os.environ.get(DISABLE_AUTOLOAD_ENV) if autoload is None else autoload
