"""What optuna-dashboard shows beside each trial: a note, the architecture diagram, and for the best
trials the attention heat maps and a checkpoint.

Through the life-cycle hooks, like any plugin:

* ``iasf_study_start`` names the objectives for the dashboard (``study.set_metric_names``);
* ``iasf_trial_built`` (every trial, before training) attaches ``architecture.svg`` and a markdown
  note (optuna-dashboard's notes) with the architecture table and its costs;
* ``iasf_trial_trained`` (trials that trained to the end) adds the metrics to the note and, when the
  trial is the best so far (one objective) or not dominated by any finished trial (several),
  attaches ``attention.png`` (seed 002 §4.2: each node's map divided by its maximum) and
  ``model.safetensors`` (the trained weights, training helpers excluded).

The space's ``artifacts:`` section switches each part (see its ``params``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx
import optuna
import safetensors.torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import SpaceSection, TaskData
from iasf_search.graph import INPUT, OUTPUT, from_json, hidden_nodes, inputs_of
from iasf_search.params import Param
from iasf_search.results.access import feasible, tie_break
from iasf_search.results.artifacts import CHECKPOINT, DIAGRAM, HEATMAPS, upload_bytes
from iasf_search.results.markdown import number, table_row
from iasf_search.results.records import (
    ARCH_HASH,
    ARCHITECTURE,
    AUX_PREFIX,
    CONSTRAINTS,
    COST_PREFIX,
    EPOCHS,
    METRIC_DETAILS_PREFIX,
    METRIC_PREFIX,
    PARAMS,
    REUSED_FROM,
    SUMMARY,
    TEST_ACCURACY,
    TRAIN_CONFIG,
    TRAIN_SECONDS,
    record,
)
from iasf_search.space import SearchSpace

if TYPE_CHECKING:
    from iasf_search.optuna_internals import ArtifactStore
    from iasf_search.plugin_manager import Components

WHICH = ("best", "all", "none")


class ArtifactSettings(SpaceSection):
    name = "artifacts"
    description = "which files and notes each trial gets in the dashboard"
    params = {
        "diagram": Param(True, bool, help=f"attach {DIAGRAM} to every trial"),
        "notes": Param(True, bool, help="write a markdown note (architecture, costs, metrics) on every trial"),
        "checkpoints": Param("best", str, choices=WHICH,
                             help=f"attach {CHECKPOINT}: best (best so far / Pareto-optimal when it finished), all, none"),
        "heatmaps": Param("best", str, choices=WHICH, help=f"attach {HEATMAPS}: best, all or none"),
        "heatmap_samples": Param(64, int, low=1, help="validation samples the attention maps are averaged over"),
    }


def objective_names(space: SearchSpace) -> list[str]:
    """``val accuracy``, ``val loss`` or the cost's name, per objective."""
    return [f"val {o.metric}" if o.metric in ("accuracy", "loss") else o.metric for o in space.objectives]


def _metric(name: str, value: Any) -> str:
    """Accuracies and losses with 4 decimals (``0.9250``), anything else (costs) as :func:`_number`."""
    if isinstance(value, int | float) and not isinstance(value, bool) and ("accuracy" in name or "loss" in name):
        return f"{value:.4f}"
    return number(value)


