"""Loading plugins and collecting what they register.

Plugins come from four places, loaded in this order:

1. the built-in plugins (:data:`BUILTIN_PLUGINS`), which use only the public hooks;
2. installed packages exposing the entry-point group :data:`ENTRY_POINT_GROUP` (skipped when the
   environment variable :data:`DISABLE_AUTOLOAD_ENV` is set to a non-empty value);
3. modules named with ``--plugin MODULE`` (or ``plugins=`` in the Python API);
4. modules listed under ``plugins:`` in the space file (or recorded with the results: a study's stored
   space, an export's ``model.json``).

:func:`plugins_to_load` builds the list of 3 and 4 for every command that loads plugins, and a module
named twice is loaded once, where it is first named. Nothing is ever imported implicitly from the
current directory.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

import pluggy

from iasf_search import hookspecs
from iasf_search.components import (
    AuxObjective,
    BaselineArchitecture,
    CostModel,
    Dataset,
    Fusion,
    NodeOp,
    Norm,
    PrunerFactory,
    Readout,
    RepresentationMetric,
    SamplerFactory,
    SpaceSection,
    Stem,
    ZeroCostProxy,
)
from iasf_search.errors import BadInput
from iasf_search.registry import Registry

ENTRY_POINT_GROUP = "iasf_search"
DISABLE_AUTOLOAD_ENV = "IASF_SEARCH_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PLUGINS = (
    "iasf_search.plugins.ops",
    "iasf_search.plugins.fusions",
    "iasf_search.plugins.readouts",
    "iasf_search.plugins.norms",
    "iasf_search.plugins.stems",
    "iasf_search.plugins.datasets",
    "iasf_search.plugins.synthetic",
    "iasf_search.plugins.text",
    "iasf_search.plugins.timeseries",
    "iasf_search.plugins.trial_records",
    "iasf_search.plugins.study_page",
    "iasf_search.plugins.meta_representation",
    "iasf_search.plugins.cds",
    "iasf_search.plugins.costs",
    "iasf_search.plugins.zero_cost",
    "iasf_search.plugins.latency_predictor",
    "iasf_search.plugins.optuna_components",
    "iasf_search.plugins.evolution",
    "iasf_search.plugins.pareto_pruning",
    "iasf_search.plugins.baseline_architectures",
    "iasf_search.plugins.representation_metrics",
)


@dataclass
class Components:
    """Everything the loaded plugins registered, plus the plugin manager for life-cycle hooks."""

    pm: pluggy.PluginManager
    ops: Registry[NodeOp] = field(default_factory=lambda: Registry("op", NodeOp))
    fusions: Registry[Fusion] = field(default_factory=lambda: Registry("fusion", Fusion))
    readouts: Registry[Readout] = field(default_factory=lambda: Registry("readout", Readout))
    norms: Registry[Norm] = field(default_factory=lambda: Registry("norm", Norm))
    stems: Registry[Stem] = field(default_factory=lambda: Registry("stem", Stem))
    datasets: Registry[Dataset] = field(default_factory=lambda: Registry("dataset", Dataset))
    aux_objectives: Registry[AuxObjective] = field(default_factory=lambda: Registry("auxiliary objective", AuxObjective))
    cost_models: Registry[CostModel] = field(default_factory=lambda: Registry("cost model", CostModel))
    space_sections: Registry[SpaceSection] = field(default_factory=lambda: Registry("space section", SpaceSection))
    samplers: Registry[SamplerFactory] = field(default_factory=lambda: Registry("sampler", SamplerFactory))
    pruners: Registry[PrunerFactory] = field(default_factory=lambda: Registry("pruner", PrunerFactory))
    architectures: Registry[BaselineArchitecture] = field(
        default_factory=lambda: Registry("baseline architecture", BaselineArchitecture))
    proxies: Registry[ZeroCostProxy] = field(default_factory=lambda: Registry("zero-cost proxy", ZeroCostProxy))
    metrics: Registry[RepresentationMetric] = field(
        default_factory=lambda: Registry("representation metric", RepresentationMetric))
    sources: dict[str, str] = field(default_factory=dict)
    """plugin name -> where it came from (``built-in``, ``entry point``, ``--plugin``, ``space file``)."""


def contributions(components: Components) -> dict[str, dict[str, list[str]]]:
    """For each loaded plugin: ``{"op": [...], "fusion": [...], ..., "hooks": [life-cycle hooks it implements]}``."""
    out: dict[str, dict[str, list[str]]] = {name: {} for name in components.sources}
    for attr in _REGISTRATION_HOOKS.values():
        registry: Registry = getattr(components, attr)
        for item in registry:
            out.setdefault(registry.owner(item), {}).setdefault(registry.kind, []).append(item)
    for plugin in components.pm.get_plugins():
        name = components.pm.get_name(plugin)
        hooks = [h.name for h in components.pm.get_hookcallers(plugin) or [] if h.name not in _REGISTRATION_HOOKS]
        if hooks:
            out.setdefault(name, {})["hooks"] = sorted(hooks)
    return out


def plugin_in_traceback(components: Components, tb: TracebackType | None) -> str | None:
    """The plugin whose code raised: the innermost traceback frame inside a plugin module (or its sub-modules)."""
    modules = {getattr(p, "__name__", None): components.pm.get_name(p) for p in components.pm.get_plugins()}
    modules.pop(None, None)
    found = None
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        for prefix, name in modules.items():
            if module == prefix or module.startswith(prefix + "."):
                found = name
        tb = tb.tb_next
    return found


_REGISTRATION_HOOKS = {
    "iasf_register_ops": "ops",
    "iasf_register_fusions": "fusions",
    "iasf_register_readouts": "readouts",
    "iasf_register_norms": "norms",
    "iasf_register_stems": "stems",
    "iasf_register_datasets": "datasets",
    "iasf_register_aux_objectives": "aux_objectives",
    "iasf_register_cost_models": "cost_models",
    "iasf_register_space_sections": "space_sections",
    "iasf_register_samplers": "samplers",
    "iasf_register_pruners": "pruners",
    "iasf_register_architectures": "architectures",
    "iasf_register_proxies": "proxies",
    "iasf_register_metrics": "metrics",
}


class PluginImportError(BadInput):
    """A plugin ``module`` cannot be imported; ``source`` says who asked for it (``--plugin``, ``space file``, ...)."""

    def __init__(self, message: str, module: str, source: str) -> None:
        super().__init__(message)
        self.module, self.source = module, source


def _import_plugin(module: str, source: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PluginImportError(f"cannot load plugin module '{module}' (from {source}): {exc}; install it or fix the name",
                                module, source) from None


def plugins_to_load(extra: Iterable[str] = (), recorded: Iterable[str] = (), *, extra_from: str = "--plugin",
                    recorded_from: str = "space file") -> list[tuple[str, str]]:
    """The ``(module, source)`` pairs :func:`load_components` loads for a command, in the one order every command
    uses (a search, ``plugins``, ``best``, ``report``, ``export``, ``analyze``, ``train``, :func:`iasf_search.load_model`):
    first the ``extra`` modules asked for on this command (``--plugin``, ``plugins=``; source ``extra_from``), then
    the ``recorded`` ones its space names (the space file's ``plugins:``, a study's stored space, an export's
    ``model.json``; source ``recorded_from``). A module named twice is listed once, with the source that named it first.
    """
    out: dict[str, str] = {}
    for modules, source in ((extra, extra_from), (recorded, recorded_from)):
        for module in modules:
            out.setdefault(module, source)
    return list(out.items())


def load_components(modules: Iterable[tuple[str, str]] = (), *, autoload: bool | None = None,
                    observers: Iterable[tuple[object, str]] = ()) -> Components:
    """Load the built-in plugins, entry points (unless disabled) and ``modules``; collect registrations.

    :param modules: ``(module_name, source)`` pairs, e.g. ``("my_ops", "--plugin")``.
    :param autoload: load entry-point plugins; default: unless :data:`DISABLE_AUTOLOAD_ENV` is set.
    :param observers: ``(plugin object, name)`` pairs registered last, such as a progress display
        chosen on the command line (listed as registered at run time).
    :returns: the filled registries.
    :raises BadInput: a module cannot be imported, or two plugins register the same name.
    """
    pm = pluggy.PluginManager("iasf_search")
    pm.add_hookspecs(hookspecs)
    components = Components(pm=pm)
    for name in BUILTIN_PLUGINS:
        pm.register(_import_plugin(name, "built-in"), name=name)
        components.sources[name] = "built-in"
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        before = set(pm.get_plugins())
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken installed plugin must say which one
            raise BadInput(f"an installed plugin (entry point group '{ENTRY_POINT_GROUP}') failed to load: {exc}; "
                           f"set {DISABLE_AUTOLOAD_ENV}=1 to skip installed plugins") from None
        for plugin in set(pm.get_plugins()) - before:
            components.sources[pm.get_name(plugin)] = "entry point"
    for module, source in modules:
        if pm.has_plugin(module):
            continue
        pm.register(_import_plugin(module, source), name=module)
        components.sources[module] = source
    for plugin, name in observers:
        pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise BadInput(f"plugin '{exc.plugin}' implements a hook iasf-search does not have: {exc}") from None
    for hook_name, attr in _REGISTRATION_HOOKS.items():
        registry: Registry = getattr(components, attr)
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            impl.function(registry=registry._as_plugin(impl.plugin_name))
    return components
