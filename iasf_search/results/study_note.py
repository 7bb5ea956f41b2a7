"""The study's note on its optuna-dashboard page (markdown): what was searched, the baselines, the engine's pick
(and why the page's "Best Trial" box may name another), the best architectures side by side, how trials ended,
the search's health and the command that resumes it.

It is drawn from a :class:`~iasf_search.results.study_snapshot.StudySnapshot` and holds no wall-clock time: two
writers that read the same study write the same note.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from iasf_search.optuna_internals import storage_of
from iasf_search.results.access import feasible, finite_number, objective_names, tie_break
from iasf_search.results.baselines import LABELS, comparison, recorded_baselines
from iasf_search.results.markdown import number, table_row
from iasf_search.results.records import (
    COST_PREFIX,
    PARAMS,
    PRUNED_AT_EPOCH,
    SUMMARY,
    TEST_ACCURACY,
    TRAIN_SECONDS,
    VAL_ACCURACY,
    VAL_LOSS,
    study_commands,
)
from iasf_search.results.study_snapshot import StudySnapshot
from iasf_search.results.summary import count_stop_reasons
from iasf_search.search.storage import safe_url

TOP = 5
"""Architectures the note's table shows, by default."""
COST_COLUMNS = (("params", "params"), ("flops", "FLOPs"), ("latency_ms", "latency ms"))
"""The recorded costs the best-architectures table shows (``cost.<name>``), when any trial recorded them."""
PAUSE = 300.0
"""Seconds with no trial running that count as a pause between runs, not as the search's time."""


def study_note(snap: StudySnapshot, *, top: int = TOP, storage_url: str | None = None) -> str:
    """The note's markdown: every section below, each left out when there is nothing to say yet."""
    study = snap.study
    lines = [f"## {study.study_name}: what the search found", "", *space_lines(snap.opened.space, snap.opened.data), ""]
    baselines = baseline_lines(study, snap.best)
    if baselines:
        lines += [*baselines, ""]
    lines += [*pick_lines(snap), "", *best_table(snap, top), "", *ending_lines(snap.trials), "", *health_lines(snap.trials)]
    resume = resume_line(study, storage_url)
    if resume:
        lines += ["", resume]
    finished = [t for t in snap.trials if t.state.is_finished()]
    lines += ["", f"_Written after trial #{max((t.number for t in finished), default=0)} finished "
                  f"({len(finished)} of {len(snap.trials)} trials finished); the plots on the study's main page are drawn "
                  f"from the same trials._"]
    return "\n".join(lines) + "\n"


