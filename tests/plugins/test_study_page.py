"""The study_page plugin: a search writes the dashboard's study page at its start, between trials (rate-limited, in
worker 0) and at its end (whichever process leaves no trial running)."""

from __future__ import annotations

import pytest
from conftest import made_up_study
from optuna_dashboard import get_note

import iasf_search
from iasf_search.optuna_internals import storage_of
from iasf_search.plugins import study_page
from iasf_search.results.dashboard_page import StudyPage


def plots_of(study) -> set[str]:
    storage = storage_of(study)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))
    return {key.split(":")[2] for key in attrs if key.startswith("dashboard:plot_data:")}


def test_a_search_leaves_its_study_page(page_search):
    _, _, url = page_search
    study = iasf_search.load_results(url, "tiny")
    note = get_note(study)
    assert note.startswith("## tiny: what the search found")
    assert "(7 of 7 trials finished)" in note  # the final page counts every trial
    assert {"iasf-accuracy-vs-params", "iasf-accuracy-vs-flops", "iasf-what-matters", "iasf-op-win-rates",
            "iasf-learning-curves", "iasf-metrics"} == plots_of(study)


def test_the_section_switches_the_page_off(write_space, tmp_path):
    path = write_space({"study_page": {"note": False, "plots": False}})
    result = iasf_search.run_search(iasf_search.load_space(path), trials=1)
    assert get_note(result.study) == "" and plots_of(result.study) == set()


def test_a_failing_page_warns_and_the_search_goes_on(write_space, monkeypatch):
    def broken(self, opened):
        raise RuntimeError("no room")

    monkeypatch.setattr(StudyPage, "publish", broken)
    path = write_space()
    with pytest.warns(UserWarning, match=r"the study page was not written \(RuntimeError: no room\)"):
        result = iasf_search.run_search(iasf_search.load_space(path), trials=2)
    assert len([t for t in result.study.trials if t.state.name == "COMPLETE"]) == 2


def test_worker_0_writes_while_the_search_goes_on_the_last_out_at_the_end(make_space, components, monkeypatch):
    written: list[int] = []
    monkeypatch.setattr(StudyPage, "publish", lambda self, opened: written.append(len(opened.study.trials)) or 0.0)
    study = made_up_study(3)
    space = make_space()
    study_page.iasf_study_start(study=study, space=space, components=components, worker=1)
    trial = study.get_trials()[-1]
    study_page.iasf_trial_end(study=study, trial=trial)
    assert written == []  # another worker never writes while the search goes on
    running = study.ask()
    study_page.iasf_study_end(study=study)
    assert written == []  # nor at its end while a trial runs elsewhere
    study.tell(running, 0.5)
    study_page.iasf_study_start(study=study, space=space, components=components, worker=1)
    study_page.iasf_study_end(study=study)
    assert written == [4]  # the last one out writes
    study_page.iasf_study_start(study=study, space=space, components=components, worker=0)
    assert written == [4, 4]  # worker 0 writes at once


def test_refreshes_are_rate_limited_by_time_and_by_their_own_cost(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(study_page.time, "monotonic", lambda: clock[0])
    writer = study_page._Writer(StudyPage(), None, 0, refresh_seconds=60.0, max_share=0.02, last=1000.0, cost=0.5)
    clock[0] += 59
    assert not writer.due()
    clock[0] += 1
    assert writer.due()  # 60 s passed, and 0.5 s / 0.02 = 25 s is less
    writer.cost = 2.0  # a slow refresh waits 2 / 0.02 = 100 s
    assert not writer.due()
    clock[0] += 40
    assert writer.due()
