"""The plain settings of a space file — ``manifold:``'s graph size and width, ``training:``, ``task.split``,
``metrics.batch``, ``search:`` and ``search.prescreen`` — each key with its type, bounds, default and help,
stated once here (``docs/space.md`` is generated from these tables). :mod:`iasf_search.space` validates against
these tables, the dataclasses that carry the values (:class:`~iasf_search.components.SplitSpec`,
:class:`~iasf_search.space.SearchSettings`) take their defaults from them, and the resolved space
saved with a study writes them back.
"""

from __future__ import annotations

from iasf_search.params import Param

MANIFOLD_PARAMS: dict[str, Param] = {
    "nodes": Param({"low": 1, "high": 4}, int, low=1, high=64,
                   help="number of token-mixing nodes in an architecture (a range: searched)"),
    "max_in_degree": Param(2, int, low=1, high=16, help="how many earlier representations a node may read (fused if several)"),
    "lookback": Param(None, int, low=1, nullable=True,
                      help="a node reads only from this many most recent earlier ones, the stem counting (null: any)"),
    "width": Param([64], int, low=4, high=8192, help="token width D of every node (a list or range: searched)"),
}
"""Keys of ``manifold:`` besides the component lists (``ops``, ``fusions``, ``readouts``, ``norms``); ``nodes`` and
``width`` may be ranges, the others are fixed values."""

TRAINING_PARAMS: dict[str, Param] = {
    "epochs": Param(20, int, low=1, help="passes over the training split"),
    "batch_size": Param(128, int, low=1, help="samples per optimisation step (at most the training split's size)"),
    "min_steps": Param(200, int, low=0, help="at least this many optimiser steps in all: a small training split gets "
                                             "more steps per epoch (further shuffled passes), so it trains for real"),
    "optimizer": Param("adamw", str, choices=("adamw", "adam", "sgd"), help="optimiser"),
    "lr": Param(2.0e-3, float, low=0.0, help="peak learning rate"),
    "weight_decay": Param(0.05, float, low=0.0, help="decoupled weight decay (adamw) or L2 (adam, sgd)"),
    "warmup": Param(0.1, float, low=0.0, high=1.0, help="share of steps warming up to the peak lr (schedule), then decay"),
    "schedule": Param("cosine", str, choices=("cosine", "one_cycle"),
                      help="learning-rate schedule: cosine (linear warm-up, cosine decay to 0) or one_cycle (torch's "
                           "OneCycleLR: cosine rise from lr/25, cosine fall to ~0, momentum/beta1 cycled 0.95-0.85-0.95)"),
    "label_smoothing": Param(0.0, float, low=0.0, high=0.9, help="cross-entropy label smoothing"),
    "grad_clip": Param(1.0, float, low=0.0, help="clip the gradient norm to this (0: off)"),
    "augment": Param(False, bool, help="apply the dataset's training-time augmentation, if it has one"),
    "compile": Param(False, bool, help="train through torch.compile (the first step of every trial compiles for "
                                       "seconds; pays off only for long trials, see benchmarks/RESULTS.md)"),
}
"""Keys of the space file's ``training:`` section; each may be a fixed value, a list or a range."""

SPLIT_PARAMS: dict[str, Param] = {
    "val": Param(0.15, float, low=0.01, high=0.9, help="share of the data held out for validation"),
    "test": Param(0.2, float, low=0.0, high=0.9, help="share held out for test (unless the dataset has its own)"),
    "seed": Param(0, int, help="seed of the stratified shuffle"),
    "folds": Param(None, int, low=2, high=100, nullable=True,
                   help="K-fold cross-validation over all non-test data: a trial's objective is the mean validation "
                        "accuracy of K models, and the model kept is retrained on all of it (for small datasets)"),
    "repeats": Param(1, int, low=1, high=100, help="with folds: repeat the K folds with other shuffles (K x repeats models)"),
}
"""Keys of ``task.split`` (fixed values)."""

SEARCH_PARAMS: dict[str, Param] = {
    "sampler": Param("tpe", str, help="a registered sampler"),
    "pruner": Param(None, str, nullable=True,
                    help="a registered pruner; default: median for one objective, pareto_halving for several"),
    "trials": Param(20, int, low=1, help="finished trials to reach"),
    "timeout": Param(None, float, low=1.0, nullable=True,
                     help="seconds after which no trial starts (counted once the study is ready; one always runs)"),
    "seed": Param(0, int, help="sampler and training seed"),
    "max_trial_seconds": Param(None, float, low=0.1, nullable=True,
                               help="a trial still training after this long is stopped (pruned, reason 'time limit')"),
    "heartbeat_interval": Param(20, int, low=1, help="seconds between a running trial's heartbeats (SQL storages)"),
    "grace_period": Param(120, int, low=2, help="a running trial without a heartbeat this long is failed and retried once"),
    "outage_limit": Param(600, int, low=0, help="seconds a search retries an unreachable database (SQL storages) "
                                                "before it stops with exit status 1; the same command resumes it"),
}
"""Keys of ``search:`` besides ``sampler_options`` and ``pruner_options`` (fixed values)."""

PRESCREEN_PARAMS: dict[str, Param] = {
    "candidates": Param(16, int, low=1, help="architectures sampled and scored by the proxy before each training"),
    "keep": Param(1, int, low=1, help="the best-scored of them that are trained (at most candidates)"),
}
"""Keys of ``search.prescreen`` besides ``proxy`` (required)."""

METRICS_PARAMS: dict[str, Param] = {
    "batch": Param(256, int, low=2, help="validation samples (the split's first) every trained model's metrics are measured on"),
}
"""Keys of ``metrics:`` besides ``record`` (the metrics, with their options)."""
