"""The study note: space, baselines, the engine's pick (and why the dashboard's Best Trial box may differ), the best
architectures, how trials ended, health, and the command that resumes the study."""

from __future__ import annotations

import random
import re

import optuna
from conftest import attention_decides, made_up_study, made_up_trial
from optuna.trial import TrialState, create_trial

from iasf_search.results.access import best_trials, open_stored_study, stored_study
from iasf_search.results.study_note import ending_lines, health_lines, study_note
from iasf_search.results.study_snapshot import take_snapshot


def test_a_finished_search_s_note(page_search):
    _, path, url = page_search
    opened = open_stored_study(url, "tiny")
    note = study_note(take_snapshot(opened), top=3, storage_url=url)
    pick = best_trials(opened.study)[0]
    assert note.startswith("## tiny: what the search found\n")
    assert "**Task** digits: image samples of shape 1x8x8, 10 classes; 1,167 train / 270 validation / 360 test samples." in note
    assert "**Space** 1-2 nodes of attention, conv, mlp, fused by sum, width 16; objective maximize accuracy; sampler random, " \
           "pruner none." in note
    assert re.search(r"\*\*Baselines\*\* \(fitted on the same splits\): 1-NN validation 0\.\d{4}, test 0\.\d{4}; "
                     r"logistic regression validation", note)
    assert f"**The engine's pick: [trial #{pick.number}](/dashboard/studies/1/trials?numbers={pick.number})**" in note
    rows = [line for line in note.splitlines() if line.startswith("| [#")]
    assert len(rows) == 3 and rows[0].startswith(f"| [#{pick.number}](")
    header = next(line for line in note.splitlines() if line.startswith("| trial"))
    assert [c.strip(" \u2003") for c in header.strip("|").split("|")] == ["trial", "val acc", "test acc", "params", "FLOPs",
                                                                          "val loss", "architecture"]
    assert "**How trials ended:** 7 complete." in note
    assert re.search(r"\*\*Health:\*\* 7 trials finished in [\d.]+ min of search \([\d.]+ per minute\); a complete trial "
                     r"takes [\d.]+ s \(median\); engine overhead \d+% of a complete trial's time \(building, costs, evaluation, metrics, "
                     r"records\), \d+% in its training loop", note)
    assert f"**Resume or extend it** (the last command that ran it): `iasf-search --space {path} --storage {url} --trials 7 -q`" in note
    assert f"**Open this page:** `iasf-search dashboard --storage {url} --study tiny`" in note
    assert note.rstrip().endswith("_Written after trial #6 finished (7 of 7 trials finished); the plots on the study's main "
                                  "page are drawn from the same trials._")
    assert note == study_note(take_snapshot(opened), top=3, storage_url=url)  # no clock: two writers write the same


def test_the_note_says_why_the_best_trial_box_names_another_trial():
    study = optuna.create_study(direction="maximize", study_name="ties")
    rng = random.Random(0)
    for number, loss in ((0, 0.4), (1, 0.2)):
        trial = made_up_trial(number, rng, lambda g, lr: 0.95, val_loss=loss)
        study.add_trial(trial)
    note = study_note(take_snapshot(stored_study(study)))
    assert "**The engine's pick: [trial #1]" in note
    assert ("The **Best Trial** box on this page shows #0: Optuna's best, the first trial to reach the best value. The engine "
            "breaks the tie by the lower validation loss: #1 0.2000 against #0 0.4000.") in note


def test_an_infeasible_best_value_is_not_the_pick():
    study = optuna.create_study(direction="maximize", study_name="bounds")
    rng = random.Random(1)
    high = made_up_trial(0, rng, lambda g, lr: 0.99)
    study.add_trial(create_trial(value=0.99, user_attrs=high.user_attrs, system_attrs=high.system_attrs,
                                 constraints={"params": 5.0}))
    low = made_up_trial(1, rng, lambda g, lr: 0.9)
    study.add_trial(create_trial(value=0.9, user_attrs=low.user_attrs, system_attrs=low.system_attrs, constraints={"params": -1.0}))
    note = study_note(take_snapshot(stored_study(study)))
    assert "**The engine's pick: [trial #1]" in note
    assert "It breaks the space's constraints (params), so the engine does not pick it." in note
    assert "2 complete (1 break a constraint)" in note
    assert sum(line.startswith("| [#") for line in note.splitlines()) == 1  # the best table holds feasible trials only


def test_how_trials_ended_counts_rungs_failures_and_running_trials():
    rng = random.Random(2)
    trials = [made_up_trial(i, rng, attention_decides) for i in range(3)]
    trials += [made_up_trial(3 + i, rng, attention_decides, state=TrialState.PRUNED, pruned_at_epoch=epoch)
               for i, epoch in enumerate((1, 1, 3))]
    trials.append(create_trial(state=TrialState.FAIL, user_attrs={"failure_reason": "diverged: loss is NaN"}))
    trials.append(create_trial(state=TrialState.FAIL))
    running = create_trial(state=TrialState.RUNNING)
    assert ending_lines([*trials, running]) == [
        "**How trials ended:** 3 complete; 3 pruned (after epoch 1: 2, after epoch 3: 1); failed or stopped early: "
        "1 diverged, 1 worker lost (no heartbeat; retried); 1 running."]


def test_health_leaves_out_pauses_between_runs():
    import datetime

    trials = made_up_study(4).get_trials()
    start = datetime.datetime(2026, 12, 7, 12, 0, 0)
    for t, begin in zip(trials, (0, 30, 60, 60 + 3600), strict=True):  # an hour's pause before the last trial
        t.datetime_start = start + datetime.timedelta(seconds=begin)
        t.datetime_complete = t.datetime_start + datetime.timedelta(seconds=20)
        t.user_attrs["train_seconds"] = 15.0
    assert health_lines([]) == ["**Health:** no trial finished yet."]
    assert health_lines(trials) == [
        "**Health:** 4 trials finished in 1.7 min of search (2.40 per minute; 1 pauses between runs left out); a complete "
        "trial takes 20.0 s (median); engine overhead 25% of a complete trial's time (building, costs, evaluation, "
        "metrics, records), 75% in its training loop; 10.00 s from one trial's end to the next one's start (median)."]


def test_a_study_with_no_complete_trial():
    study = optuna.create_study(study_name="empty")
    note = study_note(take_snapshot(stored_study(study)))
    assert "**The engine's pick:** none yet (no trial completed)." in note
    assert "**How trials ended:** no trial yet." in note and "### The best" not in note
