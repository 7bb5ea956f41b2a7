"""A search space as plain data: :class:`SearchSpace` (what a space file says, every default filled in),
with its :class:`Objective`, :class:`Constraint` and :class:`SearchSettings`. Nothing here reads files or
loads plugins: :mod:`iasf_search.space.parser` makes these from a YAML document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from iasf_search.components import SplitSpec
from iasf_search.params import Range
from iasf_search.settings import METRICS_PARAMS

METRICS = {"accuracy": "maximize", "loss": "minimize"}
"""Training metrics usable as objectives (validation accuracy and loss), with their default direction.
Every registered cost model is an objective metric too (default ``minimize``)."""

DEFAULT_READOUTS = {"mean": {}}
"""``manifold.readouts`` when a space gives none: every architecture reads its output by the mean over tokens."""
DEFAULT_NORMS = {"layer": {}}
"""``manifold.norms`` when a space gives none: every residual node pre-normalises with LayerNorm."""
DEFAULT_METRICS_BATCH = METRICS_PARAMS["batch"].default
"""``metrics.batch`` when a space gives none."""


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str


@dataclass(frozen=True)
class Constraint:
    """A bound on a cost (``kind="cost"``: checked on the built model, before training) or on a
    representation metric (``kind="metric"``: checked on the trained model); ``min``, ``max`` or both."""

    name: str
    max: float | None = None
    min: float | None = None
    kind: str = "cost"

    @property
    def cost(self) -> str:
        """The bounded cost's name (what this field was called when only costs could be bounded)."""
        return self.name

    def violation(self, value: float) -> float:
        """Optuna's constraint value, zero or less when ``value`` is within the bounds: relative for a
        cost (``value / max - 1``, ``1 - value / min``: costs of different units add up comparably),
        absolute for a metric (``value - max``, ``min - value``: metrics may be zero or negative);
        with both bounds, the larger of the two."""
        parts = []
        if self.max is not None:
            parts.append(value / self.max - 1.0 if self.kind == "cost" else value - self.max)
        if self.min is not None:
            parts.append(1.0 - value / self.min if self.kind == "cost" else self.min - value)
        return max(parts)

    def feasible(self, value: float) -> bool:
        return (self.max is None or value <= self.max) and (self.min is None or value >= self.min)

    def bounds(self) -> dict[str, float]:
        """``{"min": ..., "max": ...}``, the bounds given (space-file syntax)."""
        return {k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None}

    def broken(self, value: float) -> str:
        """How ``value`` breaks the bounds, e.g. ``"latency_ms 7.31 > max 5"`` (empty when it does not)."""
        if self.max is not None and value > self.max:
            return f"{self.name} {value:.6g} > max {self.max:g}"
        if self.min is not None and value < self.min:
            return f"{self.name} {value:.6g} < min {self.min:g}"
        return ""


