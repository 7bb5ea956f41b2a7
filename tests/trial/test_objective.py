"""One trial's life: constraints checked before training, objective vectors for multi-objective
pruners, out-of-memory retries with smaller micro-batches."""

from __future__ import annotations

import json
import threading
import urllib.request

import optuna
import pytest
from conftest import run
from optuna.trial import TrialState

import iasf_search
from iasf_search.results.artifacts import trial_files
from iasf_search.results.dashboard import make_dashboard_server
from iasf_search.results.records import epoch_values

# width 8 models have under 3,000 parameters, width 48 ones over 8,000: the bound splits the space
SPLIT = {"manifold.width": [8, 48], "manifold.nodes": {"low": 1, "high": 1}, "manifold.ops": {"mlp": {"expansion": 2}},
         "constraints": {"params": {"max": 5000}}}


def load(url: str = "sqlite:///runs/tiny.db") -> optuna.Study:
    return iasf_search.load_results(url, "tiny")


def test_infeasible_trials_are_pruned_before_training_with_the_reason(write_space, capsys):
    write_space({**SPLIT, "costs": ["flops"]})
    rc, out, _ = run(capsys, "--space", "tiny.yaml", "--trials", "8", "-q")
    assert rc == 0
    trials = load().trials
    infeasible = [t for t in trials if t.user_attrs["params"] > 5000]
    feasible = [t for t in trials if t.user_attrs["params"] <= 5000]
    assert infeasible and feasible
    for t in infeasible:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["failure_reason"] == f"infeasible: params {t.user_attrs['params']} > max 5000"
        assert t.user_attrs["infeasible"] == ["params"]
        assert t.user_attrs["constraints"] == {"params": {"value": t.user_attrs["params"], "max": 5000.0, "feasible": False}}
        assert not {"epochs", "train_seconds", "val_accuracy", "test_accuracy"} & set(t.user_attrs)  # never trained
        assert "cost.flops" not in t.user_attrs  # bounded costs are measured first; the others not when one is broken
        assert t.constraints["params"] == pytest.approx(t.user_attrs["params"] / 5000 - 1)  # what the sampler reads
        assert t.constraints["params"] > 0
        assert t.system_attrs["constraints"] == [t.constraints["params"]]  # what optuna-dashboard 0.21 reads
    for t in feasible:
        assert t.state == TrialState.COMPLETE and t.user_attrs["epochs"] == 1 and "cost.flops" in t.user_attrs
        assert t.constraints["params"] <= 0 and t.user_attrs["constraints"]["params"]["feasible"] is True
        assert "infeasible" not in t.user_attrs
    assert f"{len(infeasible)} x infeasible" in out


def test_the_dashboard_shows_which_trials_were_infeasible_and_why(write_space, tmp_path):
    path = write_space(SPLIT)
    url = f"sqlite:///{tmp_path / 'runs' / 'tiny.db'}"
    iasf_search.run_search(iasf_search.load_space(path), trials=6, storage=url)
    server = make_dashboard_server(url, tmp_path / "runs" / "artifacts", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        with urllib.request.urlopen(f"{base}/api/studies/1?after=0", timeout=30) as response:
            shown = json.loads(response.read())["trials"]
    finally:
        server.shutdown()
    by_state = {"PRUNED": [], "COMPLETE": []}
    for t in shown:
        by_state[t["state"].upper()].append(t)
    assert by_state["PRUNED"] and by_state["COMPLETE"]
    for t in by_state["PRUNED"]:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        assert attrs["failure_reason"].startswith("infeasible: params ") and "> max 5000" in attrs["failure_reason"]
        assert len(t["constraints"]) == 1 and t["constraints"][0] > 0      # the dashboard's constraint column
        assert "**Constraints:** params" in t["note"]["body"] and "infeasible — not trained" in t["note"]["body"]
    for t in by_state["COMPLETE"]:
        assert len(t["constraints"]) == 1 and t["constraints"][0] <= 0
        assert "— feasible" in t["note"]["body"]


def test_bounded_objective_space_runs_from_the_cli_and_best_prints_the_pareto_set(write_space, capsys, tmp_path):
    """The issue's "done when": a latency bound, two objectives, infeasible trials never train,
    `best` shows the Pareto set, and the Pareto plot is written under runs/."""
    write_space({"manifold.width": [8, 16], "constraints": {"latency_ms": {"max": 1000.0}, "params": {"max": 2500}},
                 "costs": {"latency_ms": {"repeats": 3, "warmup": 1}},
                 "objectives": [{"metric": "accuracy"}, {"metric": "latency_ms"}], "search.sampler": "tpe"})
    rc, out, _ = run(capsys, "--space", "tiny.yaml", "--trials", "6", "-q")
    assert rc == 0
    study = load()
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    for t in study.trials:
        assert set(t.constraints) >= {"latency_ms", "params"}
        details = t.user_attrs["cost_details.latency_ms"]
        assert details["repeats"] == 3 and details["min_ms"] <= details["median_ms"] <= details["max_ms"]
        trained = "epochs" in t.user_attrs
        assert trained == (t.state == TrialState.COMPLETE) == (t.user_attrs["params"] <= 2500)
    plot = tmp_path / "runs" / "tiny-pareto.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Pareto plot: {plot}" in out
    rc, out, _ = run(capsys, "best", "--space", "tiny.yaml")
    assert rc == 0
    front = iasf_search.best_trials(study)
    assert f"Pareto set ({len(front)} trials):" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("trial"))
    assert "accuracy" in header and "latency_ms" in header
    for t in front:
        assert t.state == TrialState.COMPLETE and f"#{t.number:<5}" in out