def _value(value: Any) -> str:
    """A configuration value as written in a space file: ``true``, ``0.003``, ``full,local``."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(_value(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def key_values(config: Mapping[str, Any], first: Sequence[str] = (), *, sort: bool = True) -> str:
    """``heads=2 pattern=local window=3``: the keys in ``first`` first, then the others (sorted, or in
    their order when not ``sort``)."""
    rest = [k for k in config if k not in first]
    keys = [k for k in first if k in config] + (sorted(rest) if sort else rest)
    return " ".join(f"{k}={_value(config[k])}" for k in keys)


TRAINING_FIRST = ("optimizer", "lr", "epochs", "batch_size")


def trial_note(trial: optuna.Trial, graph: nx.DiGraph, space: SearchSpace, components: Components,
               values: Sequence[float] | None = None) -> str:
    """The markdown note: heading, node table, costs, training settings and (after training) metrics.

    optuna-dashboard draws tables without borders and with almost no padding, so the cells stay
    short and left-aligned (configurations as ``key=value``, a node's inputs and fusion in one cell)
    and end with an em space (:func:`table_row`).
    """
    from iasf_search.results.figures import node_labels

    attrs = trial.user_attrs
    labels = node_labels(graph, components)
    lines = [f"## Trial {trial.number}: {attrs.get(SUMMARY, '')}", "",
             f"architecture `{attrs.get(ARCH_HASH, '?')}`, width {graph.graph.get('width')}, "
             f"{number(attrs.get(PARAMS, 0))} parameters", "",
             table_row(("node", "op", "label", "configuration", "reads")), "|:---|:---|:---|:---|:---|"]
    for n in [INPUT, *hidden_nodes(graph), OUTPUT]:
        node = graph.nodes[n]
        ins = inputs_of(graph, n)
        reads = " + ".join(ins)
        if len(ins) > 1 and node.get("fusion"):
            reads += f" ({' '.join(filter(None, (node['fusion'], key_values(node.get('fusion_config') or {}))))})"
        label = "" if n == OUTPUT else labels.get(n, "")
        cells = (n, node.get("op", "head"), label, key_values(node.get("config") or {}), reads)
        lines.append(table_row(cells))
    costs = {k[len(COST_PREFIX):]: v for k, v in attrs.items() if k.startswith(COST_PREFIX)}
    if costs:
        lines += ["", "**Costs:** " + ", ".join(f"{k} {number(v)}" for k, v in sorted(costs.items()))]
    constraints = attrs.get(CONSTRAINTS) or {}
    if constraints:
        shown = [_constraint(k, c) for k, c in constraints.items()]
        verdict = ("feasible" if all(c["feasible"] for c in constraints.values()) else
                   "**infeasible**" if values is not None else "**infeasible — not trained**")
        lines += ["", f"**Constraints:** {', '.join(shown)} — {verdict}"]
    lines += ["", f"**Training:** {key_values(record(trial, TRAIN_CONFIG, {}), TRAINING_FIRST, sort=False)}"]
    if REUSED_FROM in attrs:
        lines += ["", f"Result reused from the identical trial #{attrs[REUSED_FROM]} (not trained again)."]
    if values is not None:
        parts = [f"{name} {_metric(name, v)}" for name, v in zip(objective_names(space), values, strict=True)]
        if TEST_ACCURACY in attrs:
            parts.append(f"test accuracy {_metric('accuracy', attrs[TEST_ACCURACY])}")
        parts.append(f"{attrs.get(EPOCHS, '?')} epochs in {attrs.get(TRAIN_SECONDS, 0.0):.1f} s")
        lines += ["", "**Result:** " + "; ".join(parts)]
        lines += metrics_table(attrs)
        aux = {k: v for k, v in attrs.items() if k.startswith(AUX_PREFIX)}
        for name, measured in sorted(aux.items()):
            shown = ", ".join(f"{k} {number(v)}" for k, v in measured.items()) if isinstance(measured, Mapping) else number(measured)
            lines.append(f"- {name}: {shown}")
    return "\n".join(lines) + "\n"


def dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[int]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and better somewhere (``signs``: +1 maximise, -1 minimise)."""
    return all(s * x >= s * y for s, x, y in zip(signs, a, b, strict=True)) and any(
        s * x > s * y for s, x, y in zip(signs, a, b, strict=True))


def is_front_runner(study: optuna.Study, values: Sequence[float], trial: optuna.Trial | None = None) -> bool:
    """One objective: better than every completed trial, or level with the best of them and ahead of each level
    one by :func:`~iasf_search.results.access.tie_break` (``trial``'s validation loss; without ``trial``, a tie
    is not ahead), so that the trial :func:`~iasf_search.results.access.best_trials` names was one when it
    finished; several: dominated by none. Under constraints, as ``best_trials`` picks: a ``trial`` that breaks one is
    no front runner, and only completed trials that meet every constraint count."""
    if trial is not None and not all(c.get("feasible", True) for c in (trial.user_attrs.get(CONSTRAINTS) or {}).values()):
        return False
    signs = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in study.directions]
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if feasible(t)]
    if len(signs) == 1:
        s = signs[0]
        return all(s * values[0] > s * t.values[0]
                   or (trial is not None and values[0] == t.values[0] and tie_break(trial) < tie_break(t)) for t in done)
    return not any(dominates(t.values, values, signs) for t in done)