@dataclass(frozen=True)
class SearchSettings:
    """The ``search:`` section (keys, types and defaults: :data:`iasf_search.settings.SEARCH_PARAMS`)."""

    sampler: str
    sampler_options: Mapping[str, Any]
    pruner: str
    pruner_options: Mapping[str, Any]
    trials: int
    timeout: float | None
    seed: int
    max_trial_seconds: float | None
    """A trial still training after this long is stopped (pruned, reason ``time limit``)."""
    heartbeat_interval: int
    """Seconds between a running trial's heartbeats (RDB storages: SQLite, PostgreSQL, ...)."""
    grace_period: int
    """A running trial without a heartbeat for this long is failed and retried once."""
    outage_limit: int = 600
    """Seconds a search retries an unreachable database before it stops (:mod:`iasf_search.search.retrying_storage`)."""
    enqueue: tuple[str, ...] = ()
    """Architectures evaluated before the sampler's (:mod:`iasf_search.search.enqueue`): registered baseline names or arch.json paths."""
    proxies: tuple[str, ...] = ()
    """Zero-cost proxies recorded on every trial as ``proxy.<name>`` (:mod:`iasf_search.search.prescreen`)."""
    prescreen: Mapping[str, Any] | None = None
    """``{proxy, candidates, keep}``: score ``candidates`` sampled architectures with ``proxy``, train the best ``keep``."""


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: plain data (the loaded plugins live in a :class:`~iasf_search.session.Session`)."""

    file: str
    name: str
    plugins: tuple[str, ...]
    """The space file's ``plugins:`` modules."""
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
    description: str = ""
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Validated values of plugin-owned top-level sections (see ``iasf_register_space_sections``)."""
    constraints: tuple[Constraint, ...] = ()
    extra_plugins: tuple[str, ...] = ()
    """Plugin modules given beside the file (``--plugin``, ``plugins=``), loaded before the file's own."""
    autoload: bool = True
    """Whether installed entry-point plugins were loaded when the space was validated."""
    readouts: Mapping[str, Mapping[str, Range]] = field(default_factory=lambda: dict(DEFAULT_READOUTS))
    """``manifold.readouts``: the readouts an architecture may use, with their parameter ranges."""
    norms: Mapping[str, Mapping[str, Range]] = field(default_factory=lambda: dict(DEFAULT_NORMS))
    """``manifold.norms``: the norms a residual node may use, with their parameter ranges."""
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """``metrics.record``: the representation metrics measured on every trained trial, with their options."""
    metrics_batch: int = DEFAULT_METRICS_BATCH
    """``metrics.batch``: the validation samples (the split's first) the metrics are measured on."""
    metrics_default: bool = True
    """Whether ``metrics`` is the default set (the space file gave no ``metrics.record``)."""

    @property
    def max_epochs(self) -> int:
        """The most epochs a trial can train: the largest step a pruner sees."""
        r = self.training["epochs"]
        return int(r.high) if r.high is not None else int(max(r.values()))

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def resolved(self) -> dict[str, Any]:
        """The space with every default filled in, in space-file syntax (saved with the study)."""
        search = asdict(self.search)
        for key, default in (("proxies", ()), ("prescreen", None)):  # left out when unused: older studies resume without a warning
            if search[key] == default:
                del search[key]
        return {
            "name": self.name,
            "plugins": list(self.plugins),
            "task": {"dataset": self.dataset, "options": dict(self.dataset_options), "split": asdict(self.split)},
            "stem": _yaml_ranges(self.stem),
            "manifold": {
                "nodes": self.nodes.to_yaml(), "max_in_degree": self.max_in_degree, "lookback": self.lookback,
                "width": self.width.to_yaml(),
                "ops": {op: _yaml_ranges(ranges) for op, ranges in self.ops.items()},
                "fusions": {f: _yaml_ranges(ranges) for f, ranges in self.fusions.items()},
                # the defaults are left out, so that a study made before these were choices resumes without a warning
                **({"readouts": {k: _yaml_ranges(v) for k, v in self.readouts.items()}} if self.readouts != DEFAULT_READOUTS else {}),
                **({"norms": {k: _yaml_ranges(v) for k, v in self.norms.items()}} if self.norms != DEFAULT_NORMS else {}),
            },
            "training": _yaml_ranges(self.training),
            "auxiliary": {a: _yaml_ranges(ranges) for a, ranges in self.auxiliary.items()},
            "costs": {c: dict(options) for c, options in self.costs.items()},
            "objectives": [{"metric": o.metric, "direction": o.direction} for o in self.objectives],
            "search": {k: dict(v) if isinstance(v, Mapping) else list(v) if isinstance(v, tuple) else v
                       for k, v in search.items()},
            **{name: dict(values) for name, values in self.sections.items()},
            **({"constraints": {c.name: c.bounds() for c in self.constraints}} if self.constraints else {}),
            # the default is left out, so that a study made before metrics were recorded resumes without a warning
            **({} if self.metrics_default and self.metrics_batch == DEFAULT_METRICS_BATCH else
               {"metrics": {"batch": self.metrics_batch, "record": {m: dict(o) for m, o in self.metrics.items()}}}),
        }


def _yaml_ranges(ranges: Mapping[str, Range]) -> dict[str, Any]:
    return {k: r.to_yaml() for k, r in ranges.items()}
