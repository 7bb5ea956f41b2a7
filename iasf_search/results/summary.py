"""What a search prints when it ends, and what ``iasf-search best`` prints: the best trial (its
scores, architecture table and training settings) or the Pareto set, the classic baselines beside
it, why trials stopped early, and where the study lives."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import networkx as nx
import optuna
from optuna.trial import FrozenTrial, TrialState

from iasf_search.graph import DEFAULT_NORM, DEFAULT_READOUT, INPUT, OUTPUT, hidden_nodes, inputs_of, is_default
from iasf_search.results.access import finished_trials, trial_architecture
from iasf_search.results.baselines import comparison
from iasf_search.results.records import (
    ARCH_HASH,
    ARCHITECTURE,
    FAILURE_REASON,
    FOLD_VAL_ACCURACIES,
    PARAMS,
    REUSED_FROM,
    SUMMARY,
    TEST_ACCURACY,
    TRAIN_CONFIG,
    TRAIN_SECONDS,
    VAL_ACCURACY,
    VAL_ACCURACY_STD,
    record,
    study_data,
    study_space,
)
from iasf_search.search.storage import safe_url

if TYPE_CHECKING:
    from iasf_search.search.study import SearchResult

FOLDS_ADVICE_BELOW = 100
"""A search on a validation split smaller than this (and without cross-validation) ends with the advice to
use ``split: {folds: 5}``: one sample then moves validation accuracy by more than 1%."""


def print_summary(result: SearchResult) -> None:
    """After a search: the best trial or Pareto set, why trials stopped early, the study's counts and how to open it."""
    study = result.study
    finished = len(finished_trials(study))
    print()
    best = result.best
    if not best:
        print("no trial completed yet")
    for t in best[:1] if len(study.directions) == 1 else []:
        print_trial(t, heading="best trial")
    if len(study.directions) > 1:
        print_pareto(study, best)
        if result.pareto_plot is not None:
            print(f"Pareto plot: {result.pareto_plot}")
    print_baselines(study, best)
    advice = folds_advice(study)
    if advice:
        print(advice)
    stops = stop_reasons(study)
    if stops:
        print("stopped early or failed: " + "; ".join(f"{n} x {reason}" for reason, n in stops.most_common()))
    print(f"study '{study.study_name}': {finished}/{result.target} finished trials, "
          f"{result.new_trials} run now in {result.seconds:.0f} s; storage {safe_url(result.storage_url)}")
    print(f"open it: {result.dashboard_command}")


def print_baselines(study: optuna.Study, best: list[FrozenTrial]) -> None:
    """The classic baselines recorded on the study (:mod:`.baselines`) and whether the best trial (of a Pareto
    set: the one with the highest validation accuracy) beats them on test accuracy; nothing when none are recorded."""
    line = comparison(study, best)
    if line is not None:
        print(line)


def folds_advice(study: optuna.Study) -> str | None:
    """The advice to cross-validate when the study's validation split (its ``data`` attribute) holds fewer than
    :data:`FOLDS_ADVICE_BELOW` samples and it does not cross-validate already; else None."""
    data = study_data(study)
    val, train = data.get("val"), data.get("train")
    if "cross_validation" in data or not isinstance(val, int) or not isinstance(train, int) or not 0 < val < FOLDS_ADVICE_BELOW:
        return None
    return (f"note: the validation split holds only {val} samples, so validation accuracy moves in steps of {1 / val:.3g} "
            f"and the search partly selects on noise; cross-validate over all {train + val} training and validation "
            f"samples instead with `split: {{folds: 5}}` under `task:` in the space file")


def stop_reasons(study: optuna.Study) -> Counter[str]:
    """How many trials failed or were stopped for each kind of reason (pruning by the pruner aside):
    the reason's text up to its first colon (``diverged``, ``time limit``, ``surplus``, an exception
    type, ``interrupted``), or ``worker lost`` for a trial failed by the heartbeat check."""
    return count_stop_reasons(study.get_trials(deepcopy=False, states=(TrialState.FAIL, TrialState.PRUNED)))


