"""Classic baselines fitted on a search's own splits, so that every study shows whether its best
architecture beat them: 1-nearest-neighbour and logistic regression (scikit-learn).

Both are fitted on the training split only and scored on the validation split (the split the search
selects on) and the test split (the one it reports). They are recorded on the study as the user
attribute ``baselines`` (:data:`~iasf_search.results.records.STUDY_BASELINES`):
``{name: {"val_accuracy", "test_accuracy", "seconds"}, "data": <the study's data fingerprint>}``;
:func:`recorded_baselines` reads them back, and the summary, ``best``, the report and the JSON summary
event show them beside the best trial, compared on test accuracy.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial

from iasf_search.components import SplitSpec, TaskData
from iasf_search.results.access import lead_trial
from iasf_search.results.records import BASELINES_DATA, STUDY_BASELINES, TEST_ACCURACY
from iasf_search.trial.cross_validation import fold_tasks, pooled

LABELS = {"1nn": "1-NN", "logistic_regression": "logistic regression"}
"""Each baseline's name as recorded -> as printed, in the order they are fitted and shown."""
LOGISTIC_MAX_ITER = 2000
"""L-BFGS iterations for logistic regression: enough to converge on every shipped task."""
SEARCH_FIT_LIMIT = 1e11
"""The largest task whose baselines a search fits by itself, in :func:`fit_work` units: 8,000 training
and 4,000 scored samples of 3,072 features (1e11) took 7.6 s on one core of a busy 2-core CPU; the
shipped spaces' tasks are 4.7e7 (digits) to 2.2e8 (MNIST-1D), CIFAR-10 about 2.3e12. Beyond it,
``iasf-search baseline`` fits them on request."""


def fit_baselines(data: TaskData, seed: int = 0, split: SplitSpec | None = None) -> dict[str, dict[str, float]]:
    """Fit the baselines on ``data``'s training split; score them on its validation and test splits.
    With cross-validation (``split.folds``) they are scored as a search scores its trials: the validation
    accuracy is the mean over the folds (:mod:`iasf_search.trial.cross_validation`), each fitted on its fold's
    training part, and the test accuracy is that of a fit on all the folds' data; ``seconds`` is then
    the time of all those fits.

    Features: every sample flattened, each feature z-normalised with the training split's mean and
    standard deviation (a constant feature is only centred). Series of unequal lengths padded to one
    length (:attr:`~iasf_search.components.TaskData.padded`) are compared padded with zeros: 1-NN is then
    the Euclidean distance between the flattened, zero-padded series. Token-id inputs (modality ``text``) are
    not numbers to normalise -- id 7 is not "more" than id 6 -- so a text sample becomes a bag of
    words instead: how often each id occurs in it (the padding id included, which measures the
    length), each count divided by the training split's standard deviation (kept sparse, so not
    centred; centring changes no nearest neighbour and only the intercept of logistic regression).

    * ``1nn``: :class:`sklearn.neighbors.KNeighborsClassifier` with one neighbour (Euclidean, brute force);
    * ``logistic_regression``: :class:`sklearn.linear_model.LogisticRegression` (L-BFGS, L2, ``C = 1``,
      up to :data:`LOGISTIC_MAX_ITER` iterations).

    Both are deterministic: the same data gives the same accuracies (``seed`` is passed to
    scikit-learn as ``random_state`` for solvers that draw random numbers; L-BFGS does not). They run
    in one thread: on a 2-core machine busy with other work, BLAS and OpenMP threads that spin-wait
    made logistic regression on MNIST-1D's 3,400 x 40 features take 3.8 s instead of 0.08 s.

    :returns: ``{name: {"val_accuracy", "test_accuracy", "seconds"}}``, ``seconds`` being the time
        to fit the model and predict both splits (features are made once, before, and not counted).
    """
    if split is None or split.folds is None:
        return _fit_and_score(data, seed)
    folds = [_fit_and_score(task, seed) for task in fold_tasks(data, split)]
    kept = _fit_and_score(pooled(data), seed)
    return {name: {"val_accuracy": float(np.mean([f[name]["val_accuracy"] for f in folds])),
                   "test_accuracy": metrics["test_accuracy"],
                   "seconds": metrics["seconds"] + sum(f[name]["seconds"] for f in folds)} for name, metrics in kept.items()}


