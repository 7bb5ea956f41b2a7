"""Architectures evaluated first (``search.enqueue``): so a search never ends worse than the baseline a
user would have tried by hand.

An entry names a registered baseline architecture (``transformer``, ``cnn``: see
``plugins/baseline_architectures.py``; plugins add more through ``iasf_register_architectures``) or
the ``arch.json`` of an export (or the export's folder). Each becomes the Optuna parameters that make
the space's own sampling (:func:`iasf_search.graph.sample_graph`) produce exactly that architecture,
found by replaying the sampling against the graph: a value the space does not offer, or an
architecture the sampling cannot produce (more nodes than ``manifold.nodes`` allows, an input beyond
``lookback``, ...), is an error at load time naming the entry. The parameters are queued with
Optuna's ``enqueue_trial`` (once: a resumed study skips entries already queued or run), so the first
trials of the search evaluate them; the sampler fills in what an entry leaves open.

Training settings: an export's ``model.json`` gives those the space searches; a registered
baseline uses each searched setting's middle (the geometric middle of a log range, the first of a
list). Before anything is queued, each entry's model is built for the task and checked against the
space's constraints (:func:`check_feasible`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import optuna
import torch

from iasf_search.build import build_model
from iasf_search.errors import BadInput
from iasf_search.graph import (
    DEFAULT_NORM,
    DEFAULT_READOUT,
    INPUT,
    OUTPUT,
    GraphError,
    from_json,
    hidden_nodes,
    inputs_of,
    node_name,
    same_architecture,
    sample_graph,
)
from iasf_search.params import Range
from iasf_search.results.records import ENQUEUED
from iasf_search.trial.cost_measurement import violations

if TYPE_CHECKING:
    from iasf_search.components import TaskData
    from iasf_search.plugin_manager import Components
    from iasf_search.space.spec import SearchSpace


class NotInSpace(ValueError):
    """An architecture (or one of its settings) that the space cannot sample."""


@dataclass(frozen=True)
class Enqueued:
    """One ``search.enqueue`` entry: its label (name or path), its graph and the Optuna parameters that sample it."""

    label: str
    graph: nx.DiGraph
    params: dict[str, Any] = field(default_factory=dict)


class _Replay:
    """Stands in for an Optuna trial: answers each ``suggest_*`` from ``params`` after checking the value
    lies in the distribution asked for, and keeps what was asked in ``used``."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params, self.used = dict(params), {}

    def _answer(self, name: str, ok: bool, value: Any, offered: str) -> Any:
        if not ok:
            raise NotInSpace(f"{name} = {value!r} is not offered (the space allows {offered})")
        self.used[name] = value
        return value

    def _value(self, name: str) -> Any:
        if name not in self.params:
            raise NotInSpace(f"the space samples {name}, which the architecture does not set")
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self._value(name)
        return self._answer(name, value in list(choices), value, f"{list(choices)}")

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        value = self._value(name)
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high and (value - low) % step == 0
        return self._answer(name, ok, value, f"{low}..{high}" + (f" in steps of {step}" if step != 1 else ""))

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        value = self._value(name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
        return float(self._answer(name, ok, value, f"{low:g}..{high:g}"))


def graph_params(graph: nx.DiGraph, space: SearchSpace, components: Components) -> dict[str, Any]:
    """The Optuna parameters with which ``space``'s sampling produces ``graph`` exactly (only those it asks for).

    :raises NotInSpace: saying what the space cannot produce.
    """
    graph = nx.relabel_nodes(graph, {n: node_name(i) for i, n in enumerate(hidden_nodes(graph))})
    params: dict[str, Any] = {"arch.width": graph.graph.get("width"), "arch.nodes": len(hidden_nodes(graph))}
    params.update({f"stem.{k}": v for k, v in graph.nodes[INPUT].get("config", {}).items()})
    for n in [*hidden_nodes(graph), OUTPUT]:
        attrs, sources = graph.nodes[n], inputs_of(graph, n)
        if n != OUTPUT:
            params[f"{n}.in0"] = sources[0]
            params.update({f"{n}.in.{src}": src in sources[1:] for src in [INPUT, *(node_name(j) for j in range(int(n[1:])))]})
            params[f"{n}.op"] = attrs["op"]
            params.update({f"{n}.{attrs['op']}.{k}": v for k, v in attrs.get("config", {}).items()})
        if attrs.get("fusion"):
            params[f"{n}.fusion"] = attrs["fusion"]
            params.update({f"{n}.{attrs['fusion']}.{k}": v for k, v in attrs.get("fusion_config", {}).items()})
        kind, default = ("readout", DEFAULT_READOUT) if n == OUTPUT else ("norm", DEFAULT_NORM)
        chosen = attrs.get(kind) or default  # absent: the default (asked for only when the space offers others)
        params[f"{n}.{kind}"] = chosen
        params.update({f"{n}.{chosen}.{k}": v for k, v in (attrs.get(f"{kind}_config") or {}).items()})
    replay = _Replay(params)
    try:
        sampled = sample_graph(replay, space, components)  # type: ignore[arg-type]
    except GraphError as exc:
        raise NotInSpace(str(exc)) from None
    if not same_architecture(graph, sampled):
        raise NotInSpace(_difference(graph, sampled))
    return replay.used


def _difference(wanted: nx.DiGraph, sampled: nx.DiGraph) -> str:
    """What the space's sampling produced differently from ``wanted`` (the first difference found)."""
    if wanted.graph.get("width") != sampled.graph.get("width"):
        return f"its width {wanted.graph.get('width')} is not the space's {sampled.graph.get('width')}"
    for n in [INPUT, *hidden_nodes(wanted), OUTPUT]:
        if n not in sampled:
            return f"the space's sampling makes no node {n}"
        for key in ("op", "config", "fusion", "fusion_config", "norm", "norm_config", "readout", "readout_config"):
            if wanted.nodes[n].get(key) != sampled.nodes[n].get(key):
                return f"{n}: its {key} {wanted.nodes[n].get(key)!r} comes out of the space as {sampled.nodes[n].get(key)!r}"
        if inputs_of(wanted, n) != inputs_of(sampled, n):
            return (f"{n} reads {inputs_of(wanted, n)}, which the space cannot sample in that order (it offers inputs "
                    f"within manifold.lookback, at most manifold.max_in_degree, extra inputs the most recent first)")
    return "the space's sampling produces a different graph"


def training_params(config: Mapping[str, Any], space: SearchSpace) -> dict[str, Any]:
    """``train.<key>`` parameters for the settings ``space`` searches, from a trial's training ``config``
    (``model.json``); settings the config lacks are left to the sampler.

    :raises NotInSpace: a value outside the space's range.
    """
    replay = _Replay({f"train.{k}": v for k, v in config.items()})
    for key, rng in space.training.items():
        if not rng.is_fixed and f"train.{key}" in replay.params:
            rng.suggest(replay, f"train.{key}")  # type: ignore[arg-type]
    return replay.used


def middle_training_params(space: SearchSpace) -> dict[str, Any]:
    """``train.<key>`` for every setting ``space`` searches, at its middle (see :func:`middle`)."""
    return {f"train.{k}": middle(r) for k, r in space.training.items() if not r.is_fixed}


def middle(rng: Range) -> Any:
    """A range's middle: its first choice, the middle of an int range, or of a float range (geometric
    when the range is logarithmic), on its step."""
    if rng.is_fixed:
        return rng.fixed
    if rng.choices is not None:
        return rng.choices[0]
    low, high = float(rng.low), float(rng.high)
    mid = math.sqrt(low * high) if rng.log else (low + high) / 2
    if rng.step:
        mid = low + round((mid - low) / float(rng.step)) * float(rng.step)
    return int(round(mid)) if rng.is_int else mid


def resolve(space: SearchSpace, components: Components) -> list[Enqueued]:
    """Every ``search.enqueue`` entry as graph and parameters, in order.

    :raises BadInput: naming the space file, ``search.enqueue[i]`` and what is wrong.
    """
    out = []
    for i, entry in enumerate(space.search.enqueue):
        key = f"{space.file}: search.enqueue[{i}]"
        try:
            graph, training = _entry_graph(entry, space, components)
            out.append(Enqueued(entry, graph, {**graph_params(graph, space, components), **training}))
        except NotInSpace as exc:
            raise BadInput(f"{key}: {entry} is not in the space: {exc}; remove it or widen the space") from None
        except ValueError as exc:
            raise BadInput(f"{key}: {entry}: {exc}") from None
    return out


def _entry_graph(entry: str, space: SearchSpace, components: Components) -> tuple[nx.DiGraph, dict[str, Any]]:
    """The graph and training parameters of one entry: a registered baseline architecture or an export's arch.json."""
    if entry in components.architectures:
        return components.architectures.get(entry).graph(space, components), middle_training_params(space)
    path = Path(entry).expanduser()
    if path.is_dir():
        path = path / "arch.json"
    if path.suffix != ".json":
        known = ", ".join(components.architectures) or "none"
        raise ValueError(f"neither a registered baseline architecture ({known}) nor an arch.json file")
    if not path.is_file():
        raise ValueError(f"no such file {path}; give the arch.json of an export (or its folder), or one of: "
                         f"{', '.join(components.architectures)}")
    try:
        graph = from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, GraphError) as exc:
        raise ValueError(f"{path} is not an architecture graph ({type(exc).__name__}: {exc})") from None
    return graph, training_params(_export_training(path.parent / "model.json"), space)


