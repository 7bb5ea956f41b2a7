"""Pareto-aware pruning (``pareto_halving``): non-dominated sorting, crowding, the promotion rule at a rung,
agreement with Optuna's successive halving for one objective, and a two-objective search end to end."""

from __future__ import annotations

import math
import random

import numpy as np
import optuna
import pytest
from conftest import run
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from iasf_search.plugins.pareto_pruning import (
    ParetoHalvingPruner,
    crowding_distances,
    non_dominated_ranks,
    orient,
    promoted,
)
from iasf_search.results.records import EPOCH_VALUES, epoch_values

MAX, MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE


# --- non-dominated sorting and crowding -------------------------------------------------------------

def test_ranks_of_known_fronts():
    points = np.array([[1, 4], [2, 3], [3, 2], [4, 1],  # front 0
                       [3, 3], [2, 4],                   # front 1: each dominated by a front-0 point only
                       [4, 4],                           # front 2: dominated by [3, 3]
                       [2, 3]])                          # a duplicate shares its twin's rank
    assert non_dominated_ranks(points).tolist() == [0, 0, 0, 0, 1, 1, 2, 0]


def test_ranks_in_three_objectives_and_in_one():
    points = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 2]])
    assert non_dominated_ranks(points).tolist() == [0, 0, 0, 1, 1]
    assert non_dominated_ranks(np.array([[3.0], [1.0], [2.0], [1.0]])).tolist() == [2, 0, 1, 0]
    assert non_dominated_ranks(np.empty((0, 2))).tolist() == []


def test_ranks_agree_with_a_brute_force_definition():
    rng = np.random.default_rng(0)
    points = rng.integers(0, 5, size=(40, 3)).astype(float)  # many ties and duplicates
    ranks = non_dominated_ranks(points)

    def dominates(a, b):
        return bool((a <= b).all() and (a < b).any())

    for i, p in enumerate(points):
        dominators = [ranks[j] for j, q in enumerate(points) if dominates(q, p)]
        assert ranks[i] == (max(dominators) + 1 if dominators else 0)


def test_crowding_distance_of_a_known_front():
    front = np.array([[0, 4], [1, 3.5], [3, 1], [4, 0]], dtype=float)
    d = crowding_distances(front)
    assert math.isinf(d[0]) and math.isinf(d[3])
    assert d[1] == pytest.approx((3 - 0) / 4 + (4 - 1) / 4)  # neighbours 0 and 3 in x, 4 and 1 in y
    assert d[2] == pytest.approx((4 - 1) / 4 + (3.5 - 0) / 4)
    assert crowding_distances(front[:2]).tolist() == [math.inf, math.inf]
    flat = np.array([[0, 1], [1, 1], [3, 1]], dtype=float)  # an objective without spread adds nothing
    assert crowding_distances(flat).tolist() == [math.inf, pytest.approx(3 / 3), math.inf]


def test_orient_negates_maximised_objectives_and_makes_nan_the_worst():
    points = orient([[0.9, 100.0], [float("nan"), float("nan")]], [MAX, MIN])
    assert points[0].tolist() == [-0.9, 100.0]
    assert np.isfinite(points).all() and (points[1] > points[0]).all()


# --- rungs and the promotion rule --------------------------------------------------------------------

def test_rungs():
    pruner = ParetoHalvingPruner(min_resource=2, reduction_factor=3, max_resource=20)
    assert [e for e in range(1, 60) if pruner.is_rung(e)] == [2, 6, 18]
    assert [e for e in range(1, 60) if ParetoHalvingPruner(min_resource=1, reduction_factor=2, max_resource=8).is_rung(e)] == [1, 2, 4]
    assert [e for e in range(1, 30) if ParetoHalvingPruner(min_resource=1, max_resource=None).is_rung(e)] == [1, 3, 9, 27]
    with pytest.raises(ValueError):
        ParetoHalvingPruner(reduction_factor=1)