def _fit_and_score(data: TaskData, seed: int) -> dict[str, dict[str, float]]:
    """Both baselines fitted on ``data``'s training split, scored on its validation and test splits."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    x_train, x_val, x_test = baseline_features(data)
    y_train, y_val, y_test = (_numpy(y) for y in (data.y_train, data.y_val, data.y_test))
    models = {"1nn": KNeighborsClassifier(n_neighbors=1, algorithm="brute"),
              "logistic_regression": LogisticRegression(max_iter=LOGISTIC_MAX_ITER, random_state=seed)}
    out: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        start = time.perf_counter()
        with threadpool_limits(limits=1), warnings.catch_warnings():
            # a model that stopped at max_iter still gives a usable baseline: say nothing mid-search
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, y_train)
            val = float(np.mean(model.predict(x_val) == y_val))
            test = float(np.mean(model.predict(x_test) == y_test))
        out[name] = {"val_accuracy": val, "test_accuracy": test, "seconds": time.perf_counter() - start}
    return out


def fit_work(data: TaskData, split: SplitSpec | None = None) -> int:
    """What fitting the baselines costs, roughly: training samples x scored (validation + test) samples x
    features per sample, the distances 1-NN computes (logistic regression costs less on the tasks measured);
    with cross-validation, once per fold and once more on all of it."""
    fits = 1 if split is None or split.folds is None else split.folds * split.repeats + 1
    return fits * len(data.x_train) * (len(data.x_val) + len(data.x_test)) * math.prod(data.sample_shape)


def baseline_features(data: TaskData) -> tuple[Any, Any, Any]:
    """``(train, val, test)`` feature matrices of :func:`fit_baselines`: z-normalised flattened samples
    (dense arrays), or scaled bags of words for token ids (modality ``text``; sparse matrices)."""
    if data.modality == "text":
        return _bags_of_words(data)
    # NaN: the padding of series of unequal lengths (TaskData.padded) -> 0, the mean of a z-normalised series
    train, val, test = (np.nan_to_num(_numpy(x).reshape(len(x), -1).astype(np.float64), nan=0.0)
                        for x in (data.x_train, data.x_val, data.x_test))
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    return (train - mean) / std, (val - mean) / std, (test - mean) / std


def _bags_of_words(data: TaskData) -> tuple[Any, Any, Any]:
    from scipy import sparse

    splits = [_numpy(x).reshape(len(x), -1).astype(np.int64) for x in (data.x_train, data.x_val, data.x_test)]
    size = int(max(s.max(initial=0) for s in splits)) + 1

    def bags(ids: np.ndarray) -> sparse.csr_matrix:
        rows = np.repeat(np.arange(len(ids)), ids.shape[1])
        counts = sparse.csr_matrix((np.ones(ids.size), (rows, ids.ravel())), shape=(len(ids), size))
        counts.sum_duplicates()
        return counts

    train, val, test = (bags(s) for s in splits)
    mean = np.asarray(train.mean(axis=0)).ravel()
    std = np.sqrt(np.maximum(np.asarray(train.multiply(train).mean(axis=0)).ravel() - mean**2, 0.0))
    std[std == 0] = 1.0
    scale = sparse.diags(1.0 / std)
    return train @ scale, val @ scale, test @ scale


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def record_baselines(study: optuna.Study, baselines: Mapping[str, Mapping[str, float]], data: Mapping[str, Any]) -> None:
    """Store ``baselines`` (:func:`fit_baselines`) on ``study``, with the fingerprint of the ``data`` they were fitted on."""
    study.set_user_attr(STUDY_BASELINES, {**{k: dict(v) for k, v in baselines.items()}, BASELINES_DATA: dict(data)})


def recorded_baselines(study: optuna.Study, data: Mapping[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """The baselines recorded on ``study`` (``{name: metrics}``, without the fingerprint); empty when none,
    or when ``data`` is given and they were fitted on other data."""
    stored = study.user_attrs.get(STUDY_BASELINES) or {}
    if data is not None and stored.get(BASELINES_DATA) != dict(data):
        return {}
    return {k: v for k, v in stored.items() if k != BASELINES_DATA and isinstance(v, Mapping)}


def baseline_line(name: str, metrics: Mapping[str, float]) -> str:
    """``1-NN: validation 0.9100, test 0.9050 (0.1 s)``."""
    return (f"{LABELS.get(name, name)}: validation {metrics['val_accuracy']:.4f}, test {metrics['test_accuracy']:.4f} "
            f"({metrics['seconds']:.1f} s)")


def beaten(baselines: Mapping[str, Mapping[str, float]], test_accuracy: float | None) -> dict[str, bool]:
    """``{name: whether test_accuracy is higher than the baseline's test accuracy}`` (a tie does not beat)."""
    return {name: test_accuracy is not None and test_accuracy > m["test_accuracy"] for name, m in baselines.items()}


def compared_trial(study: optuna.Study, best: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The trial the baselines are compared with: the best trial, or of a Pareto set the one with the highest
    validation accuracy (:func:`~iasf_search.results.access.lead_trial`); None before any trial completed."""
    return (best[0] if best else None) if len(study.directions) == 1 else lead_trial(best)


def comparison(study: optuna.Study, best: Sequence[FrozenTrial]) -> str | None:
    """``baselines (test accuracy): 1-NN 0.9050, logistic regression 0.8800; the best trial (0.9400) beats both``
    (or ``does not beat 1-NN``, ``beats neither``; a Pareto set: ``trial #7 (the Pareto set's highest validation
    accuracy, test 0.9400) ...``), the line the summary and ``best`` print; None when the study has none recorded."""
    baselines = recorded_baselines(study)
    if not baselines:
        return None
    shown = ", ".join(f"{LABELS.get(n, n)} {m['test_accuracy']:.4f}" for n, m in baselines.items())
    trial = compared_trial(study, best)
    if trial is None:
        return f"baselines (test accuracy): {shown}; no trial completed yet"
    test = trial.user_attrs.get(TEST_ACCURACY)
    score = "" if test is None else f"{test:.4f}"
    if len(study.directions) > 1:
        who = f"trial #{trial.number} (the Pareto set's highest validation accuracy{', test ' + score if score else ''})"
    else:
        who = f"the best trial ({score})" if score else "the best trial"
    if test is None:
        return f"baselines (test accuracy): {shown}; {who} has no test accuracy"
    wins = beaten(baselines, test)
    losses = [LABELS.get(n, n) for n, won in wins.items() if not won]
    if not losses:
        verdict = "beats both" if len(wins) == 2 else "beats them all" if len(wins) > 2 else "beats it"
    elif len(losses) == len(wins) > 1:
        verdict = "beats neither" if len(wins) == 2 else "beats none of them"
    else:
        verdict = "does not beat " + " or ".join(losses)
    return f"baselines (test accuracy): {shown}; {who} {verdict}"


def baselines_event(study: optuna.Study, best: Sequence[FrozenTrial]) -> dict[str, dict[str, Any]]:
    """The baselines for the JSON ``summary`` event: ``{name: {"val_accuracy", "test_accuracy", "seconds",
    "beaten"}}``, ``beaten`` saying whether :func:`compared_trial` has the higher test accuracy (None before
    any trial completed); empty when none are recorded."""
    baselines = recorded_baselines(study)
    trial = compared_trial(study, best)
    wins = beaten(baselines, trial.user_attrs.get(TEST_ACCURACY)) if trial is not None else {}
    return {name: {**m, "beaten": wins.get(name)} for name, m in baselines.items()}
