"""Searches end to end: the Python API, result reuse, failing and diverging trials, life-cycle hooks."""

from __future__ import annotations

import dataclasses
import json
import re

import optuna
import pytest
import torch
from optuna.trial import TrialState

import iasf_search
from iasf_search import graph as arch
from iasf_search.build import count_parameters
from iasf_search.cli import main
from iasf_search.hookspecs import hookimpl
from iasf_search.search.study import MAX_CONSECUTIVE_FAILURES, SearchResult

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

ONE_ARCHITECTURE = {
    "stem": {"patch": 2, "overlap": False, "position": "learned"},
    "manifold.nodes": 1,
    "manifold.width": 8,
    "manifold.ops": {"mlp": {"expansion": 2}},
}
"""With the tiny space's fixed training settings, every trial samples the same model and training run."""


def load(path, **kwargs):
    return iasf_search.load_space(path, **kwargs)


def by_number(study: optuna.Study) -> dict[int, optuna.trial.FrozenTrial]:
    return {t.number: t for t in study.trials}


def test_run_search_python_api(tmp_path, write_space):
    session = iasf_search.open_session(write_space())
    url = f"sqlite:///{tmp_path / 'api.db'}"
    result = iasf_search.run_search(session, trials=2, storage=url, device="cpu")
    assert isinstance(result, SearchResult)
    assert (result.target, result.new_trials, result.storage_url) == (2, 2, url)
    assert result.dashboard_command == f"iasf-search dashboard --storage {url} --study tiny"
    assert result.artifact_dir == tmp_path / "artifacts"
    assert result.study.study_name == "tiny"
    assert len([t for t in result.study.trials if t.state in FINISHED]) == 2

    best = iasf_search.best_trials(result.study)
    assert best == result.best and len(best) == 1
    assert best[0].value == max(t.value for t in result.study.trials if t.state == TrialState.COMPLETE)
    for trial in best:
        graph = iasf_search.trial_architecture(trial)
        model = iasf_search.build_model(graph, session.components, sample_shape=(1, 8, 8), num_classes=10)
        assert count_parameters(model) == trial.user_attrs["params"]
        out = model(torch.rand(4, 1, 8, 8))
        assert out.shape == (4, 10) and torch.isfinite(out).all()

    # the same call resumes and adds nothing; load_results opens the stored study
    again = iasf_search.run_search(session, trials=2, storage=url, device="cpu")
    assert again.new_trials == 0
    stored = iasf_search.load_results(url, "tiny")
    assert [t.number for t in stored.trials] == [0, 1]


def test_study_name_override_and_seed(tmp_path, write_space):
    space = load(write_space())
    url = f"sqlite:///{tmp_path / 'names.db'}"
    a = iasf_search.run_search(space, trials=2, storage=url, study_name="a", seed=11, device="cpu")
    b = iasf_search.run_search(space, trials=2, storage=url, study_name="b", seed=11, device="cpu")
    c = iasf_search.run_search(space, trials=2, storage=url, study_name="c", seed=12, device="cpu")
    assert [t.params for t in a.study.trials] == [t.params for t in b.study.trials]
    assert [t.values for t in a.study.trials] == [t.values for t in b.study.trials]  # same seed, same training
    assert [t.params for t in a.study.trials] != [t.params for t in c.study.trials]


def test_identical_trials_reuse_the_first_result(capsys, tmp_path, write_space):
    write_space(ONE_ARCHITECTURE)
    url = f"sqlite:///{tmp_path / 'reuse.db'}"
    assert main(["--space", "tiny.yaml", "--storage", url, "--trials", "3"]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="tiny", storage=url)
    trials = by_number(study)
    assert sorted(trials) == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in trials.values())
    assert "reused_from" not in trials[0].user_attrs
    for n in (1, 2):
        t = trials[n]
        assert t.user_attrs["reused_from"] == 0
        assert t.value == trials[0].value
        for key in ("arch_hash", "reuse_key", "params", "train_seconds", "val_accuracy", "test_accuracy"):
            assert t.user_attrs[key] == trials[0].user_attrs[key], key
    assert len(re.findall(r"\(reused #0\)", out)) == 2


