"""What a search prints at its end and ``best`` prints (:mod:`iasf_search.results.summary`)."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from iasf_search.graph import to_json
from iasf_search.results.records import ARCHITECTURE, TRAIN_CONFIG
from iasf_search.results.summary import print_architecture, print_pareto, print_summary, print_trial, stop_reasons
from iasf_search.search.study import SearchResult

ATTRS = {"val_accuracy": 0.91234, "test_accuracy": 0.875, "params": 12345, "train_seconds": 3.21,
         "arch_hash": "abc123", "summary": "p2/learned w8 mlp1"}


def trial(state=TrialState.COMPLETE, values=None, system_attrs=None, **user_attrs):
    return create_trial(state=state, values=values, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                        user_attrs=user_attrs, system_attrs=system_attrs or {})


def stored(t):
    """``t`` as a study holds it (numbered)."""
    study = optuna.create_study()
    study.add_trial(t)
    return study.trials[0]


def test_stop_reasons_count_each_kind_of_early_stop():
    study = optuna.create_study()
    for t in [trial(TrialState.PRUNED, failure_reason="diverged: loss nan"),
              trial(TrialState.PRUNED, failure_reason="diverged: loss inf at epoch 2"),
              trial(TrialState.FAIL, failure_reason="RuntimeError: CUDA out of memory"),
              trial(TrialState.FAIL),                       # failed by the heartbeat check: no reason
              trial(TrialState.PRUNED),                     # pruned by the pruner: not a stop reason
              trial(values=[0.5], failure_reason="surplus: ignored")]:  # complete trials are not counted
        study.add_trial(t)
    assert stop_reasons(study) == {"diverged": 2, "RuntimeError": 1, "worker lost (no heartbeat; retried)": 1}
    assert stop_reasons(optuna.create_study()) == {}


def test_print_trial_shows_scores_architecture_and_training(capsys, make_graph):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 1}},
                        {"op": "conv", "config": {"kernel": 3}, "inputs": ["input", "n0"], "fusion": "concat"}], width=8)
    t = stored(trial(values=[0.9], system_attrs={ARCHITECTURE: to_json(graph), TRAIN_CONFIG: {"lr": 0.01, "epochs": 2}},
                     reused_from=4, **ATTRS))
    print_trial(t, heading="best trial")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("best trial #0: validation accuracy 0.9123, test accuracy 0.8750, 12,345 parameters, "
                        "trained 3.2 s (result reused from #4)")
    assert lines[1] == "  architecture abc123: p2/learned w8 mlp1"
    assert [line.split()[0] for line in lines[2:6]] == ["input", "n0", "n1", "output"]
    assert lines[2].split()[1] == "image" and "<-" not in lines[2]
    assert lines[4].split()[1] == "conv" and lines[4].endswith("<- input, n0 fused by concat")
    assert lines[5].split()[1] == "head" and lines[5].endswith("<- n1")
    assert lines[6] == f"  training: {json.dumps({'epochs': 2, 'lr': 0.01})}"


def test_print_trial_without_architecture_record_skips_the_table(capsys):
    print_trial(stored(trial(values=[0.9])), heading="trial")
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["trial #0: validation accuracy nan, test accuracy nan, 0 parameters, trained 0.0 s",
                     "  architecture ?: ", "  training: {}"]


def test_print_architecture_aligns_its_columns(capsys, make_graph):
    print_architecture(make_graph([{"op": "mlp", "config": {"expansion": 2}}], width=8))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("    n0     mlp       {\"expansion\": 2}")
    assert lines[1].index("<- input") == 4 + 7 + 10 + 48 + 2


def test_print_architecture_shows_a_readout_and_norms_other_than_the_defaults(capsys, make_graph):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}, {"op": "conv", "config": {"kernel": 3}}], width=8)
    graph.nodes["n0"].update(norm="batch", norm_config={})
    graph.nodes["n1"].update(norm="layer", norm_config={})
    graph.nodes["output"].update(readout="class_token", readout_config={"heads": 2})
    print_architecture(graph)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("<- input  norm batch") and lines[2].endswith("<- n0")
    assert lines[3].split(maxsplit=2)[:2] == ["output", "head"]
    assert json.dumps({"heads": 2, "readout": "class_token"}) in lines[3]


def test_print_pareto_is_a_table_named_by_the_spaces_objectives(capsys):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("space", {"objectives": [{"metric": "accuracy"}, {"metric": "params"}]})
    for values, acc in (([0.9, 5000.0], 0.88), ([0.5, 100.0], 0.49)):
        study.add_trial(trial(values=values, test_accuracy=acc, summary=f"arch {acc}"))
    print_pareto(study, study.trials)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Pareto set (2 trials):"
    assert lines[1].split() == ["trial", "accuracy", "params", "test", "acc", "architecture"]
    assert lines[2].split() == ["#0", "0.9", "5000", "0.8800", "arch", "0.88"]
    assert lines[3].split() == ["#1", "0.5", "100", "0.4900", "arch", "0.49"]


def test_print_pareto_without_a_space_numbers_the_objectives(capsys):
    study = optuna.create_study(directions=["maximize", "minimize"])
    print_pareto(study, [])
    assert capsys.readouterr().out.splitlines()[1].split()[1:3] == ["objective", "0"]


def result_of(study: optuna.Study, tmp_path) -> SearchResult:
    return SearchResult(study, f"sqlite:///{tmp_path / 'runs' / 's.db'}", target=5, new_trials=2, seconds=12.4)


def test_summary_of_one_objective(capsys, tmp_path):
    study = optuna.create_study(study_name="s", direction="maximize")
    for t in [trial(values=[0.5], **ATTRS), trial(values=[0.7], **{**ATTRS, "arch_hash": "best1"}),
              trial(TrialState.PRUNED, failure_reason="time limit: 10 s"), trial(TrialState.FAIL)]:
        study.add_trial(t)
    print_summary(result_of(study, tmp_path))
    out = capsys.readouterr().out
    assert out.startswith("\nbest trial #1: validation accuracy 0.9123")
    assert "  architecture best1: " in out
    assert "stopped early or failed: 1 x time limit; 1 x worker lost (no heartbeat; retried)" in out
    assert f"study 's': 3/5 finished trials, 2 run now in 12 s; storage sqlite:///{tmp_path / 'runs' / 's.db'}" in out
    assert out.endswith(f"open it: iasf-search dashboard --storage sqlite:///{tmp_path / 'runs' / 's.db'} --study s\n")


def test_summary_of_several_objectives_shows_the_pareto_set_and_plot(capsys, tmp_path):
    study = optuna.create_study(study_name="m", directions=["maximize", "minimize"])
    study.add_trial(trial(values=[0.9, 5.0]))
    result = result_of(study, tmp_path)
    result.pareto_plot = tmp_path / "runs" / "m-pareto.png"
    print_summary(result)
    out = capsys.readouterr().out
    assert "best trial" not in out and "Pareto set (1 trials):" in out
    assert f"Pareto plot: {tmp_path / 'runs' / 'm-pareto.png'}\n" in out
    assert "stopped early" not in out


def test_summary_before_any_trial_completed(capsys, tmp_path):
    study = optuna.create_study(study_name="e")
    study.add_trial(trial(TrialState.PRUNED, failure_reason="diverged: nan"))
    print_summary(result_of(study, tmp_path))
    out = capsys.readouterr().out
    assert "no trial completed yet" in out and "stopped early or failed: 1 x diverged" in out
    assert "study 'e': 1/5 finished trials" in out


def test_summary_hides_the_storage_password(capsys):
    study = optuna.create_study(study_name="p")
    print_summary(SearchResult(study, "postgresql://me:s3cret@db/nas", target=1, new_trials=0, seconds=0.0))
    out = capsys.readouterr().out
    assert "s3cret" not in out and "storage postgresql://me:***@db/nas" in out


def test_summary_shows_the_baselines_beside_the_best_trial(capsys, tmp_path):
    from iasf_search.results.baselines import record_baselines

    study = optuna.create_study(study_name="b", direction="maximize")
    study.add_trial(trial(values=[0.9], **ATTRS))
    record_baselines(study, {"1nn": {"val_accuracy": 0.9, "test_accuracy": 0.9, "seconds": 0.1},
                             "logistic_regression": {"val_accuracy": 0.8, "test_accuracy": 0.8, "seconds": 0.1}}, {})
    print_summary(result_of(study, tmp_path))
    lines = capsys.readouterr().out.splitlines()
    line = "baselines (test accuracy): 1-NN 0.9000, logistic regression 0.8000; the best trial (0.8750) does not beat 1-NN"
    assert line in lines
    assert lines.index(line) > [i for i, text in enumerate(lines) if text.startswith("  training: ")][0]
    assert lines.index(line) < [i for i, text in enumerate(lines) if text.startswith("study 'b'")][0]


def test_summary_without_baselines_prints_no_baselines_line(capsys, tmp_path):
    study = optuna.create_study(study_name="n", direction="maximize")
    study.add_trial(trial(values=[0.9], **ATTRS))
    print_summary(result_of(study, tmp_path))
    assert "baselines (test accuracy)" not in capsys.readouterr().out


@pytest.mark.parametrize(("data", "advice"), [
    ({"train": 160, "val": 40}, True),
    ({"train": 160, "val": 40, "cross_validation": {"folds": 5, "repeats": 1}}, False),  # cross-validated already
    ({"train": 2000, "val": 100}, False),
    ({}, False),  # a study from before the data attribute
])
def test_a_small_validation_split_ends_with_the_advice_to_cross_validate(capsys, tmp_path, data, advice):
    study = optuna.create_study(study_name="s", direction="maximize")
    study.set_user_attr("data", data)
    study.add_trial(trial(values=[0.5], **ATTRS))
    print_summary(result_of(study, tmp_path))
    out = capsys.readouterr().out
    expected = ("note: the validation split holds only 40 samples, so validation accuracy moves in steps of 0.025 and the "
                "search partly selects on noise; cross-validate over all 200 training and validation samples instead with "
                "`split: {folds: 5}` under `task:` in the space file")
    assert (expected in out.splitlines()) == advice
    assert ("note:" in out) == advice


def test_print_trial_shows_the_fold_spread(capsys):
    print_trial(stored(trial(values=[0.9], **ATTRS, fold_val_accuracies=[0.9, 0.92, 0.917], val_accuracy_std=0.0091)),
                heading="best trial")
    assert capsys.readouterr().out.startswith("best trial #0: validation accuracy 0.9123 ± 0.0091 over 3 folds, test accuracy 0.8750")
