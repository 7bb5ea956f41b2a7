"""The NAS plots on the study page: accuracy against costs with the Pareto set, what matters, win rates, learning
curves against the pruner's rungs, representation metrics."""

from __future__ import annotations

import json
import random

import optuna
import pytest
from conftest import attention_decides, made_up_study, made_up_trial
from optuna.trial import TrialState

from iasf_search.results.access import open_stored_study, stored_study
from iasf_search.results.study_plots import TITLES, pareto_front, study_figures
from iasf_search.results.study_snapshot import take_snapshot


def title(fig) -> str:
    return fig.layout.title.text


def test_pareto_front_keeps_the_points_nothing_beats():
    points = [(0, 10.0, 0.9), (1, 20.0, 0.95), (2, 15.0, 0.85), (3, 30.0, 0.95), (4, 5.0, 0.8)]
    assert pareto_front(points) == [4, 0, 1]


def test_every_plot_of_a_made_up_study():
    study = made_up_study(40)
    figures = study_figures(take_snapshot(stored_study(study)), top=4)
    assert list(figures) == ["iasf-accuracy-vs-flops", "iasf-accuracy-vs-params", "iasf-what-matters", "iasf-op-win-rates",
                             "iasf-learning-curves"]  # no representation metric recorded: no metrics plot
    assert title(figures["iasf-accuracy-vs-params"]) == "Accuracy against parameters (Pareto set ringed)"
    assert title(figures["iasf-what-matters"]) == TITLES["what-matters"]
    bars = figures["iasf-what-matters"].data[0]
    assert bars.y[-1] == "op attention"  # drawn bottom-up: the most important on top
    wins = figures["iasf-op-win-rates"].data[0]
    assert wins.x[0] == "attention"
    curves = figures["iasf-learning-curves"]
    assert [t.name for t in curves.data][1:] == [f"#{t.number}" for t in take_snapshot(stored_study(study)).ranked[:4]]
    assert curves.data[0].name == "other trials" and curves.data[0].x.count(None) == 36


def test_the_cost_plot_rings_the_pareto_set_and_colours_by_dominant_op():
    study = made_up_study(30, seed=3)
    snap = take_snapshot(stored_study(study))
    fig = study_figures(snap)["iasf-accuracy-vs-params"]
    families = [t for t in fig.data if t.name.startswith("mostly ")]
    assert sum(len(t.x) for t in families) == 30
    ringed = next(t for t in fig.data if t.name == "Pareto set")
    points = [(t.number, t.user_attrs["params"], t.user_attrs["val_accuracy"]) for t in snap.complete]
    assert list(ringed.text) == [f"#{n}" for n in pareto_front(points)]
    hover = families[0].customdata[0]
    assert isinstance(hover[0], int) and hover[1].startswith("w")  # trial number and architecture line


def test_learning_curves_mark_the_epochs_the_pruner_stopped_trials_after():
    study = made_up_study(6)
    rng = random.Random(5)
    for i, epoch in enumerate((1, 1, 1, 3)):
        study.add_trial(made_up_trial(6 + i, rng, attention_decides, state=TrialState.PRUNED, pruned_at_epoch=epoch))
    fig = study_figures(take_snapshot(stored_study(study)))["iasf-learning-curves"]
    lines = [(shape.x0, annotation.text) for shape, annotation in zip(fig.layout.shapes, fig.layout.annotations, strict=True)]
    assert lines == [(1, "3 pruned"), (3, "1 pruned")]


def test_too_few_trials_draw_titled_figures_that_say_why():
    figures = study_figures(take_snapshot(stored_study(made_up_study(3))))
    matters = figures["iasf-what-matters"]
    assert title(matters) == TITLES["what-matters"]
    assert matters.layout.annotations[0].text.startswith("needs 5 complete trials") and not matters.data
    empty = study_figures(take_snapshot(stored_study(optuna.create_study())))
    assert title(empty["iasf-learning-curves"]) == TITLES["learning-curves"] and not empty["iasf-learning-curves"].data


def test_a_search_records_metrics_that_are_plotted(page_search):
    _, _, url = page_search
    figures = study_figures(take_snapshot(open_stored_study(url, "tiny")))
    assert "iasf-metrics" in figures and title(figures["iasf-metrics"]) == TITLES["metrics"]
    assert 1 <= len(figures["iasf-metrics"].data) <= 3
    assert {"iasf-accuracy-vs-params", "iasf-accuracy-vs-flops"} <= set(figures)


def test_figures_grow_slowly_with_the_study():
    small = sum(len(f.to_json()) for f in study_figures(take_snapshot(stored_study(made_up_study(50)))).values())
    large = sum(len(f.to_json()) for f in study_figures(take_snapshot(stored_study(made_up_study(400)))).values())
    assert large < 8 * small  # 8x the trials: less than 8x the bytes (rounded numbers, one grey trace)
    assert all(json.loads(f.to_json()) for f in study_figures(take_snapshot(stored_study(made_up_study(10)))).values())


def test_several_objectives_draw_the_accuracy_s_recorded_curve():
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="two")
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["val accuracy", "params"])
    rng = random.Random(6)
    for i in range(4):
        made = made_up_trial(i, rng, attention_decides)
        study.add_trial(optuna.trial.create_trial(
            values=[made.value, made.user_attrs["params"]], user_attrs=made.user_attrs,
            system_attrs={**made.system_attrs, "epoch_values": {"1": [0.5, 9.0], "2": [made.value, 9.0]}}))
    fig = study_figures(take_snapshot(stored_study(study)))["iasf-learning-curves"]
    assert fig.layout.yaxis.title.text == "val accuracy"
    coloured = [t for t in fig.data if t.name != "other trials"]
    assert coloured and all(list(t.x) == [1, 2] and t.y[0] == 0.5 for t in coloured)