def _export_training(info: Path) -> dict[str, Any]:
    """The ``train_config`` an export's ``model.json`` records (empty without the file).

    :raises ValueError: the file is not a JSON object, or its ``train_config`` is not one.
    """
    if not info.is_file():
        return {}
    try:
        doc = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{info} is not readable JSON ({type(exc).__name__}: {exc})") from None
    config = doc.get("train_config", {}) if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise ValueError(f"{info} is not an export's model.json (a JSON object whose train_config is an object); "
                         f"remove it or export the trial again")
    return config


def check_feasible(space: SearchSpace, components: Components, entries: Sequence[Enqueued], data: TaskData,
                   device: torch.device) -> None:
    """Build each entry's model for ``data`` and measure the costs the space constrains, on the cost
    models' usual batch of validation samples.

    :raises BadInput: naming the entry, when its model does not build for the data or breaks a constraint.
    """
    for i, entry in enumerate(entries):
        key = f"{space.file}: search.enqueue[{i}]"
        try:
            torch.manual_seed(0)
            model = build_model(entry.graph, components, data.sample_shape, data.num_classes, padded=data.padded).to(device).eval()
        except (ValueError, RuntimeError) as exc:
            raise BadInput(f"{key}: {entry.label} does not build for the data ({type(exc).__name__}: {exc})") from None
        broken = violations(model, space, components, data.x_val, device)
        if broken:
            raise BadInput(f"{key}: {entry.label} is infeasible: {'; '.join(broken)} (constraints); "
                           f"remove it from search.enqueue or relax the constraint")


def enqueue(study: optuna.Study, entries: Sequence[Enqueued]) -> None:
    """Queue each entry as a trial (``study.enqueue_trial``), unless the study already holds one with the same parameters."""
    for entry in entries:
        study.enqueue_trial(entry.params, user_attrs={ENQUEUED: entry.label}, skip_if_exists=True)
