"""What a stored study's records must look like, checked before anything reads them (:func:`check_study`).

A study lives in a database that other tools can write: a migration script, a hand-edited row, a half-restored
backup, another program sharing the database. A record of the wrong kind (a validation accuracy that is a list, an
architecture that is a number) would otherwise fail deep inside ``best``, ``export``, ``report`` or a resumed search
with a traceback. Both doors to a stored study (:func:`iasf_search.results.access.load_results`, which every reading
command and the Python API open a study through, and the search's :func:`iasf_search.search.setup.open_study` before
it writes anything) check the records iasf-search reads against their kinds, once per opening, and refuse a damaged
study with one line naming the trial, the record and what it holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from iasf_search.errors import BadInput, one_line
from iasf_search.results.records import (
    ARCH_HASH,
    ARCHITECTURE,
    BASELINES_DATA,
    CONSTRAINTS,
    COST_PREFIX,
    ENQUEUED,
    EPOCH_VALUES,
    EPOCHS,
    FAILED_PLUGIN,
    FAILURE_REASON,
    FOLD_VAL_ACCURACIES,
    GRAD_ACCUMULATION,
    INFEASIBLE,
    LEGACY_CONSTRAINTS,
    METRIC_DETAILS_PREFIX,
    METRIC_PREFIX,
    METRICS_SECONDS,
    MICRO_BATCH_SIZE,
    OOM_RETRIES,
    PARAMS,
    PRESCREEN,
    PROXY_PREFIX,
    PRUNED_AT_EPOCH,
    REUSE_KEY,
    REUSED_FROM,
    STEPS,
    STUDY_BASELINES,
    STUDY_COMMANDS,
    STUDY_DATA,
    STUDY_SPACE,
    SUMMARY,
    TEST_ACCURACY,
    TRAIN_CONFIG,
    TRAIN_SECONDS,
    VAL_ACCURACY,
    VAL_ACCURACY_STD,
    VAL_LOSS,
)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_or_none(value: Any) -> bool:
    return value is None or _number(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(_number_or_none(v) for v in value)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(_text(v) for v in value)


def _mappings(value: Any) -> bool:
    return isinstance(value, list) and all(_mapping(v) for v in value)


def _data(value: Any) -> bool:
    return _mapping(value) and (not value or (
        isinstance(value.get("sample_shape"), list) and all(_count(v) and v > 0 for v in value["sample_shape"])
        and _count(value.get("num_classes"))))


def _artifact_meta(value: Any) -> bool:
    """Optuna's record of an uploaded file: JSON text of ``{artifact_id, filename, mimetype, encoding}``."""
    try:
        meta = json.loads(value)
    except (TypeError, ValueError):
        return False
    return _mapping(meta) and _text(meta.get("artifact_id")) and _text(meta.get("filename"))


def _epoch_values(value: Any) -> bool:
    return _mapping(value) and all(_is_int_text(k) and _numbers(v) for k, v in value.items())


