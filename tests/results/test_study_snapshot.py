"""A study read once for its page: the engine's order of its trials, and architectures parsed once."""

from __future__ import annotations

import random

import optuna
from conftest import attention_decides, made_up_study, made_up_trial
from optuna.trial import create_trial

from iasf_search.results.access import stored_study
from iasf_search.results.study_snapshot import engine_order, take_snapshot


def test_one_objective_ranks_by_value_then_validation_loss():
    study = optuna.create_study(direction="maximize")
    for value, loss in ((0.9, 0.5), (0.95, 0.4), (0.95, 0.3), (0.8, 0.1)):
        study.add_trial(create_trial(value=value, user_attrs={"val_loss": loss}))
    trials = study.get_trials()
    assert [t.number for t in engine_order(study, trials, [])] == [2, 1, 0, 3]


def test_several_objectives_put_the_pareto_set_first_then_accuracy():
    study = made_up_study(12, directions=("maximize", "minimize"))
    snap = take_snapshot(stored_study(study))
    front = {t.number for t in snap.best}
    ranked = snap.ranked
    assert {t.number for t in ranked[:len(front)]} == front
    head = [t.user_attrs["val_accuracy"] for t in ranked[:len(front)]]
    assert head == sorted(head, reverse=True)


def test_architectures_are_parsed_once_across_snapshots():
    study = made_up_study(6)
    graphs: dict = {}
    first = take_snapshot(stored_study(study), graphs)
    assert sorted(graphs) == list(range(6)) and len(first.complete) == 6
    kept = graphs[0]
    study.add_trial(made_up_trial(6, random.Random(9), attention_decides))
    second = take_snapshot(stored_study(study), graphs)
    assert graphs[0] is kept and sorted(graphs) == list(range(7)) and len(second.complete) == 7
    assert second.trial_url(3) == f"/dashboard/studies/{second.study_id}/trials?numbers=3"
