"""The built-in samplers and pruners (plugins/optuna_components.py): thin factories over Optuna's classes,
with the space's options passed through."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from iasf_search.plugin_manager import load_components

COMPONENTS = load_components(autoload=False)
SAMPLERS, PRUNERS = COMPONENTS.samplers, COMPONENTS.pruners
OWNER = "iasf_search.plugins.optuna_components"


def defaults(factory) -> dict:
    return {k: p.default for k, p in factory.params.items()}


def test_registered_factories_and_their_options():
    assert [n for n in SAMPLERS if SAMPLERS.owner(n) == OWNER] == ["tpe", "random", "nsga2"]
    assert [n for n in PRUNERS if PRUNERS.owner(n) == OWNER] == ["median", "hyperband", "successive_halving", "none"]
    assert defaults(SAMPLERS.get("tpe")) == {"n_startup_trials": 8, "multivariate": True, "group": True}
    assert defaults(SAMPLERS.get("nsga2")) == {"population_size": 20}
    assert defaults(PRUNERS.get("median")) == {"n_startup_trials": 4, "warmup_fraction": 0.25}
    assert [n for n in PRUNERS if PRUNERS.get(n).multi_objective and PRUNERS.owner(n) == OWNER] == ["none"]


@pytest.mark.parametrize(("name", "cls"), [("tpe", optuna.samplers.TPESampler), ("random", optuna.samplers.RandomSampler),
                                           ("nsga2", optuna.samplers.NSGAIISampler)])
def test_each_sampler_is_a_fresh_optuna_sampler(name, cls):
    factory = SAMPLERS.get(name)
    a = factory.create(defaults(factory), seed=0, n_objectives=1)
    assert type(a) is cls and a is not factory.create(defaults(factory), seed=0, n_objectives=1)


def _params(sampler, n=6, directions=("maximize",)) -> list[dict]:
    study = optuna.create_study(sampler=sampler, directions=list(directions))
    for _ in range(n):
        trial = study.ask()
        trial.suggest_int("nodes", 1, 100)
        trial.suggest_categorical("op", ["mlp", "conv", "attention"])
        study.tell(trial, [0.5] * len(directions))
    return [t.params for t in study.trials]


@pytest.mark.parametrize("name", ["tpe", "random", "nsga2"])
def test_the_seed_reaches_the_sampler(name):
    factory = SAMPLERS.get(name)
    make = lambda seed: factory.create(defaults(factory), seed=seed, n_objectives=1)  # noqa: E731
    assert _params(make(3)) == _params(make(3))
    assert _params(make(3)) != _params(make(4))


def test_tpe_without_multivariate_drops_grouping():
    """Optuna refuses group=True without multivariate; the factory turns grouping off instead of failing."""
    with pytest.raises(ValueError):
        optuna.samplers.TPESampler(multivariate=False, group=True)
    sampler = SAMPLERS.get("tpe").create({"n_startup_trials": 2, "multivariate": False, "group": True}, seed=0, n_objectives=1)
    assert len(_params(sampler, n=4)) == 4


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random"])
def test_samplers_serve_two_objectives(name):
    factory = SAMPLERS.get(name)
    options = {**defaults(factory), **({"population_size": 2} if name == "nsga2" else {})}
    assert len(_params(factory.create(options, seed=0, n_objectives=2), n=5, directions=("maximize", "minimize"))) == 5


def _pruned_at(pruner, epochs_reported: list[float], others: list[list[float]]) -> list[bool]:
    """Whether ``pruner`` prunes a trial at each epoch of ``epochs_reported``, after ``others`` completed."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for curve in others:
        study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=curve[-1],
                                                  intermediate_values=dict(enumerate(curve))))
    trial = study.ask()
    decisions = []
    for epoch, value in enumerate(epochs_reported):
        trial.report(value, epoch)
        decisions.append(trial.should_prune())
    return decisions


def test_median_pruner_waits_for_its_warmup_share_of_the_epochs():
    pruner = PRUNERS.get("median").create({"n_startup_trials": 1, "warmup_fraction": 0.25}, epochs=8)  # 2 warm-up epochs
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    assert _pruned_at(pruner, [0.1] * 4, others=[[0.9] * 8]) == [False, False, True, True]


def test_median_pruner_never_prunes_during_its_startup_trials():
    pruner = PRUNERS.get("median").create({"n_startup_trials": 2, "warmup_fraction": 0.0}, epochs=8)
    assert _pruned_at(pruner, [0.1] * 3, others=[[0.9] * 8]) == [False, False, False]


def test_other_pruners():
    assert isinstance(PRUNERS.get("hyperband").create({"reduction_factor": 3}, epochs=9), optuna.pruners.HyperbandPruner)
    halving = PRUNERS.get("successive_halving").create({"min_resource": 2, "reduction_factor": 4}, epochs=9)
    assert isinstance(halving, optuna.pruners.SuccessiveHalvingPruner)
    assert (halving._min_resource, halving._reduction_factor) == (2, 4)
    none = PRUNERS.get("none").create({}, epochs=9)
    assert isinstance(none, optuna.pruners.NopPruner)
    assert _pruned_at(none, [0.0] * 5, others=[[1.0] * 5] * 3) == [False] * 5


def _decisions_by_epoch(pruner, epochs: int, completed: int) -> list[bool]:
    """The pruner's answer at epochs 1..epochs (reported 1-based, as the engine does) for a trial far below
    ``completed`` finished trials: it prunes wherever it may."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(completed):
        study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.9,
                                                  intermediate_values={e: 0.9 for e in range(1, epochs + 1)}))
    trial = study.ask()
    decisions = []
    for epoch in range(1, epochs + 1):
        trial.report(0.1, epoch)
        decisions.append(trial.should_prune())
    return decisions


@pytest.mark.parametrize("name, options", [
    ("median", {"n_startup_trials": 0, "warmup_fraction": 0.0}),
    ("median", {"n_startup_trials": 2, "warmup_fraction": 0.25}),
    ("median", {"n_startup_trials": 3, "warmup_fraction": 0.5}),
    ("successive_halving", {"min_resource": 3, "reduction_factor": 3}),
    ("successive_halving", {"min_resource": 1, "reduction_factor": 3}),
    ("none", {}),
])
@pytest.mark.parametrize("completed", [1, 2, 4])
def test_may_prune_is_false_exactly_where_the_pruner_cannot_prune(name, options, completed):
    """The engine skips asking the pruner (a storage read) where ``may_prune`` is False: there the pruner
    never prunes; the median pruner and no pruner say it exactly."""
    factory, epochs = PRUNERS.get(name), 8
    decisions = _decisions_by_epoch(factory.create(options, epochs=epochs), epochs, completed)
    allowed = [factory.may_prune(options, epochs=epochs, epoch=e, completed=completed) for e in range(1, epochs + 1)]
    assert not any(d and not a for d, a in zip(decisions, allowed, strict=True))
    if name in ("median", "none"):
        assert decisions == allowed


def test_hyperband_may_always_prune():
    assert PRUNERS.get("hyperband").may_prune({"reduction_factor": 3}, epochs=9, epoch=1, completed=0)