def test_multi_objective_pruner_gets_one_vector_per_epoch(write_space, capsys):
    write_space({"plugins": ["plugin_samples.prune_second_epoch"], "training.epochs": 4,
                 "objectives": [{"metric": "accuracy"}, {"metric": "params"}], "search.pruner": "prune_at_two"})
    rc, _, _ = run(capsys, "--space", "tiny.yaml", "--trials", "3", "-q")
    assert rc == 0
    first, *rest = load().trials
    assert first.state == TrialState.COMPLETE and sorted(epoch_values(first)) == [1, 2, 3, 4]
    assert epoch_values(first)[4][0] == pytest.approx(first.values[0])  # the last vector is the trial's result
    params = first.user_attrs["params"]
    assert all(v[1] == params for v in epoch_values(first).values())  # a cost objective is the same every epoch
    for t in rest:
        assert t.state == TrialState.PRUNED and t.user_attrs["pruned_at_epoch"] == 2 and sorted(epoch_values(t)) == [1, 2]


def test_single_objective_pruner_with_two_objectives_is_bad_input(write_space, capsys):
    write_space({"objectives": [{"metric": "accuracy"}, {"metric": "params"}], "search.pruner": "median"})
    rc, out, err = run(capsys, "--space", "tiny.yaml")
    assert rc == 2
    assert err.count("\n") == 1 and "search.pruner: 'median' prunes studies with one objective only" in err
    assert "use one of:" in err and "none" in err


def test_out_of_memory_retries_with_half_the_micro_batch_and_keeps_the_effective_batch(write_space, capsys):
    write_space({"plugins": ["plugin_samples.batch_limited"], "manifold.ops": {"batch_limited": {}},
                 "manifold.nodes": {"low": 1, "high": 1}, "training.batch_size": 128})
    rc, _, _ = run(capsys, "--space", "tiny.yaml", "--trials", "2", "-q")
    assert rc == 0
    for t in load().trials:
        assert t.state == TrialState.COMPLETE
        retries = t.user_attrs["oom_retries"]
        assert [(r["micro_batch_size"], r["grad_accumulation"]) for r in retries] == [(64, 2), (32, 4)]
        assert all(r["error"].startswith("CUDA out of memory") for r in retries)
        assert (t.user_attrs["micro_batch_size"], t.user_attrs["grad_accumulation"]) == (32, 4)
        assert t.user_attrs["epochs"] == 1 and "val_accuracy" in t.user_attrs  # it trained


def test_out_of_memory_even_at_one_sample_fails_after_the_retries(write_space, capsys):
    write_space({"plugins": ["plugin_samples.out_of_memory"], "manifold.ops": {"oom": {}},
                 "manifold.nodes": {"low": 1, "high": 1}, "training.batch_size": 8})
    rc, _, err = run(capsys, "--space", "tiny.yaml", "--trials", "1", "-q")
    assert rc == 1  # the study goes on with other trials, which fail the same way, until the streak stops it
    assert "every trial of this run failed" in err and "the first, #0: out of memory: CUDA out of memory" in err
    t = load().trials[0]
    assert t.state == TrialState.FAIL and t.user_attrs["failure_reason"].startswith("out of memory: CUDA out of memory")
    assert [r["micro_batch_size"] for r in t.user_attrs["oom_retries"]] == [4, 2, 1]


def test_auxiliary_objectives_read_the_token_width_whatever_the_readout(write_space, capsys):
    """The helpers of an auxiliary objective are sized on the nodes' width D, not on the readout's features F
    (mean_max: 2D, flatten: T * D)."""
    write_space({"manifold.readouts": ["mean_max", "flatten"], "auxiliary": {"reconstruction": {}, "consistency": {}}})
    rc, _, err = run(capsys, "--space", "tiny.yaml", "--trials", "3", "-q")
    assert rc == 0, err
    trials = load().trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.user_attrs["aux.reconstruction"]["loss"] >= 0 for t in trials)
    assert {json.loads(t.system_attrs["architecture"])["nodes"][-1].get("readout") for t in trials} <= {"mean_max", "flatten"}


