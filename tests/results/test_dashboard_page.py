"""Writing the study page where optuna-dashboard reads it: the study's note and its plotly figures."""

from __future__ import annotations

import json

import optuna
from conftest import made_up_study
from optuna_dashboard import get_note

from iasf_search.optuna_internals import storage_of
from iasf_search.results.access import stored_study
from iasf_search.results.dashboard_page import StudyPage


def plot_ids(study: optuna.Study) -> set[str]:
    storage = storage_of(study)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))
    return {key.split(":")[2] for key in attrs if key.startswith("dashboard:plot_data:")}


def stored_figure(study: optuna.Study, plot_id: str) -> dict:
    storage = storage_of(study)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))
    prefix = f"dashboard:plot_data:{plot_id}:"
    return json.loads("".join(attrs[f"{prefix}{i}"] for i in range(sum(k.startswith(prefix) for k in attrs))))


def test_publish_writes_the_note_and_every_plot(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'x.db'}", study_name="made-up")
    for trial in made_up_study(8).get_trials():
        study.add_trial(trial)
    page = StudyPage(top=3, storage_url="sqlite:///x.db")
    seconds = page.publish(stored_study(study))
    assert seconds > 0
    assert get_note(study).startswith("## made-up: what the search found")
    assert "iasf-search dashboard --storage sqlite:///x.db --study made-up" in get_note(study)
    assert plot_ids(study) == {"iasf-accuracy-vs-flops", "iasf-accuracy-vs-params", "iasf-what-matters", "iasf-op-win-rates",
                               "iasf-learning-curves"}
    assert stored_figure(study, "iasf-what-matters")["layout"]["title"]["text"].startswith("What matters")
    assert sorted(page.graphs) == list(range(8))  # kept for the next refresh


def test_a_refresh_replaces_the_page_and_parts_can_be_switched_off(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'x.db'}", study_name="made-up")
    trials = made_up_study(9).get_trials()
    for trial in trials[:6]:
        study.add_trial(trial)
    StudyPage().publish(stored_study(study))
    for trial in trials[6:]:
        study.add_trial(trial)
    StudyPage(plots=False).publish(stored_study(study))
    assert "(9 of 9 trials finished)" in get_note(study)
    curves = stored_figure(study, "iasf-learning-curves")  # not redrawn: still the 6 trials' plot
    assert sum(len(trace["x"]) for trace in curves["data"]) < 9 * 4
    other = optuna.create_study(storage=f"sqlite:///{tmp_path / 'y.db'}", study_name="quiet")
    StudyPage(note=False, plots=False).publish(stored_study(other))
    assert get_note(other) == "" and plot_ids(other) == set()