def space_lines(space: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    """The space in two lines: the task and its data, then the architectures and how they are searched."""
    task = space.get("task") or {}
    shape = "x".join(str(s) for s in data.get("sample_shape", [])) or "?"
    folds = data.get("cross_validation")
    judged = (f"{folds['folds']}-fold cross-validation" + (f" x {folds['repeats']}" if folds.get("repeats", 1) > 1 else "")
              if folds else f"{number(data.get('val', '?'))} validation")
    sizes = f"{number(data.get('train', '?'))} train / {judged} / {number(data.get('test', '?'))} test samples"
    first = (f"**Task** {task.get('dataset', '?')}: {data.get('modality', '?')} samples of shape {shape}, "
             f"{data.get('num_classes', '?')} classes; {sizes}" + ("; padded series" if data.get("padded") else "") + ".")
    manifold = space.get("manifold") or {}
    nodes = manifold.get("nodes") or {}
    count = f"{nodes.get('low')}-{nodes.get('high')}" if isinstance(nodes, Mapping) else str(nodes)
    ops = ", ".join(manifold.get("ops") or {}) or "?"
    fusions = ", ".join(manifold.get("fusions") or {})
    search = space.get("search") or {}
    objectives = ", ".join(f"{o.get('direction', '?')} {o.get('metric', '?')}" for o in space.get("objectives") or [])
    constraints = space.get("constraints") or {}
    second = (f"**Space** {count} nodes of {ops}" + (f", fused by {fusions}" if fusions else "")
              + f", width {_width(manifold.get('width'))}; objective {objectives or '?'}"
              + (f" within {', '.join(constraints)}" if constraints else "")
              + f"; sampler {search.get('sampler', '?')}, pruner {search.get('pruner', '?')}.")
    return [first, "", second]


def _width(width: Any) -> str:
    if isinstance(width, Mapping):
        return f"{width.get('low')}-{width.get('high')}" if "low" in width else ", ".join(map(str, width.get("choices", [])))
    return ", ".join(map(str, width)) if isinstance(width, list) else str(width)


def baseline_lines(study: optuna.Study, best: Sequence[FrozenTrial]) -> list[str]:
    """The recorded classic baselines and whether the engine's pick beats them (the line ``best`` prints)."""
    baselines = recorded_baselines(study)
    if not baselines:
        return []
    shown = "; ".join(f"{LABELS.get(name, name)} validation {m['val_accuracy']:.4f}, test {m['test_accuracy']:.4f}"
                      for name, m in baselines.items())
    return [f"**Baselines** (fitted on the same splits): {shown}.", "", f"_{comparison(study, best)}_"]


def pick_lines(snap: StudySnapshot) -> list[str]:
    """The engine's pick, named as ``iasf-search best`` names it, and when Optuna's "Best Trial" box (on this page)
    names another trial, why."""
    study = snap.study
    if not snap.best:
        done = any(t.state == TrialState.COMPLETE for t in snap.trials)
        return ["**The engine's pick:** none yet" + (" (no complete trial meets the constraints)." if done else " (no trial completed).")]
    if len(study.directions) > 1:
        links = ", ".join(f"[#{t.number}]({snap.trial_url(t.number)})" for t in snap.best)
        return [f"**The engine's pick:** the Pareto set of {', '.join(objective_names(study))}: {links}. `iasf-search best` "
                f"lists it; `export` and `report` take the one with the highest validation accuracy, "
                f"[#{snap.ranked[0].number}]({snap.trial_url(snap.ranked[0].number)}), unless given `--trial N`."]
    pick = snap.best[0]
    lines = [f"**The engine's pick: [trial #{pick.number}]({snap.trial_url(pick.number)})** "
             f"({_scores(pick)}): the trial `iasf-search best`, `export` and `report` use."]
    optuna_best = _optuna_best(study)
    if optuna_best is not None and optuna_best.number != pick.number:
        lines += ["", f"The **Best Trial** box on this page shows #{optuna_best.number}: Optuna's best, the first trial to reach "
                      f"the best value. {_why_not(optuna_best, pick)}"]
    return lines


def _optuna_best(study: optuna.Study) -> FrozenTrial | None:
    """The trial optuna-dashboard's "Best Trial" box shows (the storage's best trial, constraints unread)."""
    try:
        storage = storage_of(study)
        return storage.get_best_trial(storage.get_study_id_from_name(study.study_name))
    except ValueError:
        return None


def _why_not(theirs: FrozenTrial, pick: FrozenTrial) -> str:
    if not feasible(theirs):
        broken = ", ".join(k for k, v in theirs.constraints.items() if v > 0)
        return f"It breaks the space's constraints ({broken}), so the engine does not pick it."
    if theirs.values == pick.values:
        loss, other = tie_break(pick)[0], tie_break(theirs)[0]
        return (f"The engine breaks the tie by the lower validation loss: #{pick.number} {loss:.4f} against "
                f"#{theirs.number} {other:.4f}.")
    return "The engine picks the best feasible trial by value, then by the lower validation loss."


def _scores(t: FrozenTrial) -> str:
    a = t.user_attrs
    parts = [f"validation accuracy {a[VAL_ACCURACY]:.4f}" if finite_number(a.get(VAL_ACCURACY)) is not None else "",
             f"test accuracy {a[TEST_ACCURACY]:.4f}" if finite_number(a.get(TEST_ACCURACY)) is not None else "",
             f"{number(a[PARAMS])} parameters" if PARAMS in a else ""]
    return ", ".join(p for p in parts if p)


def best_table(snap: StudySnapshot, top: int) -> list[str]:
    """The best ``top`` complete feasible trials in the engine's order: link, accuracies, recorded costs, architecture."""
    shown = snap.ranked[:top]
    if not shown:
        return []
    costs = [(key, label) for key, label in COST_COLUMNS if any(COST_PREFIX + key in t.user_attrs for t in snap.complete)]
    if not costs:
        costs = [(PARAMS, "params")]
    header = ["trial", "val acc", "test acc", *(label for _, label in costs), "val loss", "architecture"]
    lines = [f"### The best {len(shown)} architectures", "", table_row(header),
             "|:---|---:|---:|" + "---:|" * len(costs) + "---:|:---|"]
    for t in shown:
        a = t.user_attrs
        cells = [f"[#{t.number}]({snap.trial_url(t.number)})", _accuracy(a.get(VAL_ACCURACY)), _accuracy(a.get(TEST_ACCURACY)),
                 *(_cost(a, key) for key, _ in costs), _accuracy(a.get(VAL_LOSS)), f"`{a.get(SUMMARY, '')}`"]
        lines.append(table_row(cells))
    return lines


def _accuracy(value: Any) -> str:
    v = finite_number(value)
    return "" if v is None else f"{v:.4f}"


def _cost(attrs: Mapping[str, Any], key: str) -> str:
    value = attrs.get(COST_PREFIX + key, attrs.get(key) if key == PARAMS else None)
    v = finite_number(value)
    return "" if v is None else number(int(v) if float(v).is_integer() else v)


def ending_lines(trials: Sequence[FrozenTrial]) -> list[str]:
    """How the trials ended: complete (feasible or not), pruned by the epoch they were stopped after, failed or
    stopped early by reason, still running or waiting."""
    states = Counter(t.state for t in trials)
    parts = []
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        infeasible = sum(not feasible(t) for t in complete)
        parts.append(f"{len(complete)} complete" + (f" ({infeasible} break a constraint)" if infeasible else ""))
    pruned = [t for t in trials if t.state == TrialState.PRUNED and PRUNED_AT_EPOCH in t.user_attrs]
    if pruned:
        rungs = Counter(int(t.user_attrs[PRUNED_AT_EPOCH]) for t in pruned)
        parts.append(f"{len(pruned)} pruned (" + ", ".join(f"after epoch {e}: {n}" for e, n in sorted(rungs.items())) + ")")
    stops = count_stop_reasons(trials)
    if stops:
        parts.append("failed or stopped early: " + ", ".join(f"{n} {reason}" for reason, n in stops.most_common()))
    parts += [f"{states[s]} {s.name.lower()}" for s in (TrialState.RUNNING, TrialState.WAITING) if states[s]]
    return [f"**How trials ended:** {'; '.join(parts) if parts else 'no trial yet'}."]


def health_lines(trials: Sequence[FrozenTrial]) -> list[str]:
    """The search's pace: finished trials per minute of search, a complete and a pruned trial's median time, the
    share of a complete trial spent in its training loop, and the median idle gap between trials (the engine's
    bookkeeping, the sampler and this page among it)."""
    timed = [t for t in trials if t.state.is_finished() and t.datetime_start and t.datetime_complete]
    if not timed:
        return ["**Health:** no trial finished yet."]
    gaps = _gaps(timed)
    span = (max(t.datetime_complete for t in timed) - min(t.datetime_start for t in timed)).total_seconds()
    minutes = max((span - sum(g for g in gaps if g > PAUSE)) / 60, 1e-9)
    finished = [t for t in timed if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    parts = [f"{len(finished)} trials finished in {minutes:.1f} min of search ({len(finished) / minutes:.2f} per minute"
             + (f"; {sum(g > PAUSE for g in gaps)} pauses between runs left out" if any(g > PAUSE for g in gaps) else "") + ")"]
    for state, name in ((TrialState.COMPLETE, "complete"), (TrialState.PRUNED, "pruned")):
        seconds = [_seconds(t) for t in timed if t.state == state]
        if seconds:
            parts.append(f"a {name} trial takes {statistics.median(seconds):.1f} s (median)")
    trained = [(finite_number(t.user_attrs.get(TRAIN_SECONDS)), _seconds(t)) for t in timed if t.state == TrialState.COMPLETE]
    trained = [(a, b) for a, b in trained if a is not None and b > 0]
    if trained:
        share = sum(a for a, _ in trained) / sum(b for _, b in trained)
        share = min(share, 1.0)
        parts.append(f"engine overhead {100 * (1 - share):.0f}% of a complete trial's time (building, costs, evaluation, "
                     f"metrics, records), {100 * share:.0f}% in its training loop")
    gaps = [g for g in gaps if g <= PAUSE]
    if gaps:
        parts.append(f"{statistics.median(gaps):.2f} s from one trial's end to the next one's start (median)")
    return [f"**Health:** {'; '.join(parts)}."]


def _seconds(t: FrozenTrial) -> float:
    return (t.datetime_complete - t.datetime_start).total_seconds()


def _gaps(timed: Sequence[FrozenTrial]) -> list[float]:
    """Seconds from each trial's start back to the latest end before it, where no trial was running in between."""
    ordered = sorted(timed, key=lambda t: t.datetime_start)
    gaps, latest_end = [], None
    for t in ordered:
        if latest_end is not None and t.datetime_start >= latest_end:
            gaps.append((t.datetime_start - latest_end).total_seconds())
        latest_end = t.datetime_complete if latest_end is None else max(latest_end, t.datetime_complete)
    return gaps


def resume_line(study: optuna.Study, storage_url: str | None = None) -> str | None:
    """The command that resumes the study (the last one recorded), with the command that opens this page."""
    commands = study_commands(study)
    parts = []
    if commands:
        parts.append(f"**Resume or extend it** (the last command that ran it): `{commands[-1]}`")
    if storage_url is not None:
        parts.append(f"**Open this page:** `iasf-search dashboard --storage {safe_url(storage_url)} --study {study.study_name}`")
    return "\n\n".join(parts) or None
