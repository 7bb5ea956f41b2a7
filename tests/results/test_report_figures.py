"""The report's figures, each a PNG or the reason there is none, and the Pareto plot a search writes
(:mod:`iasf_search.results.report_figures`)."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from iasf_search.graph import to_json
from iasf_search.results.artifacts import CHECKPOINT, HEATMAPS, open_artifact_store, upload_bytes
from iasf_search.results.records import ARCHITECTURE, set_record
from iasf_search.results.report_figures import (
    architecture_diagram,
    heatmaps_figure,
    history_figures,
    importances_figure,
    metrics_figure,
    pareto_figure,
    use_agg,
    write_pareto_plot,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def trial(values=None, state=TrialState.COMPLETE, x=0.5, system_attrs=None, **user_attrs):
    return create_trial(state=state, values=values, params={"x": x}, distributions={"x": FloatDistribution(0, 1)},
                        user_attrs=user_attrs, system_attrs=system_attrs or {})


def study_of(*trials, directions=("maximize",)):
    study = optuna.create_study(directions=list(directions))
    for t in trials:
        study.add_trial(t)
    return study


@pytest.fixture(autouse=True)
def _agg():
    use_agg()


def test_write_pareto_plot_draws_two_or_three_objectives_only(tmp_path):
    two = study_of(trial([0.9, 50.0], x=0.1), trial([0.5, 10.0], x=0.7), trial([0.4, 60.0], x=0.9), directions=("maximize", "minimize"))
    path = write_pareto_plot(two, tmp_path / "runs" / "deep" / "s-pareto.png")
    assert path == tmp_path / "runs" / "deep" / "s-pareto.png"
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    one = study_of(trial([0.9]))
    assert write_pareto_plot(one, tmp_path / "one.png") is None
    assert write_pareto_plot(study_of(directions=("maximize", "minimize")), tmp_path / "empty.png") is None
    four = study_of(trial([0.1, 1.0, 2.0, 3.0]), directions=("maximize", "minimize", "minimize", "minimize"))
    assert write_pareto_plot(four, tmp_path / "four.png") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_pareto_figure_says_why_it_is_missing():
    names = ["a", "b", "c", "d"]
    four = study_of(trial([0.1, 1.0, 2.0, 3.0]), directions=("maximize", "minimize", "minimize", "minimize"))
    fig = pareto_figure(four, names, four.trials)
    assert fig.png is None and fig.note == "the study has 4 objectives; the Pareto plot draws two or three"
    assert pareto_figure(four, names, []).note == "no trial completed yet"


def test_history_has_one_figure_per_objective():
    study = study_of(trial([0.9, 50.0], x=0.1), trial([0.5, 10.0], x=0.7), directions=("maximize", "minimize"))
    figures = history_figures(study, ["val accuracy", "params"], study.trials)
    assert [(f.title, f.filename) for f in figures] == [("Optimisation history: val accuracy", "history.png"),
                                                         ("Optimisation history: params", "history-2.png")]
    assert all(f.png.startswith(PNG_SIGNATURE) and not f.note for f in figures)
    assert "params of every completed trial" in figures[1].caption
    (empty,) = history_figures(study_of(), ["val accuracy"], [])
    assert (empty.title, empty.png, empty.note) == ("Optimisation history", None, "no trial completed yet")


def test_importances_need_two_completed_trials():
    study = study_of(trial([0.5]))
    fig = importances_figure(study, study.trials)
    assert fig.png is None and fig.note == "needs at least 2 completed trials; the study has 1"


def test_architecture_diagram_of_the_lead_trial(make_graph, components):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 1}}], width=8)
    drawn = trial([0.5], system_attrs={ARCHITECTURE: to_json(graph)}, summary="p2 w8 mlp1", arch_hash="0123456789")
    study = study_of(drawn)
    fig = architecture_diagram(study.trials[0], components)
    assert fig.png.startswith(PNG_SIGNATURE) and fig.filename == "architecture.png"
    assert fig.caption.startswith("trial #0: p2 w8 mlp1 — nodes top to bottom by depth")
    assert architecture_diagram(None, components).note == "no trial completed yet"
    assert architecture_diagram(study_of(trial([0.5])).trials[0], components).note == "trial #0 does not record its architecture"


def test_heatmaps_say_why_they_are_missing(tmp_path, components):
    study = study_of(trial([0.5]))
    assert heatmaps_figure(study, None, None, components).note == "no trial completed yet"
    fig = heatmaps_figure(study, study.trials[0], None, components)
    assert fig.png is None and fig.note.startswith("no heat maps: no artifact store (pass --artifacts DIR")
    store = open_artifact_store(tmp_path / "artifacts")
    fig = heatmaps_figure(study, study.trials[0], store, components)
    assert fig.note.startswith("no heat maps: trial #0 kept no checkpoint")


def test_heatmaps_fall_back_to_the_file_the_search_attached(tmp_path, components):
    """No checkpoint to recompute from: the trial's attached heat-map PNG, from the trial that trained the weights."""
    store = open_artifact_store(tmp_path / "artifacts")
    study = optuna.create_study(direction="maximize")
    t = study.ask()
    upload_bytes(t, store, HEATMAPS, PNG_SIGNATURE + b"stored", "image/png")
    study.tell(t, 0.5)
    study.add_trial(trial([0.5], reused_from=0))
    fig = heatmaps_figure(study, study.trials[1], store, components)
    assert fig.png == PNG_SIGNATURE + b"stored"
    assert fig.caption.startswith(f"trial #0's {HEATMAPS} as the search attached it (not recomputed: trial #1 kept no checkpoint")


