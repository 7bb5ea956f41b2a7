"""Search-space files: YAML -> a validated :class:`~iasf_search.space.spec.SearchSpace`, which is plain data.

Validation is complete before anything runs: every key is known (with a "did you mean" for a
misspelling), every value has the right type and lies in what the owning component accepts, and
every error is a :class:`~iasf_search.errors.SpaceError` naming the file and the key path.

A space is validated against the registries of loaded plugins (:func:`parse_space`), but does not
hold them: :class:`iasf_search.session.Session` pairs a space with its loaded plugins, and
:func:`iasf_search.session.open_session` reads a file, loads its plugins, validates it and checks the
architectures it queues (``search.enqueue``). Parsing reads no file but the space file itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iasf_search.components import SplitSpec
from iasf_search.errors import SpaceError, allowed, did_you_mean
from iasf_search.params import Param, Range, parse_params
from iasf_search.registry import Registry
from iasf_search.settings import (
    MANIFOLD_PARAMS,
    METRICS_PARAMS,
    PRESCREEN_PARAMS,
    SEARCH_PARAMS,
    SPLIT_PARAMS,
    TRAINING_PARAMS,
)
from iasf_search.space.spec import (
    DEFAULT_NORMS,
    DEFAULT_READOUTS,
    METRICS,
    Constraint,
    Objective,
    SearchSettings,
    SearchSpace,
)
from iasf_search.yaml_io import read_yaml_document

if TYPE_CHECKING:
    from iasf_search.plugin_manager import Components

_TOP_KEYS = ("name", "description", "plugins", "task", "stem", "manifold", "training", "auxiliary", "costs", "metrics",
             "constraints", "objectives", "search")
_MANIFOLD_KEYS = ("nodes", "max_in_degree", "lookback", "width", "ops", "fusions", "readouts", "norms")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Reader:
    """Walks one YAML document, checking keys and types and remembering the key path."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, problem: str) -> SpaceError:
        return SpaceError(self.file, key, problem)

    def mapping(self, value: Any, key: str, keys: Sequence[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping with keys {', '.join(keys)}; got {value!r}")
        for k in value:
            if k not in keys:
                path = f"{key}.{k}" if key else str(k)
                raise self.fail(path, f"unknown key{did_you_mean(k, keys)}; {allowed(keys)}")
        return value

    def value(self, section: Mapping[str, Any], key: str, param: Param, prefix: str) -> Any:
        raw = section.get(key, param.default)
        return param.check(raw, self.file, f"{prefix}.{key}" if prefix else key)

    def fixed(self, ranges: Mapping[str, Range], key: str) -> dict[str, Any]:
        """Plain values from parsed ranges that must not be searched (options, not search dimensions)."""
        for name, rng in ranges.items():
            if not rng.is_fixed:
                raise self.fail(f"{key}.{name}", "options here are fixed values, not ranges or lists; give one value")
        return {name: rng.fixed for name, rng in ranges.items()}

    def known(self, registry: Registry, name: Any, key: str) -> Any:
        """The component ``name`` from ``registry``, or a SpaceError at ``key`` listing what exists."""
        if not isinstance(name, str) or name not in registry:
            raise self.fail(key, f"unknown {registry.kind} {name!r}{did_you_mean(name, registry)}; {allowed(registry)}")
        return registry.get(name)

    def options(self, value: Any, key: str, declared: Mapping[str, Param]) -> dict[str, Any]:
        """Fixed options (a mapping at ``key``) checked against ``declared``, defaults filled in."""
        given = self.mapping(value, key, tuple(declared))
        return {k: self.value(given, k, p, key) for k, p in declared.items()}

    def check_ranges(self, component: Any, ranges: Mapping[str, Range], width: Range, key: str) -> None:
        """A component's own check of ranges that constrain each other (e.g. heads dividing every width)."""
        problem = component.check_ranges(ranges, widths=width.values())
        if problem:
            raise self.fail(f"{key}.{problem[0]}", problem[1])

    def components(self, value: Any, key: str, registry: Registry) -> dict[str, dict[str, Range]]:
        """A list of component names, or a mapping of name to parameter ranges (null: defaults)."""
        kind = registry.kind
        if isinstance(value, list):
            if not all(isinstance(name, str) for name in value):
                raise self.fail(key, f"expected {kind} names (text), got {value!r}; {allowed(registry)}")
            if len(set(value)) != len(value):
                raise self.fail(key, f"{kind} names repeat in {value!r}; list each once")
            value = {name: None for name in value}
        if not isinstance(value, dict) or not value:
            raise self.fail(key, f"expected a non-empty list of {kind} names, or a mapping of {kind} name to "
                                 f"parameter ranges; {allowed(registry)}")
        out = {}
        for name, ranges in value.items():
            if name not in registry:
                raise self.fail(f"{key}.{name}", f"unknown {kind}{did_you_mean(name, registry)}; {allowed(registry)}")
            out[name] = parse_params(ranges, dict(registry.get(name).params), self.file, f"{key}.{name}")
        return out


def read_space_file(path: str | Path) -> dict[str, Any]:
    """Read a space file with YAML safe loading; BadInput for a missing or unparsable file."""
    doc = read_yaml_document(path, "space file", "pass the path of a YAML file such as search_spaces/vision.yaml")
    if not isinstance(doc, dict):
        raise SpaceError(str(path), "", "the file must hold a YAML mapping with at least 'name', 'task' and 'manifold'")
    return doc


def plugin_modules(doc: Mapping[str, Any], file: str) -> list[str]:
    """The ``plugins:`` list (checked before the plugins, which may own more top-level keys, are loaded)."""
    plugins = doc.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise SpaceError(file, "plugins", f"expected a list of module names, got {plugins!r}")
    return plugins


def parse_space(doc: Mapping[str, Any], components: Components, *, file: str = "<space>",
                extra_plugins: Sequence[str] = (), autoload: bool = True) -> SearchSpace:
    """Validate an already-parsed space document against ``components`` (which must hold its plugins).

    :param extra_plugins: plugin modules loaded beside the file's, recorded on the space.
    :param autoload: whether ``components`` include installed entry-point plugins, recorded on the space.
    """
    r = _Reader(file)
    r.mapping(doc, "", (*_TOP_KEYS, *components.space_sections))
    name, description = _parse_name(doc, r)
    dataset, options, split = _parse_task(doc, r, components)
    stem = parse_params(doc.get("stem"), dict(components.stems.get(dataset.modality).params), file, "stem")
    manifold = _parse_manifold(doc, r, components)
    training = parse_params(doc.get("training"), TRAINING_PARAMS, file, "training")
    auxiliary = _parse_auxiliary(doc, r, components)
    costs = _parse_costs(doc, r, components, manifold["width"])
    metrics, metrics_batch, metrics_default = _parse_metrics(doc, r, components)
    objectives = _parse_objectives(doc.get("objectives"), r, components)
    constraints = _parse_constraints(doc.get("constraints"), r, components)
    _add_implied_costs(costs, objectives, constraints, components)
    _add_implied_metrics(metrics, objectives, constraints, components, r)
    sections = _parse_sections(doc, r, components)
    search = _parse_search(doc, r, components, objectives)
    return SearchSpace(
        file=file, name=name, plugins=tuple(plugin_modules(doc, file)), dataset=dataset.name, dataset_options=options,
        split=split, modality=dataset.modality, stem=stem, **manifold, training=training, auxiliary=auxiliary, costs=costs,
        objectives=objectives, search=search, description=description, sections=sections, constraints=constraints,
        extra_plugins=tuple(extra_plugins), autoload=autoload, metrics=metrics, metrics_batch=metrics_batch,
        metrics_default=metrics_default,
    )


def _parse_name(doc: Mapping[str, Any], r: _Reader) -> tuple[str, str]:
    if "name" not in doc:
        raise r.fail("name", "missing; give the study a name such as 'vision'")
    name = doc["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise r.fail("name", f"expected letters, digits, '_', '.' or '-', got {name!r}")
    return name, str(doc.get("description") or "")


def _parse_task(doc: Mapping[str, Any], r: _Reader, components: Components) -> tuple[Any, dict[str, Any], SplitSpec]:
    """``task:``: the dataset (registered, with a stem for its modality), its options and the split."""
    task = r.mapping(doc.get("task"), "task", ("dataset", "options", "split"))
    if "dataset" not in task:
        raise r.fail("task.dataset", f"missing; {allowed(components.datasets)}")
    dataset = r.known(components.datasets, task["dataset"], "task.dataset")
    options_in = r.mapping(task.get("options"), "task.options", tuple(dataset.params))
    options = {k: r.value(options_in, k, p, "task.options") for k, p in dataset.params.items()}
    split_in = r.mapping(task.get("split"), "task.split", tuple(SPLIT_PARAMS))
    split = SplitSpec(**{k: r.value(split_in, k, p, "task.split") for k, p in SPLIT_PARAMS.items()})
    if split.val + split.test >= 0.9:
        raise r.fail("task.split", f"val + test must leave at least 10% for training, got val={split.val}, test={split.test}")
    if split.repeats > 1 and split.folds is None:
        raise r.fail("task.split.repeats", f"repeats {split.repeats} needs cross-validation; add folds (e.g. folds: 5) "
                                           f"or remove repeats")
    if dataset.modality not in components.stems:
        raise r.fail("task.dataset", f"dataset {dataset.name!r} has modality {dataset.modality!r}, for which no plugin registers "
                                     f"a stem; stems exist for: {', '.join(components.stems)}")
    return dataset, options, split


def _parse_manifold(doc: Mapping[str, Any], r: _Reader, components: Components) -> dict[str, Any]:
    """``manifold:``: graph size, connectivity, widths, ops, fusions, readouts and norms (each checked by its component)."""
    manifold = r.mapping(doc.get("manifold"), "manifold", _MANIFOLD_KEYS)
    out = {
        **{key: Range.parse(manifold.get(key, MANIFOLD_PARAMS[key].default), MANIFOLD_PARAMS[key], r.file, f"manifold.{key}")
           for key in ("nodes", "width")},
        **{key: r.value(manifold, key, MANIFOLD_PARAMS[key], "manifold") for key in ("max_in_degree", "lookback")},
        "ops": r.components(manifold.get("ops"), "manifold.ops", components.ops),
        "fusions": r.components(manifold.get("fusions", ["sum"]), "manifold.fusions", components.fusions),
        "readouts": r.components(manifold.get("readouts", list(DEFAULT_READOUTS)), "manifold.readouts", components.readouts),
        "norms": r.components(manifold.get("norms", list(DEFAULT_NORMS)), "manifold.norms", components.norms),
    }
    for section, registry in (("ops", components.ops), ("fusions", components.fusions), ("readouts", components.readouts),
                              ("norms", components.norms)):
        for component, ranges in out[section].items():
            r.check_ranges(registry.get(component), ranges, out["width"], f"manifold.{section}.{component}")
    return out


def _parse_auxiliary(doc: Mapping[str, Any], r: _Reader, components: Components) -> dict[str, dict[str, Range]]:
    """``auxiliary:``: objectives by name, each declaring a ``weight``."""
    auxiliary = r.components(doc["auxiliary"], "auxiliary", components.aux_objectives) if doc.get("auxiliary") else {}
    for aux_name in auxiliary:
        if "weight" not in components.aux_objectives.get(aux_name).params:
            raise r.fail(f"auxiliary.{aux_name}", f"the objective declares no 'weight' parameter; "
                                                  f"fix plugin '{components.aux_objectives.owner(aux_name)}'")
    return auxiliary


def _parse_costs(doc: Mapping[str, Any], r: _Reader, components: Components, width: Range) -> dict[str, dict[str, Any]]:
    """``costs:``: cost models by name, with fixed options."""
    cost_ranges = r.components(doc["costs"], "costs", components.cost_models) if doc.get("costs") else {}
    costs = {name: r.fixed(ranges, f"costs.{name}") for name, ranges in cost_ranges.items()}
    for cost, ranges in cost_ranges.items():  # e.g. a hardware target that cannot run the chosen dtype
        r.check_ranges(components.cost_models.get(cost), ranges, width, f"costs.{cost}")
    return costs


def _parse_metrics(doc: Mapping[str, Any], r: _Reader, components: Components) -> tuple[dict[str, dict[str, Any]], int, bool]:
    """``metrics:``: ``{batch, record}`` (or a bare list, the ``record``): the representation metrics
    recorded on every trial, with fixed options, and the validation batch they are measured on.
    Without ``record``, every registered metric marked ``default`` that this installation can measure."""
    value = doc.get("metrics")
    if isinstance(value, list):
        value = {"record": value}
    section = r.mapping(value, "metrics", ("batch", "record"))
    batch = r.value(section, "batch", METRICS_PARAMS["batch"], "metrics")
    registry = components.metrics
    if "record" not in section:
        return ({name: {k: p.default for k, p in registry.get(name).params.items()} for name in registry
                 if registry.get(name).default and registry.get(name).unavailable() is None}, batch, True)
    if section["record"] in ([], {}, None):
        return {}, batch, False
    ranges = r.components(section["record"], "metrics.record", registry)
    metrics = {name: r.fixed(options, f"metrics.record.{name}") for name, options in ranges.items()}
    for name in metrics:
        _check_available(r, registry, name, f"metrics.record.{name}")
    return metrics, batch, False


def _check_available(r: _Reader, registry: Registry, name: str, key: str) -> None:
    why = registry.get(name).unavailable()
    if why:
        raise r.fail(key, f"representation metric '{name}' {why}")


def _add_implied_metrics(metrics: dict[str, dict[str, Any]], objectives: Sequence[Objective], constraints: Sequence[Constraint],
                         components: Components, r: _Reader) -> None:
    """A representation metric used as an objective or bounded by a constraint is measured even when not listed
    (constraints were checked for availability when parsed, objectives are here)."""
    registry = components.metrics
    for i, o in enumerate(objectives):
        if o.metric in registry:
            _check_available(r, registry, o.metric, f"objectives[{i}].metric")
    for name in [o.metric for o in objectives] + [c.name for c in constraints if c.kind == "metric"]:
        if name in registry and name not in metrics:
            metrics[name] = {k: p.default for k, p in registry.get(name).params.items()}


def _add_implied_costs(costs: dict[str, dict[str, Any]], objectives: Sequence[Objective], constraints: Sequence[Constraint],
                       components: Components) -> None:
    """A cost used as an objective or bounded by a constraint is measured even when not listed (with its defaults)."""
    for metric in [o.metric for o in objectives] + [c.name for c in constraints if c.kind == "cost"]:
        if metric in components.cost_models and metric not in costs:
            costs[metric] = {k: p.default for k, p in components.cost_models.get(metric).params.items()}


def _parse_sections(doc: Mapping[str, Any], r: _Reader, components: Components) -> dict[str, dict[str, Any]]:
    """Top-level sections that plugins own (``iasf_register_space_sections``)."""
    sections = {}
    for section in components.space_sections:
        owner = components.space_sections.get(section)
        given = r.mapping(doc.get(section), section, tuple(owner.params))
        sections[section] = {k: r.value(given, k, p, section) for k, p in owner.params.items()}
    return sections


def _parse_search(doc: Mapping[str, Any], r: _Reader, components: Components, objectives: Sequence[Objective]) -> SearchSettings:
    """``search:``: sampler and pruner (registered, with their options) and the budget keys of
    :data:`~iasf_search.settings.SEARCH_PARAMS`."""
    s = r.mapping(doc.get("search"), "search", (*SEARCH_PARAMS, "sampler_options", "pruner_options", "enqueue", "proxies",
                                                "prescreen"))
    values = {k: r.value(s, k, p, "search") for k, p in SEARCH_PARAMS.items()}
    sampler = r.known(components.samplers, values["sampler"], "search.sampler").name
    pruner = r.known(components.pruners, values["pruner"] or _default_pruner(objectives, components), "search.pruner").name
    if len(objectives) > 1 and not components.pruners.get(pruner).multi_objective:
        several = [p for p in components.pruners if components.pruners.get(p).multi_objective]
        raise r.fail("search.pruner", f"{pruner!r} prunes studies with one objective only (Optuna's pruners); with "
                                      f"{len(objectives)} objectives use one of: {', '.join(several)}")
    search = SearchSettings(**{**values, "sampler": sampler, "pruner": pruner, "enqueue": _parse_enqueue(s.get("enqueue"), r),
                               "proxies": _parse_proxies(s.get("proxies"), r, components),
                               "prescreen": _parse_prescreen(s.get("prescreen"), r, components),
                               "sampler_options": r.options(s.get("sampler_options"), "search.sampler_options",
                                                            components.samplers.get(sampler).params),
                               "pruner_options": r.options(s.get("pruner_options"), "search.pruner_options",
                                                           components.pruners.get(pruner).params)})
    if search.grace_period <= search.heartbeat_interval:
        raise r.fail("search.grace_period", f"{search.grace_period} s is not longer than search.heartbeat_interval "
                                            f"({search.heartbeat_interval} s); give at least twice the interval")
    options = {k: Range(fixed=v) for k, v in search.sampler_options.items()}  # options that constrain each other
    problem = components.samplers.get(sampler).check_ranges(options, widths=None)
    if problem:
        raise r.fail(f"search.sampler_options.{problem[0]}", problem[1])
    return search


def _parse_enqueue(value: Any, r: _Reader) -> tuple[str, ...]:
    """``search.enqueue``: a list of baseline architecture names or arch.json paths (checked against the
    space once it is complete, :func:`iasf_search.search.enqueue.resolve`)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise r.fail("search.enqueue", f"expected a list of baseline architecture names (such as transformer, cnn) or "
                                       f"arch.json paths; got {value!r}")
    return tuple(value)


def _parse_proxies(value: Any, r: _Reader, components: Components) -> tuple[str, ...]:
    """``search.proxies``: registered zero-cost proxy names, each once."""
    proxies = components.proxies
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise r.fail("search.proxies", f"expected a list of zero-cost proxy names such as [zico, synflow, params]; "
                                       f"got {value!r}; {allowed(proxies)}")
    for i, name in enumerate(value):
        if name not in proxies:
            raise r.fail(f"search.proxies[{i}]", f"unknown zero-cost proxy {name!r}{did_you_mean(name, proxies)}; {allowed(proxies)}")
    if len(set(value)) != len(value):
        raise r.fail("search.proxies", f"names repeat in {value!r}; list each once")
    return tuple(value)


def _parse_prescreen(value: Any, r: _Reader, components: Components) -> dict[str, Any] | None:
    """``search.prescreen: {proxy, candidates, keep}``: a registered proxy, ``candidates >= keep >= 1``."""
    if value is None:
        return None
    key = "search.prescreen"
    given = r.mapping(value, key, ("proxy", *PRESCREEN_PARAMS))
    if not given or "proxy" not in given:
        raise r.fail(f"{key}.proxy", f"missing; name the zero-cost proxy that ranks the candidates, e.g. "
                                     f"{{proxy: zico, candidates: 16, keep: 1}}; {allowed(components.proxies)}")
    proxy = given["proxy"]
    if not isinstance(proxy, str) or proxy not in components.proxies:
        raise r.fail(f"{key}.proxy", f"unknown zero-cost proxy {proxy!r}{did_you_mean(str(proxy), components.proxies)}; "
                                     f"{allowed(components.proxies)}")
    out = {"proxy": proxy, **{k: r.value(given, k, p, key) for k, p in PRESCREEN_PARAMS.items()}}
    if out["keep"] > out["candidates"]:
        raise r.fail(f"{key}.keep", f"{out['keep']} is more than the {out['candidates']} candidates; give keep <= candidates")
    return out


def _default_pruner(objectives: Sequence[Objective], components: Components) -> str:
    """``median`` for one objective; for several, the first registered pruner that handles them
    (``pareto_halving`` among the built-ins), else ``none``."""
    if len(objectives) == 1:
        return "median"
    for preferred in ("pareto_halving", *components.pruners):
        if preferred in components.pruners and components.pruners.get(preferred).multi_objective:
            return preferred
    return "none"


def _parse_constraints(value: Any, r: _Reader, components: Components) -> tuple[Constraint, ...]:
    """``constraints: {name: {max: bound} | {min: bound} | {min, max}, ...}``: bounds on registered costs
    (positive, checked before training) and representation metrics (any sign, checked after training)."""
    if value is None:
        return ()
    costs, metrics = components.cost_models, components.metrics
    names = [*costs, *metrics]
    if not isinstance(value, dict) or not value:
        raise r.fail("constraints", "expected a mapping of cost or metric name to bounds such as {params: {max: 200000}}; "
                                    f"{allowed(names)}")
    out = []
    for name, bound in value.items():
        key = f"constraints.{name}"
        if name not in costs and name not in metrics:
            raise r.fail(key, f"unknown cost model or representation metric{did_you_mean(name, names)}; {allowed(names)}")
        kind = "cost" if name in costs else "metric"
        unit = (costs.get(name).unit or "the cost unit") if kind == "cost" else "the metric's unit"
        if isinstance(bound, dict):
            r.mapping(bound, key, ("min", "max"))
        if not isinstance(bound, dict) or not bound:
            raise r.fail(key, f"expected {{max: NUMBER}} or {{min: NUMBER}} (a bound in {unit}), got {bound!r}")
        low, high = (r.value(bound, k, Param(0.0, float), key) if k in bound else None for k in ("min", "max"))
        for k, v in (("min", low), ("max", high)):
            if kind == "cost" and v is not None and v <= 0:
                raise r.fail(f"{key}.{k}", f"{v:g} is not a positive bound; costs are positive, give {k} > 0")
        if low is not None and high is not None and low > high:
            raise r.fail(key, f"min {low:g} is above max {high:g}; give min <= max")
        if kind == "metric":
            _check_available(r, metrics, name, key)
        out.append(Constraint(name, max=high, min=low, kind=kind))
    return tuple(out)


def _parse_objectives(value: Any, r: _Reader, components: Components) -> tuple[Objective, ...]:
    if value is None:
        value = [{"metric": "accuracy"}]
    if not isinstance(value, list) or not value:
        raise r.fail("objectives", "expected a non-empty list such as [{metric: accuracy, direction: maximize}]")
    out = []
    for i, item in enumerate(value):
        key = f"objectives[{i}]"
        item = r.mapping(item, key, ("metric", "direction"))
        metrics = {**METRICS, **{c: "minimize" for c in components.cost_models},
                   **{m: components.metrics.get(m).direction for m in components.metrics}}
        metric = r.value(item, "metric", Param("accuracy", str, choices=tuple(metrics)), key)
        direction = r.value(item, "direction", Param(metrics[metric], str, choices=("maximize", "minimize")), key)
        out.append(Objective(metric, direction))
    if len({o.metric for o in out}) != len(out):
        raise r.fail("objectives", "a metric is listed twice; list each once")
    return tuple(out)
