"""The JSON event log (plugins/json_event_log.py, ``--log-format json``): one JSON object per line for the study
start, each trial, the end and the summary; errors as an event; strict JSON."""

from __future__ import annotations

import io
import json

import optuna
import pytest
from conftest import run
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import iasf_search.cli
from iasf_search.plugins.json_event_log import JsonEventLog, encode, error_event, jsonable, summary_event
from iasf_search.search.storage import safe_url
from iasf_search.search.study import SearchResult

FAST = {"manifold.nodes": 1, "manifold.width": 8, "manifold.ops": {"mlp": {"expansion": 1}}}
"""The tiny space cut to one architecture family: each trial trains in a fraction of a second."""


def events(out: str) -> list[dict]:
    """Every stdout line parsed as one JSON object (fails on anything else)."""
    lines = out.splitlines()
    assert lines, "no output"
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) and "event" in e for e in parsed), out
    return parsed


def add_trial(study: optuna.Study, values: list[float] | None, state: TrialState = TrialState.COMPLETE, **attrs):
    study.add_trial(create_trial(state=state, values=values, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                                 user_attrs=attrs))
    return study.trials[-1]


# -- end to end ------------------------------------------------------------------------------------------


def test_json_events_of_a_search_and_its_resumption(capsys, tmp_path, write_space):
    write_space(FAST)
    url = f"sqlite:///{tmp_path / 'j.db'}"
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "3", "--log-format", "json")
    assert rc == 0, err
    evs = events(out)
    assert [e["event"] for e in evs] == ["study_start", "trial_end", "trial_end", "trial_end", "study_end", "summary"]
    start, *trials, end, summary = evs

    assert start["study"] == "tiny" and start["target"] == 3 and start["finished"] == 0 and start["dataset"] == "digits"
    assert start["objectives"] == [{"metric": "accuracy", "direction": "maximize"}]
    assert isinstance(start["time"], float)

    study = optuna.load_study(study_name="tiny", storage=url)
    assert [t["number"] for t in trials] == [0, 1, 2]
    assert [t["finished"] for t in trials] == [1, 2, 3]  # increases by one per finished trial
    assert all(t["target"] == 3 for t in trials)
    assert [t["time"] for t in trials] == sorted(t["time"] for t in trials)
    for event, stored in zip(trials, study.trials, strict=True):
        assert event["state"] == stored.state.name == "COMPLETE"
        assert event["values"] == stored.values
        assert event["val_accuracy"] == stored.user_attrs["val_accuracy"]
        assert event["test_accuracy"] == stored.user_attrs["test_accuracy"]
        assert event["arch_hash"] == stored.user_attrs["arch_hash"]
        assert event["summary"] == stored.user_attrs["summary"]
        assert event["train_seconds"] == stored.user_attrs["train_seconds"]
        assert "failure_reason" not in event
        assert event["elapsed_s"] >= 0 and event["eta_s"] >= 0
    assert trials[-1]["eta_s"] == 0
    # "best" is the best trial so far, as the study saw it then
    for i, event in enumerate(trials):
        so_far = max(study.trials[: i + 1], key=lambda t: (t.values[0], -t.number))
        assert event["best"] == {"number": so_far.number, "values": so_far.values}

    assert end["finished"] == 3 and end["target"] == 3 and end["trials_run"] == 3

    assert summary["study"] == "tiny" and summary["finished"] == 3 and summary["target"] == 3 and summary["new_trials"] == 3
    assert summary["storage"] == url
    assert str(tmp_path / "j.db") in summary["dashboard"]
    (best,) = summary["best"]
    b = iasf_search.best_trials(study)[0]  # the engine's pick
    assert best == {"number": b.number, "values": b.values, "val_accuracy": b.user_attrs["val_accuracy"],
                    "test_accuracy": b.user_attrs["test_accuracy"], "params": b.user_attrs["params"],
                    "arch_hash": b.user_attrs["arch_hash"], "summary": b.user_attrs["summary"]}
    # the same trial `iasf-search best` reports
    rc, best_out, err = run(capsys, "best", "--space", "tiny.yaml", "--storage", url)
    assert rc == 0, err
    assert f"best trial #{best['number']}:" in best_out and f"architecture {best['arch_hash']}" in best_out

    # resuming to 4: the start event says 3 are done, one trial runs
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "4", "--log-format", "json")
    assert rc == 0, err
    evs = events(out)
    assert [e["event"] for e in evs] == ["study_start", "trial_end", "study_end", "summary"]
    assert evs[0]["finished"] == 3 and evs[1]["number"] == 3 and evs[1]["finished"] == 4
    assert evs[-1]["new_trials"] == 1 and evs[-1]["finished"] == 4

    # nothing left to do: start, end and summary, no trial
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "4", "--log-format", "json")
    assert rc == 0, err
    assert [e["event"] for e in events(out)] == ["study_start", "study_end", "summary"]