def test_promotion_rule_directly():
    d = [MAX, MIN]  # accuracy, cost
    front = [[0.9, 10.0], [0.8, 5.0], [0.7, 3.0], [0.6, 2.0], [0.5, 1.0]]
    # n = 6 >= 3: the best 6 // 3 = 2 continue, ties at the cut too
    assert promoted([0.95, 20.0], front, d, 3)                      # a boundary point of front 0 (crowding inf)
    assert not promoted([0.85, 7.0], front, d, 3)                  # non-dominated, but crowded between two others
    assert not promoted([0.4, 11.0], front, d, 3)                  # dominated
    # n < reduction_factor: continue iff nothing dominates it
    assert promoted([0.85, 7.0], [[0.9, 10.0]], d, 3)
    assert not promoted([0.85, 7.0], [[0.9, 7.0]], d, 3)
    assert promoted([0.85, 7.0], [], d, 3)
    assert promoted([0.85, 7.0], [[0.85, 7.0]] * 5, d, 3)          # all equal: every one ties at the cut


def add(study: optuna.Study, state: TrialState, vectors: dict[int, list[float]]) -> FrozenTrial:
    """Add a trial with ``epoch_values`` (engine format: string keys) to ``study``; return it as stored."""
    values = None
    if state == TrialState.COMPLETE:
        values = vectors[max(vectors)]
    trial = optuna.trial.create_trial(state=state, values=values, params={}, distributions={},
                                      system_attrs={EPOCH_VALUES: {str(k): v for k, v in vectors.items()}})
    study.add_trial(trial)
    return study.trials[-1]


def curve(acc_at_2: float, cost: float, epochs: int) -> dict[int, list[float]]:
    """An accuracy curve through ``acc_at_2`` at epoch 2, with a fixed cost."""
    return {e: [acc_at_2 + 0.01 * (e - 2), cost] for e in range(1, epochs + 1)}


@pytest.fixture
def study() -> optuna.Study:
    """A two-objective study (accuracy, cost) with three finished or running trials that reached epoch 2."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    add(study, TrialState.COMPLETE, curve(0.90, 10.0, 6))
    add(study, TrialState.PRUNED, curve(0.70, 4.0, 2))
    add(study, TrialState.RUNNING, curve(0.80, 6.0, 3))
    return study


PRUNER = ParetoHalvingPruner(min_resource=2, reduction_factor=3, max_resource=6)  # rungs: 2 (6 is the last epoch)


def test_a_dominated_trial_is_pruned_at_a_rung(study):
    trial = add(study, TrialState.RUNNING, curve(0.60, 8.0, 2))  # worse and dearer than the 0.80 / 6.0 trial
    assert PRUNER.prune(study, trial)


def test_a_non_dominated_trial_continues(study):
    assert not PRUNER.prune(study, add(study, TrialState.RUNNING, curve(0.95, 12.0, 2)))  # most accurate
    assert not PRUNER.prune(study, add(study, TrialState.RUNNING, curve(0.50, 1.0, 2)))   # cheapest


def test_a_trial_between_rungs_or_past_the_last_continues(study):
    assert not PRUNER.prune(study, add(study, TrialState.RUNNING, curve(0.60, 8.0, 1)))
    assert not PRUNER.prune(study, add(study, TrialState.RUNNING, curve(0.60, 8.0, 3)))
    late = ParetoHalvingPruner(min_resource=2, reduction_factor=3, max_resource=2)
    assert not late.prune(study, add(study, TrialState.RUNNING, curve(0.60, 8.0, 2)))  # epoch 2 is the last: no rung
    assert not PRUNER.prune(study, add(study, TrialState.RUNNING, {}))  # nothing recorded


def test_the_first_trial_at_a_rung_continues():
    study = optuna.create_study(directions=["maximize", "minimize"])
    add(study, TrialState.RUNNING, curve(0.99, 1.0, 1))  # has not reached the rung yet
    assert not PRUNER.prune(study, add(study, TrialState.RUNNING, curve(0.10, 100.0, 2)))


def test_failed_trials_do_not_compete():
    study = optuna.create_study(directions=["maximize", "minimize"])
    add(study, TrialState.FAIL, curve(0.99, 1.0, 2))
    assert not PRUNER.prune(study, add(study, TrialState.RUNNING, curve(0.10, 100.0, 2)))
    add(study, TrialState.PRUNED, curve(0.99, 1.0, 2))
    assert PRUNER.prune(study, add(study, TrialState.RUNNING, curve(0.10, 100.0, 2)))


def test_the_rung_value_not_the_latest_of_others_is_compared():
    """Another trial far past the rung is judged by what it had at the rung."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    add(study, TrialState.COMPLETE, {1: [0.1, 5.0], 2: [0.2, 5.0], 3: [0.99, 5.0]})
    assert not PRUNER.prune(study, add(study, TrialState.RUNNING, {1: [0.3, 5.0], 2: [0.5, 5.0]}))
    assert PRUNER.prune(study, add(study, TrialState.RUNNING, {1: [0.3, 6.0], 2: [0.1, 6.0]}))