def test_the_pruner_is_asked_only_where_it_may_prune(write_space, capsys, monkeypatch):
    """Each question to the pruner reads the study from the storage: none in the median pruner's start-up
    trials or warm-up epochs, nor at the last epoch."""
    asked = []

    def spy(self, study, trial):
        asked.append((trial.number, trial.last_step))
        return False

    monkeypatch.setattr(optuna.pruners.MedianPruner, "prune", spy)
    write_space({"training.epochs": 4, "search.pruner": "median",
                 "search.pruner_options": {"n_startup_trials": 1, "warmup_fraction": 0.5}})
    rc, _, _ = run(capsys, "--space", "tiny.yaml", "--trials", "3", "-q")
    assert rc == 0
    assert asked == [(1, 2), (1, 3), (2, 2), (2, 3)]
    assert [t.state for t in load().trials] == [TrialState.COMPLETE] * 3


def test_a_stop_signal_swallowed_on_its_way_still_stops_the_search(write_space, capsys, monkeypatch):
    """Library code that catches BaseException (a lazy import inside the first FLOP count, interrupted by
    SIGTERM, leaves torch half-imported) turns the stop into an ordinary failure: the trial is still
    marked ``terminated`` and the search stops with 143 instead of failing trial after trial."""
    import os
    import signal
    import time

    from iasf_search.trial import objective

    def swallowing_build(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises Terminated here
        except BaseException:
            pass
        raise AttributeError("partially initialized module 'torch._inductor'")

    monkeypatch.setattr(objective, "build_model", swallowing_build)
    write_space()
    rc, _, err = run(capsys, "--space", "tiny.yaml", "--trials", "5", "-q")
    assert rc == 143 and "terminated: finished trials are kept" in err
    trials = load().trials
    assert [(t.state, t.user_attrs.get("failure_reason")) for t in trials] == [(TrialState.FAIL, "terminated")]


# -- representation metrics as objectives and constraints ---------------------------------------------

METRIC_SEARCH = {"objectives": [{"metric": "accuracy"}, {"metric": "oversmoothing"}],  # minimize: its default direction
                 "constraints": {"effective_rank": {"min": 1.0}}, "search.sampler": "random", "search.pruner": "none"}


def test_a_metric_objective_and_a_metric_constraint_from_the_space_file_through_the_cli(write_space, capsys):
    write_space(METRIC_SEARCH)
    rc, _, _ = run(capsys, "--space", "tiny.yaml", "--trials", "4", "-q")
    assert rc == 0
    study = load()
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4
    for t in complete:
        assert t.values[1] == t.user_attrs["metric.oversmoothing"]
        rank = t.user_attrs["metric.effective_rank"]
        assert t.user_attrs["constraints"] == {"effective_rank": {"value": rank, "min": 1.0, "feasible": True}}
        assert t.constraints["effective_rank"] == pytest.approx(1.0 - rank)  # absolute for a metric: min - value
        assert t.system_attrs["constraints"] == [t.constraints["effective_rank"]]
        assert "infeasible" not in t.user_attrs


def test_trials_breaking_a_metric_constraint_complete_as_infeasible_and_best_says_none_meets_it(write_space, capsys):
    write_space({**METRIC_SEARCH, "objectives": [{"metric": "accuracy"}], "constraints": {"oversmoothing": {"max": -2.0}}})
    rc, _, _ = run(capsys, "--space", "tiny.yaml", "--trials", "3", "-q")
    assert rc == 0
    study = load()
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3  # trained: the bound is known only afterwards
    for t in trials:
        assert t.user_attrs["infeasible"] == ["oversmoothing"]
        assert t.constraints["oversmoothing"] == pytest.approx(t.user_attrs["metric.oversmoothing"] + 2.0)
        assert "model.safetensors" not in trial_files(study, t)  # an infeasible trial is never the best so far
    rc, _, err = run(capsys, "best", "--space", "tiny.yaml")
    assert rc == 2
    assert "no completed trial of study 'tiny' meets the space's constraints" in err and "Traceback" not in err


def test_a_metric_objective_that_does_not_apply_prunes_the_trial_with_the_reason(write_space, capsys):
    write_space({"objectives": [{"metric": "accuracy"}, {"metric": "attention_entropy"}]})  # the tiny space has no attention
    rc, _, _ = run(capsys, "--space", "tiny.yaml", "--trials", "2", "-q")
    assert rc == 0
    for t in load().trials:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["failure_reason"] == "objective attention_entropy does not apply to this architecture (not measured)"