def test_json_quiet_prints_only_the_summary(capsys, tmp_path, write_space):
    write_space(FAST)
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", f"sqlite:///{tmp_path / 'q.db'}", "--trials", "2",
                       "--log-format", "json", "-q")
    assert rc == 0, err
    (summary,) = events(out)
    assert summary["event"] == "summary" and summary["finished"] == 2 and summary["new_trials"] == 2
    assert summary["best"][0]["number"] in (0, 1)
    # the baselines the search fitted, and whether the best trial beats each on test accuracy
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'q.db'}")
    assert set(summary["baselines"]) == {"1nn", "logistic_regression"}
    for name, baseline in summary["baselines"].items():
        assert {k: baseline[k] for k in ("val_accuracy", "test_accuracy", "seconds")} == study.user_attrs["baselines"][name]
        assert baseline["beaten"] == (iasf_search.best_trials(study)[0].user_attrs["test_accuracy"] > baseline["test_accuracy"])


def test_json_two_objectives_report_the_pareto_set(capsys, tmp_path, write_space):
    write_space({**FAST, "manifold.width": [8, 16], "objectives": [{"metric": "accuracy"}, {"metric": "params"}]})
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "3", "--log-format", "json")
    assert rc == 0, err
    evs = events(out)
    study = optuna.load_study(study_name="tiny", storage=url)
    trials = [e for e in evs if e["event"] == "trial_end"]
    assert all(e["best"] is None and e["pareto_size"] >= 1 for e in trials)
    assert trials[-1]["pareto_size"] == len(study.best_trials)
    assert evs[0]["objectives"] == [{"metric": "accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}]
    assert sorted(b["number"] for b in evs[-1]["best"]) == sorted(t.number for t in study.best_trials)
    assert all(len(b["values"]) == 2 for b in evs[-1]["best"])


# -- errors in json mode: the text line on stderr, one error event on stdout -----------------------


def test_json_bad_input(capsys, write_space):
    write_space()
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--trials", "0", "--log-format", "json")
    assert rc == 2
    assert err.splitlines() == ["iasf-search: error: --trials must be at least 1, got 0"]
    (event,) = events(out)
    assert event["event"] == "error" and event["kind"] == "bad_input"
    assert event["message"] == "--trials must be at least 1, got 0"


def test_json_error_never_shows_the_storage_password(capsys, write_space):
    write_space()
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", "postgresql://user:s3cret@127.0.0.1:1/db", "--trials", "1",
                       "--log-format", "json")
    assert rc == 2
    (event,) = events(out)
    assert event["kind"] == "bad_input" and "postgresql://user:***@127.0.0.1:1/db" in event["message"]
    assert "s3cret" not in out + err


@pytest.mark.parametrize(("raised", "kind", "code"), [(KeyboardInterrupt(), "interrupted", 130),
                                                       (RuntimeError("disk on fire"), "unexpected", 1)])
def test_json_interrupted_and_unexpected(capsys, monkeypatch, tmp_path, write_space, raised, kind, code):
    write_space(FAST)

    def broken(*args, **kwargs):
        print("stray output from inside the search")  # must not reach stdout in json mode
        raise raised

    monkeypatch.setattr(iasf_search.cli, "run_search", broken)
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", f"sqlite:///{tmp_path / 'e.db'}", "--log-format", "json")
    assert rc == code
    (event,) = events(out)
    assert event["event"] == "error" and event["kind"] == kind
    assert "stray output" in err
    if kind == "unexpected":
        assert event["message"] == "RuntimeError: disk on fire"
        assert "unexpected error: RuntimeError: disk on fire" in err
    else:
        assert "interrupted" in event["message"] and "interrupted" in err


# -- the JSON helpers --------------------------------------------------------------------------------


def test_jsonable_makes_strict_json():
    np = pytest.importorskip("numpy")
    doc = {"nan": float("nan"), "inf": float("-inf"), "ok": 0.5, "tuple": (1, np.float32(0.25)), "np_nan": np.float64("nan"),
           "nested": {1: [float("inf")]}, "other": object}
    out = jsonable(doc)
    assert out["nan"] is None and out["inf"] is None and out["np_nan"] is None
    assert out["ok"] == 0.5 and out["tuple"] == [1, 0.25] and out["nested"] == {"1": [None]}
    assert isinstance(out["other"], str)
    text = encode({"event": "x", **doc})
    assert "NaN" not in text and "Infinity" not in text and "\n" not in text
    assert json.loads(text)["nan"] is None
    with pytest.raises(ValueError):
        error_event("oops", "bad kind")


def test_summary_event_masks_the_storage_password():
    study = optuna.create_study(study_name="s", directions=["maximize"])
    add_trial(study, [0.75], val_accuracy=0.75, test_accuracy=0.7, params=10, arch_hash="h", summary="w8 mlp1")
    url = "postgresql://user:secret@db.example:5432/nas"
    event = summary_event(SearchResult(study, url, 3, 1, 2.5))
    text = encode(event)
    assert "secret" not in text
    assert event["storage"] == safe_url(url) == "postgresql://user:***@db.example:5432/nas"
    assert event["best"][0]["number"] == 0 and event["best"][0]["values"] == [0.75]
    assert event["baselines"] == {}  # none recorded on this study


def test_trial_end_event_of_failed_and_pruned_trials(make_space):
    """NaN metrics become null, failure_reason and reused_from appear only when the trial has them."""
    study = optuna.create_study(study_name="s", directions=["maximize"])
    stream = io.StringIO()
    log = JsonEventLog(stream)
    log.iasf_study_start(study=study, space=make_space(), target=3)
    failed = add_trial(study, None, TrialState.FAIL, failure_reason="RuntimeError: boom", val_accuracy=float("nan"))
    log.iasf_trial_end(study=study, trial=failed)
    pruned = add_trial(study, None, TrialState.PRUNED, failure_reason="diverged: nan loss")
    log.iasf_trial_end(study=study, trial=pruned)
    reused = add_trial(study, [0.5], val_accuracy=0.5, reused_from=7)
    log.iasf_trial_end(study=study, trial=reused)
    log.iasf_study_end(study=study, space=make_space())
    start, f, p, r, end = events(stream.getvalue())
    assert start["finished"] == 0
    assert f["state"] == "FAIL" and f["values"] is None and f["val_accuracy"] is None and f["best"] is None
    assert f["failure_reason"] == "RuntimeError: boom" and f["finished"] == 0
    assert p["state"] == "PRUNED" and p["failure_reason"] == "diverged: nan loss" and p["finished"] == 1
    assert r["reused_from"] == 7 and "failure_reason" not in r and r["best"] == {"number": 2, "values": [0.5]}
    assert "reused_from" not in f and "reused_from" not in p
    assert end["trials_run"] == 3 and end["finished"] == 2
