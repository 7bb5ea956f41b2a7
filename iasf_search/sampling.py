"""What one trial samples from a space: the architecture (:func:`iasf_search.graph.sample_graph`), the
training settings and the auxiliary objectives' settings, all through Optuna's define-by-run API
(:func:`sample_trial`); and the one-line description of a sampled architecture (:func:`describe_graph`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import networkx as nx
import optuna

from iasf_search import graph as arch

if TYPE_CHECKING:
    from iasf_search.plugin_manager import Components
    from iasf_search.space.spec import SearchSpace


def describe_graph(graph: nx.DiGraph, comps: Components) -> str:
    """One-line summary of an architecture using each component's ``describe``."""
    stem = graph.nodes[arch.INPUT]
    head = comps.stems.get(stem["op"]).describe(stem["config"])
    return f"{head} " + arch.summary(graph, lambda op, cfg: comps.ops.get(op).describe(cfg),
                                     describe_norm=lambda norm, cfg: comps.norms.get(norm).describe(cfg),
                                     describe_readout=lambda readout, cfg: comps.readouts.get(readout).describe(cfg))


def sample_trial(trial: optuna.Trial | Any, space: SearchSpace,
                 components: Components) -> tuple[nx.DiGraph, dict[str, Any], dict[str, Any]]:
    """Everything one trial samples from ``space``: ``(architecture, training settings, auxiliary
    objectives' settings)``; with auxiliary objectives the training settings hold them too, under
    ``auxiliary``.

    The one sampling code of the engine: the objective runs it on the Optuna trial, and samplers that
    build a whole proposal ahead (the ``evolution`` sampler) run it on an object with the trial's
    ``suggest_categorical``, ``suggest_int`` and ``suggest_float``, so both ask the same parameters
    (names, distributions, conditions) in the same order. Training settings are ``train.<key>``,
    auxiliary ones ``aux.<objective>.<param>``; the architecture's: :func:`iasf_search.graph.sample_graph`.
    """
    graph = arch.sample_graph(trial, space, components)
    train_config = {k: r.suggest(trial, f"train.{k}") for k, r in space.training.items()}
    aux_config = {name: arch.sample_config(trial, components.aux_objectives.get(name), ranges, f"aux.{name}")
                  for name, ranges in space.auxiliary.items()}
    if aux_config:
        train_config["auxiliary"] = aux_config
    return graph, train_config, aux_config