def count_stop_reasons(trials: Sequence[FrozenTrial]) -> Counter[str]:
    """:func:`stop_reasons` of these trials (those not failed or pruned are not counted)."""
    counts: Counter[str] = Counter()
    for t in trials:
        if t.state not in (TrialState.FAIL, TrialState.PRUNED):
            continue
        reason = t.user_attrs.get(FAILURE_REASON)
        if reason is None:
            if t.state == TrialState.FAIL:
                counts["worker lost (no heartbeat; retried)"] += 1
            continue
        counts[reason.split(":")[0][:60]] += 1
    return counts


def print_trial(t: FrozenTrial, heading: str) -> None:
    """The trial's scores, its architecture node by node (op, settings, inputs) and its training settings."""
    a = t.user_attrs
    reused = f" (result reused from #{a[REUSED_FROM]})" if REUSED_FROM in a else ""
    folds = a.get(FOLD_VAL_ACCURACIES) or []
    spread = f" ± {a.get(VAL_ACCURACY_STD, float('nan')):.4f} over {len(folds)} folds" if folds else ""
    print(f"{heading} #{t.number}: validation accuracy {a.get(VAL_ACCURACY, float('nan')):.4f}{spread}, "
          f"test accuracy {a.get(TEST_ACCURACY, float('nan')):.4f}, {a.get(PARAMS, 0):,} parameters, "
          f"trained {a.get(TRAIN_SECONDS, 0):.1f} s{reused}")
    print(f"  architecture {a.get(ARCH_HASH, '?')}: {a.get(SUMMARY, '')}")
    if record(t, ARCHITECTURE) is not None:
        print_architecture(trial_architecture(t))
    print(f"  training: {json.dumps(record(t, TRAIN_CONFIG, {}), sort_keys=True)}")


def print_architecture(graph: nx.DiGraph) -> None:
    """One line per node, input to output: name, op, settings, and the nodes it reads (with their fusion)."""
    rows = [(INPUT, graph.nodes[INPUT]["op"], graph.nodes[INPUT]["config"], [])]
    rows += [(n, graph.nodes[n]["op"], graph.nodes[n]["config"], inputs_of(graph, n)) for n in hidden_nodes(graph)]
    out = graph.nodes[OUTPUT]
    readout = {} if is_default(out, "readout", DEFAULT_READOUT) else {"readout": out.get("readout") or DEFAULT_READOUT,
                                                                       **(out.get("readout_config") or {})}
    rows.append((OUTPUT, "head", readout, inputs_of(graph, OUTPUT)))
    for name, op, config, ins in rows:
        node = graph.nodes[name]
        fusion = f" fused by {node['fusion']}" if node.get("fusion") else ""
        src = f"  <- {', '.join(ins)}{fusion}" if ins else ""
        if node.get("role") == "node" and not is_default(node, "norm", DEFAULT_NORM):
            src += f"  norm {node.get('norm') or DEFAULT_NORM}" + (f" {json.dumps(node['norm_config'], sort_keys=True)}"
                                                                   if node.get("norm_config") else "")
        print(f"    {name:<7}{op:<10}{json.dumps(config, sort_keys=True):<48}{src}")


def print_pareto(study: optuna.Study, best: list[FrozenTrial]) -> None:
    """The Pareto set as a table: each trial's objective values, test accuracy and architecture summary."""
    space = study_space(study)
    names = [o["metric"] for o in space.get("objectives", [])] or [f"objective {i}" for i in range(len(study.directions))]
    print(f"Pareto set ({len(best)} trials):")
    print("  trial  " + "  ".join(f"{n:>12}" for n in names) + "  test acc  architecture")
    for t in best:
        vals = "  ".join(f"{v:>12.4g}" for v in t.values)
        print(f"  #{t.number:<5} {vals}  {t.user_attrs.get(TEST_ACCURACY, float('nan')):8.4f}  {t.user_attrs.get(SUMMARY, '')}")
