"""Long per-trial records — the architecture graph and the training settings — kept in Optuna's
trial *system* attributes, so that optuna-dashboard's attribute list stays readable (it shows user
attributes on one line each, and a graph's JSON would widen the whole page).

Read them with :func:`record`; studies made before this rule kept them as user attributes, which
:func:`record` falls back to.
"""

from __future__ import annotations

from typing import Any

import optuna

ARCHITECTURE = "architecture"
TRAIN_CONFIG = "train_config"
EPOCH_VALUES = "epoch_values"
"""Per-epoch objective vectors of a trial in a study with several objectives (see :func:`epoch_values`)."""


def set_record(trial: optuna.Trial, name: str, value: Any) -> None:
    """Store ``value`` (JSON-serialisable) on the running ``trial`` under ``name``."""
    trial.storage.set_trial_system_attr(trial._trial_id, name, value)


def record(trial: Any, name: str, default: Any = None) -> Any:
    """A record of a running :class:`optuna.Trial` or a :class:`~optuna.trial.FrozenTrial`, else ``default``."""
    if isinstance(trial, optuna.Trial):
        attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
    else:
        attrs = getattr(trial, "system_attrs", None) or {}
    return attrs.get(name, trial.user_attrs.get(name, default))


def set_epoch_values(trial: optuna.Trial, epoch: int, values: list[float]) -> None:
    """Record the running ``trial``'s objective vector after ``epoch`` (1-based), in the study's objective order."""
    stored = dict(record(trial, EPOCH_VALUES) or {})
    stored[str(epoch)] = [float(v) for v in values]
    set_record(trial, EPOCH_VALUES, stored)


def epoch_values(trial: Any) -> dict[int, list[float]]:
    """``{epoch: objective vector}`` recorded by :func:`set_epoch_values` (empty when none)."""
    return {int(k): list(v) for k, v in (record(trial, EPOCH_VALUES) or {}).items()}