def _is_int_text(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit()


def _constraints(value: Any) -> bool:
    return _mapping(value) and all(_mapping(c) and isinstance(c.get("feasible"), bool)
                                   and all(_number_or_none(c.get(k)) for k in ("value", "min", "max")) for c in value.values())


def _baselines(value: Any) -> bool:
    return _mapping(value) and all(not _mapping(v) or k == BASELINES_DATA or all(
        _number(v.get(m)) for m in ("val_accuracy", "test_accuracy", "seconds"))
        for k, v in value.items())


Kind = tuple[Callable[[Any], bool], str]
NUMBER: Kind = (_number, "a number")
NUMBER_OR_NONE: Kind = (_number_or_none, "a number or null")
COUNT: Kind = (_count, "a whole number")
TEXT: Kind = (_text, "text")
MAPPING: Kind = (_mapping, "a mapping")

STUDY_RECORDS: dict[str, Kind] = {
    STUDY_SPACE: MAPPING, STUDY_DATA: (_data, "a data fingerprint with sample_shape and num_classes"),
    STUDY_COMMANDS: (_texts, "a list of command lines"),
    STUDY_BASELINES: (_baselines, "a mapping of baselines, each with val_accuracy, test_accuracy and seconds"),
}
"""The study's user attributes iasf-search reads, and their kinds."""

TRIAL_RECORDS: dict[str, Kind] = {
    ARCH_HASH: TEXT, SUMMARY: TEXT, REUSE_KEY: TEXT, FAILURE_REASON: TEXT, FAILED_PLUGIN: TEXT, ENQUEUED: TEXT,
    PARAMS: COUNT, EPOCHS: COUNT, STEPS: COUNT, REUSED_FROM: COUNT, PRUNED_AT_EPOCH: COUNT, MICRO_BATCH_SIZE: COUNT,
    GRAD_ACCUMULATION: COUNT,
    TRAIN_SECONDS: NUMBER, VAL_ACCURACY: NUMBER, VAL_LOSS: NUMBER, TEST_ACCURACY: NUMBER, VAL_ACCURACY_STD: NUMBER,
    METRICS_SECONDS: NUMBER,
    FOLD_VAL_ACCURACIES: (_numbers, "a list of numbers"), OOM_RETRIES: (_mappings, "a list of mappings"),
    CONSTRAINTS: (_constraints, "a mapping of constraints, each with value, min, max and feasible"),
    INFEASIBLE: (_texts, "a list of cost names"), PRESCREEN: MAPPING,
}
"""A trial's user attributes iasf-search reads, and their kinds."""

TRIAL_PREFIXES: dict[str, Kind] = {
    COST_PREFIX: NUMBER_OR_NONE, METRIC_PREFIX: NUMBER_OR_NONE, METRIC_DETAILS_PREFIX: MAPPING,
    PROXY_PREFIX: (lambda v: _number_or_none(v) or _text(v), "a number, null or text (nan, inf)"),
}
"""User attributes named ``<prefix><name>`` and their kinds (``aux.<name>``: whatever an auxiliary objective measured)."""

SYSTEM_RECORDS: dict[str, Kind] = {
    ARCHITECTURE: TEXT, TRAIN_CONFIG: MAPPING, EPOCH_VALUES: (_epoch_values, "a mapping of epochs to objective values"),
    LEGACY_CONSTRAINTS: (_numbers, "a list of numbers"), "failed_trial": COUNT,
}
"""A trial's system attributes iasf-search (and Optuna's retry rule) read, and their kinds."""

SYSTEM_PREFIXES: dict[str, Kind] = {"artifacts:": (_artifact_meta, "Optuna's JSON record of an uploaded file")}
"""System attributes named ``<prefix><name>`` (Optuna's artifact records) and their kinds."""


def damaged(attrs: Mapping[str, Any], kinds: Mapping[str, Kind], prefixes: Mapping[str, Kind] | None = None) -> tuple[str, Any, str] | None:
    """The first ``(key, value, expected kind)`` of ``attrs`` that is not of its kind, or None."""
    for key, value in attrs.items():
        kind = kinds.get(key) or next((k for p, k in (prefixes or {}).items() if key.startswith(p)), None)
        if kind is not None and not kind[0](value):
            return key, value, kind[1]
    return None


def check_study(study: optuna.Study) -> None:
    """Refuse a study whose records are not of their kinds (see the module).

    :raises BadInput: naming the study, the trial and the record, what it holds and what it should.
    """
    problem = damaged(study.user_attrs, STUDY_RECORDS)
    where = f"study '{study.study_name}'"
    if problem is None:
        for trial in study.get_trials(deepcopy=False):
            problem = (damaged(trial.user_attrs, TRIAL_RECORDS, TRIAL_PREFIXES)
                       or damaged(trial.system_attrs, SYSTEM_RECORDS, SYSTEM_PREFIXES))
            if problem is not None:
                where += f", trial #{trial.number}"
                break
    if problem is not None:
        key, value, kind = problem
        raise BadInput(f"{where}: the record {one_line(key)!r} holds {_shown(value)}, not {kind}: the study was changed "
                       f"outside iasf-search; restore its database from a backup, or run the search under a new --study name")


def _shown(value: Any) -> str:
    text = "NaN" if isinstance(value, float) and math.isnan(value) else repr(value)
    text = one_line(text)
    return text if len(text) <= 60 else text[:57] + "..."