def test_heatmaps_of_a_checkpoint_the_store_lost(tmp_path, components, make_graph):
    store = open_artifact_store(tmp_path / "artifacts")
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("data", {"sample_shape": [1, 8, 8], "num_classes": 10})
    t = study.ask()
    set_record(t, ARCHITECTURE, to_json(make_graph([{"op": "mlp", "config": {"expansion": 1}}], width=8)))
    upload_bytes(t, store, CHECKPOINT, b"weights", "application/octet-stream")
    study.tell(t, 0.5)
    for f in (tmp_path / "artifacts").iterdir():
        f.unlink()
    fig = heatmaps_figure(study, study.trials[0], store, components)
    assert fig.png is None
    assert fig.note.startswith("no heat maps: cannot rebuild trial #0's model: BadInput: trial #0 lists model.safetensors")


def test_metrics_figure_plots_the_preferred_metric_against_validation_accuracy():
    trials = [trial([v], val_accuracy=v, **{"aux.cds": {"cosine": c}, "aux.other": 1.0, "aux.more": 2.0})
              for v, c in ((0.5, 0.1), (0.7, 0.3))]
    study = study_of(*trials, trial([0.6], **{"aux.other": 3.0}))  # no val_accuracy: not a point
    fig = metrics_figure(study.trials, study.trials[1])
    assert fig.png.startswith(PNG_SIGNATURE)
    assert fig.caption == "aux.cds.cosine (measured after training) against validation accuracy, 2 trials (metrics.png)."


def test_metrics_figure_takes_the_most_common_metric_otherwise():
    study = study_of(trial([0.5], val_accuracy=0.5, **{"aux.b": 1.0, "aux.a": 2.0}), trial([0.6], val_accuracy=0.6, **{"aux.b": 1.5}))
    assert metrics_figure(study.trials, None).caption.startswith("aux.b (measured after training)")


def test_metrics_figure_says_why_it_is_missing():
    study = study_of(trial([0.5], val_accuracy=0.5))
    fig = metrics_figure(study.trials, None)
    assert fig.png is None and fig.note.startswith("no trial recorded representation metrics")
    study = study_of(trial([0.5], **{"aux.cds": {"cosine": 0.2}}))
    assert metrics_figure(study.trials, None).note == "no completed trial recorded both aux.cds.cosine and a validation accuracy"
