"""What a search records: on the study once (its space, data and commands), and on each trial.

Long per-trial records — the architecture graph and the training settings — are kept in Optuna's
trial *system* attributes, so that optuna-dashboard's attribute list stays readable (it shows user
attributes on one line each, and a graph's JSON would widen the whole page).

Read them with :func:`record`; studies made before this rule kept them as user attributes, which
:func:`record` falls back to. Read the study's records with :func:`study_space`, :func:`study_data` and
:func:`study_commands` (the search's set-up, :mod:`iasf_search.search.setup`, writes them).
"""

from __future__ import annotations

from typing import Any

import optuna

from iasf_search.optuna_internals import trial_id

# -- study user attributes (what a search records on the study once) ------------------------------
STUDY_SPACE = "space"
"""The space the study was created from, every default filled in (:meth:`iasf_search.space.SearchSpace.resolved`)."""
STUDY_DATA = "data"
"""The task's data fingerprint: shapes, classes, split sizes (:func:`iasf_search.search.setup.data_fingerprint`)."""
STUDY_COMMANDS = "commands"
"""The command lines that ran the study's searches (passwords hidden), for exported model cards."""
STUDY_BASELINES = "baselines"
"""1-NN's and logistic regression's accuracies on the study's splits, with the data fingerprint they were fitted on
(:mod:`iasf_search.results.baselines`)."""
BASELINES_DATA = "data"
"""The key of :data:`STUDY_BASELINES` that holds the data fingerprint the baselines were fitted on."""

# -- system attributes (long records: read them with record()) -------------------------------------
LEGACY_CONSTRAINTS = "constraints"
"""The violated constraints as a list (value > 0: broken), the only form optuna-dashboard 0.21 shows; Optuna's own
``trial.set_constraint`` values are recorded too."""
ARCHITECTURE = "architecture"
"""The architecture graph as JSON (:func:`iasf_search.graph.to_json`)."""
TRAIN_CONFIG = "train_config"
"""The sampled training settings (and ``auxiliary`` objectives' settings)."""
EPOCH_VALUES = "epoch_values"
"""Per-epoch objective vectors of a trial in a study with several objectives (see :func:`epoch_values`)."""

# -- user attributes (one line each on the dashboard's trial page) ----------------------------------
ARCH_HASH = "arch_hash"
"""The architecture's canonical hash (isomorphic graphs hash equal)."""
SUMMARY = "summary"
"""One line describing the architecture."""
REUSE_KEY = "reuse_key"
"""Architecture, training settings and task together: equal keys give equal results."""
PARAMS = "params"
"""Parameters of the deployable model (without training helpers)."""
TRAIN_SECONDS = "train_seconds"
"""Wall-clock seconds the trial trained (with cross-validation: all its fold models)."""
EPOCHS = "epochs"
"""Epochs trained."""
STEPS = "steps"
"""Optimiser steps trained (``training.min_steps`` may give an epoch more than one pass)."""
VAL_ACCURACY = "val_accuracy"
"""Accuracy on the validation split after the last epoch trained (with cross-validation: the folds' mean)."""
VAL_LOSS = "val_loss"
"""Cross-entropy on the validation split after the last epoch (with cross-validation: the folds' mean); breaks ties."""
TEST_ACCURACY = "test_accuracy"
"""Accuracy on the held-out test split, measured once after training (never used to choose)."""
FOLD_VAL_ACCURACIES = "fold_val_accuracies"
"""With cross-validation (``task.split.folds``): each fold model's validation accuracy; ``val_accuracy`` is their mean."""
VAL_ACCURACY_STD = "val_accuracy_std"
"""With cross-validation: the standard deviation of ``fold_val_accuracies`` (the fold spread)."""
REUSED_FROM = "reused_from"
"""The trial whose result this one copied (same reuse key, isomorphic architecture)."""
PRUNED_AT_EPOCH = "pruned_at_epoch"
"""The epoch after which the pruner stopped the trial."""
FAILURE_REASON = "failure_reason"
"""Why a trial failed or stopped other than by ordinary pruning (``diverged: ...``, ``interrupted``, ...)."""
FAILED_PLUGIN = "failed_plugin"
"""The plugin whose code raised, when one did."""
OOM_RETRIES = "oom_retries"
"""Each retry after running out of memory: ``{micro_batch_size, grad_accumulation, error}`` (the batch halved each time)."""
MICRO_BATCH_SIZE = "micro_batch_size"
"""After an out-of-memory retry: the samples per forward pass the trial finished with."""
GRAD_ACCUMULATION = "grad_accumulation"
"""After an out-of-memory retry: micro-batches accumulated per optimiser step (the batch size is kept)."""
CONSTRAINTS = "constraints"
"""``{cost: {value, max, feasible}}`` when the space has constraints."""
INFEASIBLE = "infeasible"
"""The costs whose bound a trial broke."""
COST_PREFIX = "cost."
"""``cost.<name>``: a measured cost."""
COST_DETAILS_PREFIX = "cost_details."
"""``cost_details.<name>``: what a cost model reported beside the value."""
AUX_PREFIX = "aux."
"""``aux.<objective>``: what an auxiliary objective measured after training."""
PROXY_PREFIX = "proxy."
"""``proxy.<name>``: a zero-cost proxy's score of the untrained model (``search.proxies``, ``search.prescreen``)."""
METRIC_PREFIX = "metric."
"""``metric.<name>``: a representation metric of the trained model (``metrics:``), one number."""
METRIC_DETAILS_PREFIX = "metric_details."
"""``metric_details.<name>``: a representation metric per node (``{node: value}``) and how it was measured."""
METRICS_SECONDS = "metrics_seconds"
"""Seconds the representation metrics took on a trial (the forward pass on the batch included)."""
ENQUEUED = "enqueued"
"""The ``search.enqueue`` entry (baseline name or arch.json path) the trial evaluated before the sampler's."""
PRESCREEN = "prescreen"
"""``{proxy, score, rank, candidates}``: the trial was the ``rank``-th best (1: best) of ``candidates`` sampled
architectures scored by ``proxy`` without training (``search.prescreen``)."""


def study_space(study: optuna.Study) -> dict[str, Any]:
    """The space the study was created from (:data:`STUDY_SPACE`: a dict, every default filled in); an empty
    dict when the study records none (a study no search made)."""
    return study.user_attrs.get(STUDY_SPACE) or {}


def study_data(study: optuna.Study) -> dict[str, Any]:
    """The task's data fingerprint recorded on the study (:data:`STUDY_DATA`: ``sample_shape``, ``num_classes``,
    ``modality``, split sizes, ...); an empty dict when the study records none (made by an older iasf-search)."""
    return study.user_attrs.get(STUDY_DATA) or {}


def study_commands(study: optuna.Study) -> list[str]:
    """The command lines that ran the study's searches, oldest first (:data:`STUDY_COMMANDS`); an empty list
    when none are recorded (searches run from Python record none)."""
    return list(study.user_attrs.get(STUDY_COMMANDS) or [])


def set_record(trial: optuna.Trial, name: str, value: Any) -> None:
    """Store ``value`` (JSON-serialisable) on the running ``trial`` under ``name``."""
    trial.storage.set_trial_system_attr(trial_id(trial), name, value)


def record(trial: Any, name: str, default: Any = None) -> Any:
    """A record of a running :class:`optuna.Trial` or a :class:`~optuna.trial.FrozenTrial`, else ``default``."""
    if isinstance(trial, optuna.Trial):
        attrs = trial.storage.get_trial_system_attrs(trial_id(trial))
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
