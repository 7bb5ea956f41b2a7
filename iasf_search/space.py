"""Search-space files: YAML -> a validated :class:`SearchSpace`.

Validation is complete before anything runs: every key is known (with a "did you mean" for a
misspelling), every value has the right type and lies in what the owning component accepts, and
every error is a :class:`~iasf_search.errors.SpaceError` naming the file and the key path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iasf_search.components import SplitSpec
from iasf_search.errors import BadInput, SpaceError, allowed, did_you_mean
from iasf_search.params import Param, Range, parse_params
from iasf_search.plugin_manager import Components, PluginImportError, load_components
from iasf_search.registry import Registry
from iasf_search.train import TRAINING_PARAMS

METRICS = {"accuracy": "maximize", "loss": "minimize"}
"""Training metrics usable as objectives (validation accuracy and loss), with their default direction.
Every registered cost model is an objective metric too (default ``minimize``)."""

_TOP_KEYS = ("name", "description", "plugins", "task", "stem", "manifold", "training", "auxiliary", "costs", "constraints",
             "objectives", "search")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str


@dataclass(frozen=True)
class Constraint:
    """An upper bound on a cost, checked on the built model before training."""

    cost: str
    max: float

    def violation(self, value: float) -> float:
        """Optuna's constraint value: ``value / max - 1`` (relative, so costs of different units add
        up comparably); zero or less means feasible."""
        return value / self.max - 1.0


@dataclass(frozen=True)
class SearchSettings:
    sampler: str = "tpe"
    sampler_options: Mapping[str, Any] = field(default_factory=dict)
    pruner: str = "median"
    pruner_options: Mapping[str, Any] = field(default_factory=dict)
    trials: int = 20
    timeout: float | None = None
    seed: int = 0
    max_trial_seconds: float | None = None
    """A trial still training after this long is stopped (pruned, reason ``time limit``)."""
    heartbeat_interval: int = 20
    """Seconds between a running trial's heartbeats (RDB storages: SQLite, PostgreSQL, ...)."""
    grace_period: int = 120
    """A running trial without a heartbeat for this long is failed and retried once."""


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. ``components`` are the plugins' registries it was checked against."""

    file: str
    name: str
    plugins: tuple[str, ...]
    dataset: str
    dataset_options: Mapping[str, Any]
    split: SplitSpec
    modality: str
    stem: Mapping[str, Range]
    nodes: Range
    max_in_degree: int
    lookback: int | None
    width: Range
    ops: Mapping[str, Mapping[str, Range]]
    fusions: Mapping[str, Mapping[str, Range]]
    training: Mapping[str, Range]
    auxiliary: Mapping[str, Mapping[str, Range]]
    costs: Mapping[str, Mapping[str, Any]]
    objectives: tuple[Objective, ...]
    search: SearchSettings
    components: Components = field(repr=False, compare=False)
    description: str = ""
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Validated values of plugin-owned top-level sections (see ``iasf_register_space_sections``)."""
    constraints: tuple[Constraint, ...] = ()

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def resolved(self) -> dict[str, Any]:
        """The space with every default filled in, in space-file syntax (saved with the study)."""
        return {
            "name": self.name,
            "plugins": list(self.plugins),
            "task": {"dataset": self.dataset, "options": dict(self.dataset_options),
                     "split": {"val": self.split.val, "test": self.split.test, "seed": self.split.seed}},
            "stem": {k: r.to_yaml() for k, r in self.stem.items()},
            "manifold": {
                "nodes": self.nodes.to_yaml(), "max_in_degree": self.max_in_degree, "lookback": self.lookback,
                "width": self.width.to_yaml(),
                "ops": {op: {k: r.to_yaml() for k, r in ranges.items()} for op, ranges in self.ops.items()},
                "fusions": {f: {k: r.to_yaml() for k, r in ranges.items()} for f, ranges in self.fusions.items()},
            },
            "training": {k: r.to_yaml() for k, r in self.training.items()},
            "auxiliary": {a: {k: r.to_yaml() for k, r in ranges.items()} for a, ranges in self.auxiliary.items()},
            "costs": {c: dict(options) for c, options in self.costs.items()},
            "objectives": [{"metric": o.metric, "direction": o.direction} for o in self.objectives],
            "search": {
                "sampler": self.search.sampler, "sampler_options": dict(self.search.sampler_options),
                "pruner": self.search.pruner, "pruner_options": dict(self.search.pruner_options),
                "trials": self.search.trials, "timeout": self.search.timeout, "seed": self.search.seed,
                "max_trial_seconds": self.search.max_trial_seconds, "heartbeat_interval": self.search.heartbeat_interval,
                "grace_period": self.search.grace_period,
            },
            **{name: dict(values) for name, values in self.sections.items()},
            **({"constraints": {c.cost: {"max": c.max} for c in self.constraints}} if self.constraints else {}),
        }


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

    def components(self, value: Any, key: str, registry: Registry) -> dict[str, dict[str, Range]]:
        """A list of component names, or a mapping of name to parameter ranges (null: defaults)."""
        kind = registry.kind
        if isinstance(value, list):
            if len(set(map(str, value))) != len(value):
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


def read_yaml_document(path: str | Path, what: str, missing_fix: str) -> Any:
    """The YAML document in ``path`` (safe loading), or a one-line error naming the file:
    :class:`BadInput` when it is missing (``"<file>: no such <what>; <missing_fix>"``) or unreadable,
    :class:`SpaceError` when it is not valid YAML (with line and column)."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{file}: no such {what}; {missing_fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{file}: cannot read the {what}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(file, "", f"not valid YAML: {where}{problem}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a space file with YAML safe loading; BadInput for a missing or unparsable file."""
    doc = read_yaml_document(path, "space file", "pass the path of a YAML file such as search_spaces/vision.yaml")
    if not isinstance(doc, dict):
        raise SpaceError(str(path), "", "the file must hold a YAML mapping with at least 'name', 'task' and 'manifold'")
    return doc


def _plugin_modules(doc: Mapping[str, Any], r: _Reader) -> list[str]:
    """The ``plugins:`` list (checked before the plugins, which may own more top-level keys, are loaded)."""
    plugins = doc.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise r.fail("plugins", f"expected a list of module names, got {plugins!r}")
    return plugins


def load_space(path: str | Path, *, plugins: Sequence[str] = (), autoload: bool | None = None) -> SearchSpace:
    """Read and validate a space file.

    :param path: the YAML file.
    :param plugins: extra plugin modules to load (like ``--plugin``), before the file's ``plugins:``.
    :param autoload: load installed entry-point plugins (default: unless disabled by environment).
    :raises BadInput: the file is missing or invalid, or a plugin cannot be loaded.
    """
    doc = read_yaml(path)
    listed = _plugin_modules(doc, _Reader(str(path)))
    modules = [(m, "--plugin") for m in plugins] + [(m, "space file") for m in listed]
    try:
        components = load_components(modules, autoload=autoload)
    except PluginImportError as exc:
        if exc.source != "space file":
            raise
        raise SpaceError(str(path), f"plugins[{listed.index(exc.module)}]", str(exc)) from None
    return parse_space(doc, components, file=str(path))


def parse_space(doc: Mapping[str, Any], components: Components, *, file: str = "<space>") -> SearchSpace:
    """Validate an already-parsed space document against ``components`` (which must hold its plugins)."""
    r = _Reader(file)
    r.mapping(doc, "", (*_TOP_KEYS, *components.space_sections))
    plugins = _plugin_modules(doc, r)
    if "name" not in doc:
        raise r.fail("name", "missing; give the study a name such as 'vision'")
    name = doc["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise r.fail("name", f"expected letters, digits, '_', '.' or '-', got {name!r}")
    description = doc.get("description") or ""

    task = r.mapping(doc.get("task"), "task", ("dataset", "options", "split"))
    if "dataset" not in task:
        raise r.fail("task.dataset", f"missing; {allowed(components.datasets)}")
    dataset = r.known(components.datasets, task["dataset"], "task.dataset")
    options_in = r.mapping(task.get("options"), "task.options", tuple(dataset.params))
    options = {k: r.value(options_in, k, p, "task.options") for k, p in dataset.params.items()}
    split_in = r.mapping(task.get("split"), "task.split", ("val", "test", "seed"))
    split = SplitSpec(val=r.value(split_in, "val", Param(0.15, float, low=0.01, high=0.9), "task.split"),
                      test=r.value(split_in, "test", Param(0.2, float, low=0.0, high=0.9), "task.split"),
                      seed=r.value(split_in, "seed", Param(0, int), "task.split"))
    if split.val + split.test >= 0.9:
        raise r.fail("task.split", f"val + test must leave at least 10% for training, got val={split.val}, test={split.test}")

    modality = dataset.modality
    if modality not in components.stems:
        raise r.fail("task.dataset", f"dataset {dataset.name!r} has modality {modality!r}, for which no plugin registers a stem; "
                     f"stems exist for: {', '.join(components.stems)}")
    stem = parse_params(doc.get("stem"), dict(components.stems.get(modality).params), file, "stem")

    manifold = r.mapping(doc.get("manifold"), "manifold",
                         ("nodes", "max_in_degree", "lookback", "width", "ops", "fusions"))
    nodes = Range.parse(manifold.get("nodes", {"low": 1, "high": 4}), Param(1, int, low=1, high=64), file, "manifold.nodes")
    max_in = r.value(manifold, "max_in_degree", Param(2, int, low=1, high=16), "manifold")
    lookback = r.value(manifold, "lookback", Param(None, int, low=1, nullable=True), "manifold")
    width = Range.parse(manifold.get("width", [64]), Param(64, int, low=4, high=8192), file, "manifold.width")
    ops = r.components(manifold.get("ops"), "manifold.ops", components.ops)
    fusions = r.components(manifold.get("fusions", ["sum"]), "manifold.fusions", components.fusions)
    for section, registry, chosen in (("manifold.ops", components.ops, ops), ("manifold.fusions", components.fusions, fusions)):
        for component, ranges in chosen.items():
            problem = registry.get(component).check_ranges(ranges, widths=width.values())
            if problem:
                raise r.fail(f"{section}.{component}.{problem[0]}", problem[1])

    training = parse_params(doc.get("training"), TRAINING_PARAMS, file, "training")
    auxiliary = r.components(doc["auxiliary"], "auxiliary", components.aux_objectives) if doc.get("auxiliary") else {}
    for aux_name in auxiliary:
        if "weight" not in components.aux_objectives.get(aux_name).params:
            raise r.fail(f"auxiliary.{aux_name}", f"the objective declares no 'weight' parameter; "
                                                  f"fix plugin '{components.aux_objectives.owner(aux_name)}'")
    cost_ranges = r.components(doc["costs"], "costs", components.cost_models) if doc.get("costs") else {}
    costs = {name: r.fixed(ranges, f"costs.{name}") for name, ranges in cost_ranges.items()}
    for cost, ranges in cost_ranges.items():  # e.g. a hardware target that cannot run the chosen dtype
        problem = components.cost_models.get(cost).check_ranges(ranges, widths=width.values())
        if problem:
            raise r.fail(f"costs.{cost}.{problem[0]}", problem[1])
    objectives = _parse_objectives(doc.get("objectives"), r, components)
    constraints = _parse_constraints(doc.get("constraints"), r, components)
    # a cost used as an objective or bounded by a constraint is measured even when not listed
    for metric in [o.metric for o in objectives] + [c.cost for c in constraints]:
        if metric in components.cost_models and metric not in costs:
            costs[metric] = {k: p.default for k, p in components.cost_models.get(metric).params.items()}
    sections = {}
    for section in components.space_sections:
        owner = components.space_sections.get(section)
        given = r.mapping(doc.get(section), section, tuple(owner.params))
        sections[section] = {k: r.value(given, k, p, section) for k, p in owner.params.items()}

    s = r.mapping(doc.get("search"), "search",
                  ("sampler", "sampler_options", "pruner", "pruner_options", "trials", "timeout", "seed",
                   "max_trial_seconds", "heartbeat_interval", "grace_period"))
    sampler = r.known(components.samplers, r.value(s, "sampler", Param("tpe", str), "search"), "search.sampler").name
    pruner = r.known(components.pruners, r.value(s, "pruner", Param(_default_pruner(objectives, components), str), "search"),
                     "search.pruner").name
    if len(objectives) > 1 and not components.pruners.get(pruner).multi_objective:
        several = [p for p in components.pruners if components.pruners.get(p).multi_objective]
        raise r.fail("search.pruner", f"{pruner!r} prunes studies with one objective only (Optuna's pruners); with "
                                      f"{len(objectives)} objectives use one of: {', '.join(several)}")
    sampler_options = r.mapping(s.get("sampler_options"), "search.sampler_options", tuple(components.samplers.get(sampler).params))
    pruner_options = r.mapping(s.get("pruner_options"), "search.pruner_options", tuple(components.pruners.get(pruner).params))
    search = SearchSettings(
        sampler=sampler,
        sampler_options={k: r.value(sampler_options, k, p, "search.sampler_options")
                         for k, p in components.samplers.get(sampler).params.items()},
        pruner=pruner,
        pruner_options={k: r.value(pruner_options, k, p, "search.pruner_options")
                        for k, p in components.pruners.get(pruner).params.items()},
        trials=r.value(s, "trials", Param(20, int, low=1), "search"),
        timeout=r.value(s, "timeout", Param(None, float, low=1.0, nullable=True), "search"),
        seed=r.value(s, "seed", Param(0, int), "search"),
        max_trial_seconds=r.value(s, "max_trial_seconds", Param(None, float, low=0.1, nullable=True), "search"),
        heartbeat_interval=r.value(s, "heartbeat_interval", Param(20, int, low=1), "search"),
        grace_period=r.value(s, "grace_period", Param(120, int, low=2), "search"),
    )
    if search.grace_period <= search.heartbeat_interval:
        raise r.fail("search.grace_period", f"{search.grace_period} s is not longer than search.heartbeat_interval "
                                            f"({search.heartbeat_interval} s); give at least twice the interval")
    return SearchSpace(
        file=file, name=name, plugins=tuple(plugins), dataset=dataset.name, dataset_options=options, split=split,
        modality=modality, stem=stem, nodes=nodes, max_in_degree=max_in, lookback=lookback, width=width, ops=ops,
        fusions=fusions, training=training, auxiliary=auxiliary, costs=costs, objectives=objectives, search=search, components=components,
        description=str(description), sections=sections, constraints=constraints,
    )


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
    """``constraints: {cost: {max: bound}, ...}`` — upper bounds on registered costs."""
    if value is None:
        return ()
    costs = components.cost_models
    if not isinstance(value, dict) or not value:
        raise r.fail("constraints", f"expected a mapping of cost name to bound such as {{params: {{max: 200000}}}}; "
                                    f"{allowed(costs)}")
    out = []
    for name, bound in value.items():
        key = f"constraints.{name}"
        if name not in costs:
            raise r.fail(key, f"unknown cost model{did_you_mean(name, costs)}; {allowed(costs)}")
        if not isinstance(bound, dict) or "max" not in bound:
            raise r.fail(key, f"expected {{max: NUMBER}} (an upper bound in {costs.get(name).unit or 'the cost unit'}), "
                              f"got {bound!r}")
        r.mapping(bound, key, ("max",))
        bound_value = r.value(bound, "max", Param(0.0, float), key)
        if bound_value <= 0:
            raise r.fail(f"{key}.max", f"{bound_value:g} is not a positive bound; costs are positive, give max > 0")
        out.append(Constraint(name, bound_value))
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
        metrics = {**METRICS, **{c: "minimize" for c in components.cost_models}}
        metric = r.value(item, "metric", Param("accuracy", str, choices=tuple(metrics)), key)
        direction = r.value(item, "direction", Param(metrics[metric], str, choices=("maximize", "minimize")), key)
        out.append(Objective(metric, direction))
    if len({o.metric for o in out}) != len(out):
        raise r.fail("objectives", "a metric is listed twice; list each once")
    return tuple(out)