def test_reuse_requires_the_same_training_settings(tmp_path, write_space):
    space = load(write_space({**ONE_ARCHITECTURE, "training.lr": [0.003, 0.01]}))
    result = iasf_search.run_search(space, trials=5, storage=f"sqlite:///{tmp_path / 'lr.db'}", device="cpu")
    trials = by_number(result.study)
    assert {t.system_attrs["train_config"]["lr"] for t in trials.values()} == {0.003, 0.01}
    trained = [t for t in trials.values() if "reused_from" not in t.user_attrs]
    # each distinct (architecture, training) pair is trained exactly once
    assert len({t.user_attrs["reuse_key"] for t in trained}) == len(trained) == 2
    for t in trials.values():
        if "reused_from" in t.user_attrs:
            source = trials[t.user_attrs["reused_from"]]
            assert source.number < t.number
            assert t.system_attrs["train_config"] == source.system_attrs["train_config"]
            assert t.values == source.values


def test_failing_trials_do_not_stop_the_study(capsys, tmp_path, write_space):
    write_space({**ONE_ARCHITECTURE, "manifold.ops": {"explode": {"explode": [True, False]}}})
    url = f"sqlite:///{tmp_path / 'boom.db'}"
    rc = main(["--space", "tiny.yaml", "--plugin", "plugin_samples.explode_op", "--storage", url, "--trials", "3"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed, "the seeded sampler is expected to draw explode=True at least once"
    for t in failed:
        assert t.params == {"n0.explode.explode": True}
        assert t.user_attrs["failure_reason"] == "plugin 'plugin_samples.explode_op' raised RuntimeError: boom: this op explodes"
        assert t.user_attrs["failed_plugin"] == "plugin_samples.explode_op"
        assert "architecture" in t.system_attrs  # recorded before the build failed
    assert len([t for t in study.trials if t.state in FINISHED]) == 3
    assert all(t.params == {"n0.explode.explode": False} for t in study.trials if t.state == TrialState.COMPLETE)
    assert "FAIL: plugin 'plugin_samples.explode_op' raised RuntimeError: boom" in out
    assert "3/3 finished trials" in out


def test_all_failing_trials_stop_after_a_streak(capsys, tmp_path, write_space):
    write_space({**ONE_ARCHITECTURE, "manifold.ops": {"explode": {"explode": True}}})
    url = f"sqlite:///{tmp_path / 'streak.db'}"
    rc = main(["--space", "tiny.yaml", "--plugin", "plugin_samples.explode_op", "--storage", url, "--trials", "3"])
    out, err = capsys.readouterr()
    assert rc == 1, err  # nothing could be trained: the command fails, naming the first failure's reason
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.trials) == MAX_CONSECUTIVE_FAILURES
    assert all(t.state == TrialState.FAIL for t in study.trials)
    assert err.strip().splitlines()[-1] == (
        f"iasf-search: error: every trial of this run failed ({MAX_CONSECUTIVE_FAILURES} in a row) and the search stopped; "
        "the first, #0: plugin 'plugin_samples.explode_op' raised RuntimeError: boom: this op explodes")
    assert "Traceback" not in err
    # the same as a JSON error event (its kind was once refused, and the event log then raised a traceback)
    rc = main(["--space", "tiny.yaml", "--plugin", "plugin_samples.explode_op", "--storage", url, "--trials", "3",
               "--log-format", "json"])
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert rc == 1 and "Traceback" not in err
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "search_failed"
    assert events[-1]["message"].startswith("every trial of this run failed")
    assert [e for e in events if e["event"] == "study_end"][0]["finished"] == 0


def test_a_full_disk_stops_the_search_with_one_line_and_the_same_command_resumes(capsys, tmp_path, write_space, monkeypatch):
    import errno
    import os

    from iasf_search.files import PARTIAL_SUFFIX

    write_space({"manifold.width": 8})
    url = f"sqlite:///{tmp_path / 'runs' / 'full.db'}"
    command = ["--space", "tiny.yaml", "--storage", url, "--trials", "4", "-q"]
    real_fsync, synced = os.fsync, []

    def filling_disk(fd):  # a fault-injecting writer: the disk fills after the first two trial files
        synced.append(fd)
        if len(synced) > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", filling_disk)
    rc = main(command)
    _, err = capsys.readouterr()
    folder = tmp_path / "runs" / "artifacts"
    assert rc == 1 and err.strip().splitlines()[-1] == (
        f"iasf-search: error: {folder}: the disk is full (No space left on device); the search stopped; make room and run "
        f"the same command to resume the study"), err
    study = optuna.load_study(study_name="tiny", storage=url)
    assert [t.state for t in study.trials].count(TrialState.FAIL) == 1 and len(synced) == 3  # stopped at the first
    assert study.trials[-1].user_attrs["failure_reason"].startswith(f"disk full: {folder}: the disk is full")
    assert len(list(folder.iterdir())) == 2 and not [p for p in folder.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
    monkeypatch.setattr(os, "fsync", real_fsync)  # room made
    assert main(command) == 0
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len([t for t in study.trials if t.state in FINISHED]) == 4
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_streak_after_finished_trials_only_warns(capsys, tmp_path, write_space, monkeypatch):
    from iasf_search.search import study as study_module

    monkeypatch.setattr(study_module, "MAX_CONSECUTIVE_FAILURES", 2)
    write_space({**ONE_ARCHITECTURE, "manifold.ops": {"explode": {"explode": [False, True]}}, "search.sampler": "random"})
    url = f"sqlite:///{tmp_path / 'some.db'}"
    rc = main(["--space", "tiny.yaml", "--plugin", "plugin_samples.explode_op", "--storage", url, "--trials", "40"])
    out, err = capsys.readouterr()
    study = optuna.load_study(study_name="tiny", storage=url)
    assert any(t.state in FINISHED for t in study.trials) and any(t.state == TrialState.FAIL for t in study.trials)
    assert rc == 0, err
    assert "stopped after 2 consecutive failed trials" in err


def test_diverging_trials_are_pruned_with_a_reason(capsys, tmp_path, write_space):
    write_space({**ONE_ARCHITECTURE, "manifold.ops": {"nan_op": None}})
    url = f"sqlite:///{tmp_path / 'nan.db'}"
    rc = main(["--space", "tiny.yaml", "--plugin", "plugin_samples.nan_op", "--storage", url, "--trials", "2"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.PRUNED]
    for t in study.trials:
        assert t.user_attrs["failure_reason"].startswith("diverged: training loss became nan")
    assert iasf_search.best_trials(study) == []
    assert "no trial completed yet" in out
    assert main(["best", "--space", "tiny.yaml", "--plugin", "plugin_samples.nan_op", "--storage", url]) == 2
    assert "has no completed trial yet" in capsys.readouterr().err


def test_median_pruner_prunes_and_records_the_epoch(tmp_path, write_space):
    """Same model and initialisation twice: first trained with lr 0.01, then with lr 0 (its loss cannot improve)."""
    space = load(write_space({
        **ONE_ARCHITECTURE,
        "objectives": [{"metric": "loss"}],
        "training.epochs": 2, "training.lr": [0.01, 0.0],
        "search": {"sampler": "random", "pruner": "median", "pruner_options": {"n_startup_trials": 1, "warmup_fraction": 0.0}},
    }))
    url = f"sqlite:///{tmp_path / 'prune.db'}"
    queued = optuna.create_study(storage=url, study_name="tiny", direction="minimize")
    queued.enqueue_trial({"train.lr": 0.01})
    queued.enqueue_trial({"train.lr": 0.0})
    result = iasf_search.run_search(space, trials=2, storage=url, device="cpu")
    first, second = result.study.trials
    assert first.state == TrialState.COMPLETE
    assert sorted(first.intermediate_values) == [1, 2] and first.intermediate_values[2] == first.value == first.user_attrs["val_loss"]
    assert second.params == {"train.lr": 0.0}
    assert second.state == TrialState.PRUNED
    assert second.user_attrs["pruned_at_epoch"] == 1
    assert 0.0 <= second.user_attrs["val_accuracy"] <= 1.0
    assert "failure_reason" not in second.user_attrs and "test_accuracy" not in second.user_attrs
    assert second.intermediate_values[1] > first.intermediate_values[1]


def test_timeout_stops_starting_trials_but_a_run_always_starts_one(tmp_path, write_space):
    # the rule: no trial starts once the timeout (counted from when the study is ready) has passed,
    # but every run starts at least one: a timeout far shorter than any trial gives exactly one
    space = load(write_space())
    url = f"sqlite:///{tmp_path / 't.db'}"
    result = iasf_search.run_search(space, trials=1000, timeout=1e-6, storage=url, device="cpu")
    assert result.new_trials == 1 and result.target == 1000
    again = iasf_search.run_search(space, trials=1000, timeout=1e-6, storage=url, device="cpu")
    assert again.new_trials == 1 and len(again.study.trials) == 2


class Recorder:
    """A life-cycle plugin that records what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @hookimpl
    def iasf_study_start(self, study, space, target):
        self.calls.append(("start", target, len(study.trials), space.name))

    @hookimpl
    def iasf_trial_start(self, study, trial):
        self.calls.append(("trial start", trial.number, dict(trial.params)))

    @hookimpl
    def iasf_trial_built(self, trial, graph, model, space, artifacts):
        self.calls.append(("built", trial.number, "val_accuracy" in trial.user_attrs, model.training,
                           artifacts is not None, trial.user_attrs["arch_hash"] == arch.canonical_hash(graph)))

    @hookimpl
    def iasf_trial_trained(self, trial, model, data, space, values, artifacts):
        self.calls.append(("trained", trial.number, values == [trial.user_attrs["val_accuracy"]], model.training,
                           hasattr(model, "aux_modules"), len(data.x_test) > 0))

    @hookimpl
    def iasf_trial_end(self, study, trial):
        self.calls.append(("trial", trial.number, trial.state, "arch_hash" in trial.user_attrs))

    @hookimpl
    def iasf_study_end(self, study, space):
        self.calls.append(("end", len(study.trials)))


def test_life_cycle_hooks(tmp_path, write_space):
    recorder = Recorder()
    session = iasf_search.open_session(write_space(), observers=[(recorder, "recorder")])
    url = f"sqlite:///{tmp_path / 'hooks.db'}"
    iasf_search.run_search(session, trials=2, storage=url, device="cpu")
    assert recorder.calls == [
        ("start", 2, 0, "tiny"),
        ("trial start", 0, {}),  # before anything is sampled
        ("built", 0, False, True, True, True),  # before training, with the artifact store
        ("trained", 0, True, False, False, True),  # after: eval mode, values given, training helpers gone
        ("trial", 0, TrialState.COMPLETE, True),
        ("trial start", 1, {}),
        ("built", 1, False, True, True, True),
        ("trained", 1, True, False, False, True),
        ("trial", 1, TrialState.COMPLETE, True),
        ("end", 2),
    ]
    recorder.calls.clear()
    iasf_search.run_search(session, trials=2, storage=url, device="cpu")
    assert recorder.calls == [("start", 2, 2, "tiny"), ("end", 2)]


@pytest.mark.parametrize(("metric", "direction"), [("loss", "minimize"), ("params", "minimize"), ("accuracy", "maximize")])
def test_single_objective_metrics(tmp_path, write_space, metric, direction):
    space = load(write_space({**ONE_ARCHITECTURE, "objectives": [{"metric": metric}],
                              "search.pruner": "median", "search.pruner_options": {"n_startup_trials": 0}}))
    assert space.directions == [direction]
    result = iasf_search.run_search(space, trials=1, storage=f"sqlite:///{tmp_path / 'm.db'}", device="cpu")
    (trial,) = result.study.trials
    assert result.study.direction.name.lower() == direction
    expected = {"loss": trial.user_attrs.get("val_loss"), "params": float(trial.user_attrs["params"]),
                "accuracy": trial.user_attrs.get("val_accuracy")}[metric]
    assert trial.value == expected
    # per-epoch reports (for pruning) carry the objective's metric; a parameter count is not reported
    assert trial.intermediate_values == ({} if metric == "params" else {1: expected})


def test_a_plain_space_runs_with_its_plugins_loaded_again(tmp_path, write_space):
    # the space is plain data: run_search loads the plugins it records (the file's and those given beside it)
    from iasf_search.session import session_for

    space = iasf_search.load_space(write_space({"plugins": ["plugin_samples.scale_op"]}), plugins=["plugin_samples.nan_op"],
                                   autoload=False)
    assert (space.plugins, space.extra_plugins, space.autoload) == (("plugin_samples.scale_op",), ("plugin_samples.nan_op",), False)
    assert "components" not in {f.name for f in dataclasses.fields(space)}
    assert not hasattr(space, "components")  # the deprecated shim is gone: a session holds the plugins
    components = session_for(space).components
    assert components.sources["plugin_samples.scale_op"] == "space file"
    assert components.sources["plugin_samples.nan_op"] == "--plugin"
    result = iasf_search.run_search(space, trials=1, storage=f"sqlite:///{tmp_path / 'plain.db'}", device="cpu")
    assert result.new_trials == 1


def test_a_patch_that_does_not_divide_the_image_runs(tmp_path, write_space):
    # 8x8 digits with patch 3: the stem pads to 9x9 and makes a 3x3 token grid
    space = load(write_space({"stem.patch": 3, "stem.overlap": False}))
    result = iasf_search.run_search(space, trials=1, storage=f"sqlite:///{tmp_path / 'p3.db'}", device="cpu")
    trial = result.study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["summary"].startswith("p3/")