# --- one objective: the same decisions as Optuna's successive halving -------------------------------

@pytest.mark.parametrize("parallel", [1, 3])
def test_one_objective_matches_optunas_successive_halving(parallel):
    """Random learning curves reported through ``trial.report``; ``parallel`` trials advance in turn."""
    rng = random.Random(parallel)
    curves = [[rng.random() + 0.05 * step for step in range(1, 10)] for _ in range(30)]
    outcomes = []
    for pruner in (optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
                   ParetoHalvingPruner(min_resource=1, reduction_factor=3)):
        study = optuna.create_study(direction="maximize", pruner=pruner)
        pruned_at: dict[int, int] = {}
        queue = list(range(len(curves)))
        active: list[tuple[int, optuna.Trial, int]] = []
        while queue or active:
            while queue and len(active) < parallel:
                active.append((queue.pop(0), study.ask(), 0))
            i, trial, step = active.pop(0)
            step += 1
            trial.report(curves[i][step - 1], step)
            if trial.should_prune():
                pruned_at[i] = step
                study.tell(trial, state=TrialState.PRUNED)
            elif step == len(curves[i]):
                study.tell(trial, curves[i][-1])
            else:
                active.append((i, trial, step))
        outcomes.append(pruned_at)
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0]) > 10  # the comparison is not vacuous


# --- registration and a search end to end -------------------------------------------------------------

def test_registered_as_a_multi_objective_pruner(components):
    factory = components.pruners.get("pareto_halving")
    assert factory.multi_objective
    assert components.pruners.owner("pareto_halving") == "iasf_search.plugins.pareto_pruning"
    pruner = factory.create({"min_resource": 1, "reduction_factor": 2}, epochs=8)
    assert isinstance(pruner, ParetoHalvingPruner)
    assert (pruner.min_resource, pruner.reduction_factor, pruner.max_resource) == (1, 2, 8)


def test_two_objective_search_prunes_at_rungs(capsys, tmp_path, write_space):
    """Through the engine: in a study with several objectives it records ``epoch_values`` and asks the pruner each epoch."""
    write_space({
        "training.epochs": 4, "training.lr": 0.01, "training.batch_size": 32,
        "objectives": [{"metric": "accuracy"}, {"metric": "flops"}],
        "search": {"sampler": "random", "pruner": "pareto_halving",
                   "pruner_options": {"min_resource": 1, "reduction_factor": 2}, "seed": 0},
    })
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "12", "-q")
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.trials) == 12
    rungs = {1, 2}  # min_resource * 2**k below the last epoch, 4
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and complete
    for t in pruned:
        epoch = t.user_attrs["pruned_at_epoch"]
        assert epoch in rungs
        history = epoch_values(t)
        assert sorted(history) == list(range(1, epoch + 1))
        assert all(len(v) == 2 and v[1] == t.user_attrs["cost.flops"] for v in history.values())
    for t in complete:
        if "reused_from" in t.user_attrs:
            continue  # copied from an identical finished trial, not trained
        history = epoch_values(t)
        assert sorted(history) == [1, 2, 3, 4]
        assert history[4] == pytest.approx(t.values)
    # the decision replays: one process runs the trials in turn, so a trial's competitors at its rung were
    # the earlier trials that reached it
    for t in pruned:
        epoch = t.user_attrs["pruned_at_epoch"]
        others = [epoch_values(o)[epoch] for o in study.trials if o.number < t.number and epoch in epoch_values(o)]
        assert not promoted(epoch_values(t)[epoch], others, study.directions, 2)