def checkpoint_bytes(model: nn.Module, metadata: Mapping[str, str]) -> bytes:
    """The model's state dict as safetensors (CPU, contiguous), with string ``metadata``."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return safetensors.torch.save(tensors, metadata=dict(metadata))


@hookimpl
def iasf_register_space_sections(registry) -> None:
    registry.register(ArtifactSettings())


@hookimpl
def iasf_study_start(study: optuna.Study, space: SearchSpace, target: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(objective_names(space))  # the dashboard labels the objectives with them


@hookimpl
def iasf_trial_built(trial: optuna.Trial, graph: nx.DiGraph, space: SearchSpace, components: Components,
                     artifacts: ArtifactStore | None) -> None:
    from iasf_search.results.dashboard_page import optuna_dashboard_api  # plotly and optuna-dashboard load when first used
    from iasf_search.results.figures import architecture_figure, node_labels, save

    save_note = optuna_dashboard_api().save_note

    settings = space.sections["artifacts"]
    if settings["notes"]:
        save_note(trial, trial_note(trial, graph, space, components))
    if settings["diagram"] and artifacts is not None:
        fig = architecture_figure(graph, node_labels(graph, components).__getitem__,
                                  title=f"trial {trial.number} · {trial.user_attrs.get(ARCH_HASH, '')[:8]}")
        upload_bytes(trial, artifacts, DIAGRAM, save(fig, "svg"), "image/svg+xml")


@hookimpl
def iasf_trial_trained(trial: optuna.Trial, model: nn.Module, data: TaskData, space: SearchSpace, components: Components,
                       values: list[float], artifacts: ArtifactStore | None) -> None:
    from iasf_search.results.attention_maps import attention_maps
    from iasf_search.results.dashboard_page import optuna_dashboard_api
    from iasf_search.results.figures import heatmap_figure, node_labels, save

    save_note = optuna_dashboard_api().save_note

    settings = space.sections["artifacts"]
    graph = from_json(record(trial, ARCHITECTURE))
    if settings["notes"]:
        save_note(trial, trial_note(trial, graph, space, components, values))
    if artifacts is None:
        return
    front = is_front_runner(trial.study, values, trial)
    if settings["heatmaps"] == "all" or (settings["heatmaps"] == "best" and front):
        samples = data.x_val[:settings["heatmap_samples"]]
        maps = attention_maps(model, samples)
        if maps:
            fig = heatmap_figure(maps, node_labels(graph, components),
                                 title=f"trial {trial.number}: attention A / max A, mean over {len(samples)} validation samples")
            upload_bytes(trial, artifacts, HEATMAPS, save(fig, "png"), "image/png")
    if settings["checkpoints"] == "all" or (settings["checkpoints"] == "best" and front):
        meta = {"format": "iasf-search", "trial": str(trial.number), "arch_hash": trial.user_attrs.get(ARCH_HASH, "")}
        upload_bytes(trial, artifacts, CHECKPOINT, checkpoint_bytes(model, meta), "application/octet-stream")


def _constraint(name: str, c: Mapping[str, Any]) -> str:
    """``"params 1.2e+05 (within max 2e+05)"``: one entry of the ``constraints`` user attribute."""
    value = "not measured" if c.get("value") is None else number(c["value"])
    bounds = " and ".join(f"{k} {number(c[k])}" for k in ("min", "max") if c.get(k) is not None)
    return f"{name} {value} ({'within' if c['feasible'] else 'outside'} {bounds})"


def metrics_table(attrs: Mapping[str, Any]) -> list[str]:
    """The trial's representation metrics as note lines: one line of the recorded numbers, then a table of
    their per-node values (rows: the stem, each node with its level, the head's input), when any were recorded."""
    numbers = {k[len(METRIC_PREFIX):]: v for k, v in sorted(attrs.items()) if k.startswith(METRIC_PREFIX)}
    if not numbers:
        return []
    details = {name: attrs.get(METRIC_DETAILS_PREFIX + name) or {} for name in numbers}
    batch = next((d["batch"] for d in details.values() if "batch" in d), None)
    lines = ["", f"**Representation metrics** ({batch} validation samples): "
             + ", ".join(f"{k} {number(v)}" for k, v in numbers.items())]
    per_node = {name: d["per_node"] for name, d in details.items() if d.get("per_node")}
    if per_node:
        levels: dict[str, Any] = {}
        for d in details.values():
            levels.update(d.get("level") or {})
        nodes = [n for n in levels if any(n in values for values in per_node.values())]
        lines += ["", table_row(("node", "level", *per_node)), "|:---|---:|" + "---:|" * len(per_node)]
        lines += [table_row((n, str(levels[n]), *(number(v[n]) if n in v else "" for v in per_node.values()))) for n in nodes]
    return lines
