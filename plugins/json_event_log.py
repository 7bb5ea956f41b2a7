"""Machine-readable output (``--log-format json``): one JSON object per line per event.

:class:`JsonEventLog` is a plugin on the life-cycle hooks that writes ``study_start``, ``trial_end``
and ``study_end`` events; the command line adds a final ``summary`` event (:func:`summary_event`)
or an ``error`` event (:func:`error_event`). Every object is strict JSON: NaN and infinities become
``null`` and anything that is not a number, string, list or mapping becomes its string.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial

from iasf_search.hookspecs import hookimpl
from iasf_search.plugins.console_progress import eta_seconds
from iasf_search.results.access import best_trials, finished_trials
from iasf_search.results.baselines import baselines_event
from iasf_search.results.records import (
    ARCH_HASH,
    FAILURE_REASON,
    FOLD_VAL_ACCURACIES,
    PARAMS,
    PRUNED_AT_EPOCH,
    REUSED_FROM,
    SUMMARY,
    TEST_ACCURACY,
    TRAIN_SECONDS,
    VAL_ACCURACY,
    VAL_ACCURACY_STD,
)
from iasf_search.search.storage import safe_url
from iasf_search.search.study import SearchResult
from iasf_search.space import SearchSpace

ERROR_KINDS = ("bad_input", "search_failed", "storage_unavailable", "disk_full", "interrupted", "terminated", "unexpected")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: non-finite floats -> ``None``, tuples -> lists, numpy scalars -> Python."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def encode(event: Mapping[str, Any]) -> str:
    """One line of strict JSON (no NaN, no newline inside)."""
    return json.dumps(jsonable(event), allow_nan=False, ensure_ascii=False)


def write_event(stream: TextIO, event: Mapping[str, Any]) -> None:
    stream.write(encode(event) + "\n")
    stream.flush()


def _values(trial: FrozenTrial) -> list[float] | None:
    return list(trial.values) if trial.values is not None else None


def best_event(study: optuna.Study) -> dict[str, Any] | None:
    """``{"number", "values"}`` of the best trial so far (one objective); ``None`` before any completes
    or when the study has several objectives (see ``pareto_size``)."""
    if len(study.directions) != 1:
        return None
    best = best_trials(study)
    return {"number": best[0].number, "values": _values(best[0])} if best else None


def error_event(kind: str, message: str) -> dict[str, Any]:
    """``{"event": "error", "kind": one of ERROR_KINDS, "message": ...}``."""
    if kind not in ERROR_KINDS:
        raise ValueError(f"error kind {kind!r}: expected one of {', '.join(ERROR_KINDS)}")
    return {"event": "error", "kind": kind, "message": message, "time": time.time()}


def summary_event(result: SearchResult) -> dict[str, Any]:
    """The ``summary`` event that replaces the text summary: counts, storage (password masked), best trials, the
    classic baselines (``{name: {val_accuracy, test_accuracy, seconds, beaten}}``, see
    :func:`~iasf_search.results.baselines.baselines_event`; ``{}`` when none are recorded)."""
    study = result.study
    best = result.best
    if len(study.directions) == 1:
        best = best[:1]
    return {
        "event": "summary",
        "study": study.study_name,
        "finished": len(finished_trials(study)),
        "target": result.target,
        "new_trials": result.new_trials,
        "seconds": result.seconds,
        "storage": safe_url(result.storage_url),
        "best": [{
            "number": t.number,
            "values": _values(t),
            "val_accuracy": t.user_attrs.get(VAL_ACCURACY),
            "test_accuracy": t.user_attrs.get(TEST_ACCURACY),
            "params": t.user_attrs.get(PARAMS),
            "arch_hash": t.user_attrs.get(ARCH_HASH),
            "summary": t.user_attrs.get(SUMMARY),
        } for t in best],
        "baselines": baselines_event(study, best),
        "dashboard": result.dashboard_command,
        "pareto_plot": str(result.pareto_plot) if result.pareto_plot is not None else None,
        "time": time.time(),
    }


class JsonEventLog:
    """Writes ``study_start``, ``trial_end`` and ``study_end`` as JSON lines to ``stream`` (default ``sys.stdout``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        self.target = 0
        self.done_at_start = 0
        self.trials_ended = 0

    def _emit(self, event: Mapping[str, Any]) -> None:
        write_event(self.stream, event)

    @hookimpl
    def iasf_study_start(self, study: optuna.Study, space: SearchSpace, target: int) -> None:
        self.start = time.perf_counter()
        self.target = target
        self.done_at_start = len(finished_trials(study))
        self.trials_ended = 0
        self._emit({
            "event": "study_start",
            "study": study.study_name,
            "target": target,
            "finished": self.done_at_start,
            "dataset": space.dataset,
            "objectives": [{"metric": o.metric, "direction": o.direction} for o in space.objectives],
            "time": time.time(),
        })

    @hookimpl
    def iasf_trial_end(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.trials_ended += 1
        done = len(finished_trials(study))
        elapsed = time.perf_counter() - self.start
        attrs = trial.user_attrs
        event: dict[str, Any] = {
            "event": "trial_end",
            "number": trial.number,
            "state": trial.state.name,
            "values": _values(trial),
            "val_accuracy": attrs.get(VAL_ACCURACY),
            "test_accuracy": attrs.get(TEST_ACCURACY),
            "arch_hash": attrs.get(ARCH_HASH),
            "summary": attrs.get(SUMMARY),
        }
        for optional in (FAILURE_REASON, REUSED_FROM, PRUNED_AT_EPOCH, FOLD_VAL_ACCURACIES, VAL_ACCURACY_STD):
            if optional in attrs:
                event[optional] = attrs[optional]
        event.update({
            "train_seconds": attrs.get(TRAIN_SECONDS),
            "finished": done,
            "target": self.target,
            "best": best_event(study),
        })
        if len(study.directions) > 1:
            event["pareto_size"] = len(best_trials(study))
        event.update({
            "elapsed_s": elapsed,
            "eta_s": eta_seconds(elapsed, done - self.done_at_start, self.target - done),
            "time": time.time(),
        })
        self._emit(event)

    @hookimpl
    def iasf_study_end(self, study: optuna.Study, space: SearchSpace) -> None:
        try:
            finished: int | None = len(finished_trials(study))
        except Exception:  # the database is gone: the error event that follows says why
            finished = None
        self._emit({
            "event": "study_end",
            "study": study.study_name,
            "finished": finished,
            "target": self.target,
            "trials_run": self.trials_ended,
            "elapsed_s": time.perf_counter() - self.start,
            "time": time.time(),
        })
