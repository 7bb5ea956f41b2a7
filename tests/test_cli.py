"""The command line, in-process: search, resume, best, default storage, help, the plugins command. (Bad input,
exit 2 with one line and nothing written: the table in tests/test_bad_input.py.)"""

from __future__ import annotations

import json
import re

import numpy as np
import optuna
import pluggy
import pytest
import torch
from conftest import finished, run
from optuna.trial import TrialState

import iasf_search
from iasf_search import graph as arch
from iasf_search.build import build_model
from iasf_search.cli import main
from iasf_search.results.access import trial_architecture
from iasf_search.results.baselines import fit_baselines
from iasf_search.search.setup import load_task
from iasf_search.train import evaluate, train
from iasf_search.trial.cross_validation import pooled

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TRIAL_LINE = re.compile(r"^\[\s*(\d+)/(\d+)\] #(\d+)\s", re.MULTILINE)


def test_search_resume_and_best(capsys, tmp_path, write_space):
    write_space()
    url = f"sqlite:///{tmp_path / 's.db'}"
    search = ["--space", "tiny.yaml", "--storage", url]

    rc, out, err = run(capsys, *search, "--trials", "3")
    assert rc == 0, err
    lines = TRIAL_LINE.findall(out)
    assert [(int(done), int(target), int(number)) for done, target, number in lines] == [(1, 3, 0), (2, 3, 1), (3, 3, 2)]
    assert "starting study 'tiny': 0/3 finished trials" in out
    assert "study 'tiny': 3/3 finished trials, 3 run now" in out
    assert f"iasf-search dashboard --storage sqlite:///{tmp_path / 's.db'} --study tiny" in out
    assert "Traceback" not in err

    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.trials) == 3 and len(finished(study)) == 3
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete
    for t in complete:
        attrs = t.user_attrs
        assert {"arch_hash", "params", "train_seconds", "val_accuracy", "test_accuracy"} <= set(attrs)
        assert "architecture" not in attrs and "train_config" not in attrs  # long records: system attributes
        graph = arch.from_json(t.system_attrs["architecture"])
        assert attrs["arch_hash"] == arch.canonical_hash(graph)
        assert isinstance(attrs["params"], int) and attrs["params"] > 0
        assert 0.0 <= attrs["val_accuracy"] <= 1.0 and 0.0 <= attrs["test_accuracy"] <= 1.0
        assert t.value == attrs["val_accuracy"]
        assert t.system_attrs["train_config"]["epochs"] == 1 and t.system_attrs["train_config"]["batch_size"] == 128
        assert graph.graph["width"] in (8, 16)
        assert {graph.nodes[n]["op"] for n in arch.hidden_nodes(graph)} <= {"mlp", "conv"}
    # the resolved space is saved with the study
    assert study.user_attrs["space"] == iasf_search.load_space("tiny.yaml").resolved()

    # the same command again: nothing to do, nothing added
    rc, out, err = run(capsys, *search, "--trials", "3")
    assert rc == 0, err
    assert "nothing to train" in out
    assert TRIAL_LINE.findall(out) == []
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 3

    # a larger target resumes up to exactly that many finished trials
    rc, out, err = run(capsys, *search, "--trials", "5")
    assert rc == 0, err
    assert "resuming study 'tiny': 3/5 finished trials" in out
    assert [int(n) for _, _, n in TRIAL_LINE.findall(out)] == [3, 4]
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(finished(study)) == 5 and len(study.trials) == 5

    # best, through the space file and through --storage/--study
    rc, out, err = run(capsys, "best", "--space", "tiny.yaml", "--storage", url)
    assert rc == 0, err
    best = iasf_search.best_trials(study)[0]  # ties on accuracy: the lower validation loss
    assert f"best trial #{best.number}:" in out
    assert f"architecture {best.user_attrs['arch_hash']}" in out
    assert "training: " in out
    rc, out2, err = run(capsys, "best", "--storage", url, "--study", "tiny")
    assert rc == 0, err
    assert out2 == out


def test_quiet_prints_only_the_summary(capsys, tmp_path, write_space):
    write_space({"manifold.nodes": 1, "manifold.width": 8, "manifold.ops": {"mlp": {"expansion": 1}}})
    rc, out, err = run(capsys, "search", "--space", "tiny.yaml", "--storage", f"sqlite:///{tmp_path / 'q.db'}", "--trials", "1", "-q")
    assert rc == 0, err
    assert TRIAL_LINE.findall(out) == []
    assert "starting study" not in out
    assert "best trial #0" in out and "1/1 finished trials" in out


def test_default_storage_is_runs_name_db(capsys, tmp_path, write_space):
    write_space({"name": "defaultdb", "manifold.nodes": 1, "manifold.width": 8, "manifold.ops": {"mlp": {"expansion": 1}},
                 "search.trials": 1})
    rc, out, err = run(capsys, "--space", "tiny.yaml")  # the target comes from search.trials
    assert rc == 0, err
    db = tmp_path / "runs" / "defaultdb.db"
    assert db.is_file()
    assert "storage sqlite:///runs/defaultdb.db" in out
    assert f"iasf-search dashboard --storage sqlite:///{db.resolve()} --study defaultdb\n" in out  # absolute: works from any directory
    study = optuna.load_study(study_name="defaultdb", storage=f"sqlite:///{db}")
    assert len(finished(study)) == 1
    rc, out, err = run(capsys, "best", "--space", "tiny.yaml")  # finds the same default storage
    assert rc == 0, err
    assert "best trial #0" in out


def test_seed_and_study_flags(capsys, tmp_path, write_space):
    write_space()
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    rc, _, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--study", "first", "--seed", "5", "--trials", "2")
    assert rc == 0, err
    rc, _, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--study", "second", "--seed", "5", "--trials", "2")
    assert rc == 0, err
    a = optuna.load_study(study_name="first", storage=url)
    b = optuna.load_study(study_name="second", storage=url)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.user_attrs["arch_hash"] for t in a.trials] == [t.user_attrs["arch_hash"] for t in b.trials]
    assert {s.study_name for s in optuna.get_all_study_summaries(url)} == {"first", "second"}


def test_two_objectives_print_the_pareto_set(capsys, tmp_path, write_space):
    write_space({"objectives": [{"metric": "accuracy"}, {"metric": "params"}],
                 "search": {"sampler": "nsga2", "sampler_options": {"population_size": 2}, "pruner": "none", "seed": 0}})
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "3")
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert "Pareto set (" in out
    for t in study.trials:
        assert t.values == [t.user_attrs["val_accuracy"], float(t.user_attrs["params"])]
    rc, out, err = run(capsys, "best", "--space", "tiny.yaml", "--storage", url)
    assert rc == 0, err
    assert "Pareto set (" in out and "accuracy" in out and "params" in out


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: iasf-search" in out and "search" in out and "best" in out
    with pytest.raises(SystemExit) as info:
        main(["search", "--help"])
    assert info.value.code == 0
    assert "--trials" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"iasf-search {iasf_search.__version__}"


def test_no_arguments_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: iasf-search" in capsys.readouterr().out


# -- a study searched again ------------------------------------------------------------------------


def test_a_study_created_from_another_space_is_refused_before_anything_runs(capsys, tmp_path, write_space):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    write_space({"manifold.nodes": 1, "manifold.width": 8, "manifold.ops": {"mlp": {"expansion": 1}}})
    assert run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "1")[0] == 0
    before = optuna.load_study(study_name="tiny", storage=url)
    write_space({"manifold.nodes": 1, "manifold.width": 8, "manifold.ops": {"mlp": {"expansion": 1}, "conv": {"kernel": 3}}})
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "2", "--timeout", "60")
    assert rc == 2
    assert err.splitlines() == [
        f"iasf-search: error: study 'tiny' in {url} was created from another space: manifold.ops.conv: absent before, "
        '{"dilation": 1, "kernel": 3} now; search it under a new name with --study NEW_NAME, or put the space back (a '
        "resumed study may change only its search, artifacts and study_page sections (budget, sampler, pruner, seed, "
        "files, page) and --trials, --timeout, --workers)"]
    after = optuna.load_study(study_name="tiny", storage=url)
    assert len(after.trials) == 1 and after.user_attrs == before.user_attrs  # nothing stored changed
    # what a resumed study may change is accepted as it is
    write_space({"manifold.nodes": 1, "manifold.width": 8, "manifold.ops": {"mlp": {"expansion": 1}}, "search.timeout": 30,
                 "search.sampler": "tpe", "search.pruner": "median"})
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "2")
    assert rc == 0, err
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 2


def test_a_study_resumes_with_other_presentation_settings_without_a_warning(capsys, tmp_path, write_space):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    write_space({"manifold.nodes": 1, "manifold.width": 8})
    assert run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "1")[0] == 0
    study = optuna.load_study(study_name="tiny", storage=url)
    stored = dict(study.user_attrs["space"])
    del stored["study_page"]  # as a study recorded before the study page existed
    study.set_user_attr("space", stored)
    write_space({"manifold.nodes": 1, "manifold.width": 8, "study_page": {"top": 3}, "artifacts": {"heatmaps": "none"}})
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "2")
    assert rc == 0, err
    assert "different space" not in err


def test_architecture_json_is_plain_json(capsys, tmp_path, write_space):
    write_space({"manifold.nodes": 2, "manifold.width": 8})
    url = f"sqlite:///{tmp_path / 'j.db'}"
    assert run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "1")[0] == 0
    (trial,) = optuna.load_study(study_name="tiny", storage=url).trials
    doc = json.loads(trial.system_attrs["architecture"])
    assert doc["graph"]["width"] == 8
    assert {n["id"] for n in doc["nodes"]} == {"input", "n0", "n1", "output"}


# -- the plugins command ------------------------------------------------------------------------------


def test_plugins_lists_sources_and_contributions(capsys, write_space):
    write_space({"plugins": ["plugin_samples.scale_op"]})
    rc, out, err = run(capsys, "plugins", "--space", "tiny.yaml")
    assert rc == 0, err
    lines = out.splitlines()
    assert "iasf_search.plugins.ops (built-in)" in lines
    assert "  ops: attention, conv, mlp, token_mlp, gmlp, pool, identity" in lines
    assert "  fusions: sum, concat, gated, beta_softmax, cross_attention, alpha_product" in lines
    assert "plugin_samples.scale_op (space file)" in lines
    assert lines[lines.index("plugin_samples.scale_op (space file)") + 1] == "  ops: scaled_linear"


def test_plugins_without_a_space_takes_plugin_flags(capsys):
    rc, out, err = run(capsys, "plugins", "--plugin", "plugin_samples.scale_op")
    assert rc == 0, err
    assert "plugin_samples.scale_op (--plugin)" in out.splitlines()
    rc, out, err = run(capsys, "plugins", "--plugin", "no_such_plugin_module")
    assert rc == 2 and "no_such_plugin_module" in err


def test_results_commands_load_the_plugins_once(capsys, tmp_path, write_space, monkeypatch):
    """``--space`` loads the file's plugins to find the study; the study's door uses them rather than loading again."""
    write_space({"plugins": ["plugin_samples.scale_op"]})
    url = f"sqlite:///{tmp_path / 's.db'}"
    rc, _, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "1", "-q")
    assert rc == 0, err
    made = []

    class Counted(pluggy.PluginManager):
        def __init__(self, project_name: str) -> None:
            made.append(project_name)
            super().__init__(project_name)

    monkeypatch.setattr(pluggy, "PluginManager", Counted)
    for command in (["report", "--out", "report"], ["export", "--out", "exported"], ["best"]):
        made.clear()
        rc, _, err = run(capsys, *command, "--space", "tiny.yaml", "--storage", url)
        assert rc == 0, err
        assert made == ["iasf_search"], command
    made.clear()
    rc, _, err = run(capsys, "best", "--storage", url, "--study", "tiny")
    assert rc == 0 and made == [], err  # best builds no model: no plugins to load


def test_baseline_records_on_the_study_and_the_search_and_best_show_it(capsys, tmp_path, write_space):
    write_space({"manifold.nodes": 1, "manifold.width": 8, "manifold.ops": {"mlp": {"expansion": 1}}})
    url = f"sqlite:///{tmp_path / 'b.db'}"
    rc, out, err = run(capsys, "baseline", "--space", "tiny.yaml", "--storage", url)
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    recorded = study.user_attrs["baselines"]
    assert recorded["data"] == study.user_attrs["data"]  # the fingerprint a search records
    assert {k: recorded["data"][k] for k in ("sample_shape", "num_classes", "train", "val", "test")} == {
        "sample_shape": [1, 8, 8], "num_classes": 10, "train": 1167, "val": 270, "test": 360}
    nn, lr = recorded["1nn"], recorded["logistic_regression"]
    lines = out.splitlines()
    assert lines[0] == f"1-NN: validation {nn['val_accuracy']:.4f}, test {nn['test_accuracy']:.4f} ({nn['seconds']:.1f} s)"
    assert lines[1] == (f"logistic regression: validation {lr['val_accuracy']:.4f}, test {lr['test_accuracy']:.4f} "
                        f"({lr['seconds']:.1f} s)")
    assert lines[2] == f"fitted on 1167 training samples, scored on 270 validation and 360 test samples; recorded on study 'tiny' in {url}"
    assert len(lines) == 3 and nn["test_accuracy"] > 0.9 and lr["test_accuracy"] > 0.9
    assert study.user_attrs["space"] == iasf_search.load_space("tiny.yaml").resolved() and study.trials == []

    # the search resumes that study, keeps its baselines and prints them beside the best trial
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "1", "-q")
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    assert study.user_attrs["baselines"] == recorded  # not fitted again
    line = next(text for text in out.splitlines() if text.startswith("baselines (test accuracy): "))
    test = iasf_search.best_trials(study)[0].user_attrs["test_accuracy"]
    verdict = "beats both" if test > max(nn["test_accuracy"], lr["test_accuracy"]) else "does not beat" if test > min(
        nn["test_accuracy"], lr["test_accuracy"]) else "beats neither"
    assert line.startswith(f"baselines (test accuracy): 1-NN {nn['test_accuracy']:.4f}, logistic regression "
                           f"{lr['test_accuracy']:.4f}; the best trial ({test:.4f}) {verdict}")
    rc, out, err = run(capsys, "best", "--space", "tiny.yaml", "--storage", url)
    assert rc == 0 and line in out.splitlines(), err

    # fitted again on a study with trials: the same figures, and the comparison with its best trial
    rc, out, err = run(capsys, "baseline", "--space", "tiny.yaml", "--storage", url)
    assert rc == 0, err
    assert out.splitlines()[0].startswith(f"1-NN: validation {nn['val_accuracy']:.4f}, test {nn['test_accuracy']:.4f} (")
    assert out.splitlines()[-1] == line



def test_cross_validated_search_end_to_end(capsys, tmp_path, write_space):
    """``split: {folds: 3, repeats: 2}`` through the CLI: six fold models per trial, the objective their mean
    (also at every epoch, for the pruner), the spread recorded and shown, the kept model trained on all
    non-test data from the same initial weights and tested once, the baselines scored the same way."""
    write_space({"task.split": {"folds": 3, "repeats": 2, "seed": 0}, "training.epochs": 2, "manifold.nodes": 1,
                 "search.pruner": "median"})
    url = f"sqlite:///{tmp_path / 'cv.db'}"
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "2")
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    session = iasf_search.open_session("tiny.yaml")
    data = load_task(session)
    for t in study.trials:
        a = t.user_attrs
        folds = a["fold_val_accuracies"]
        assert len(folds) == 6 and all(0 <= f <= 1 for f in folds)
        assert a["val_accuracy"] == pytest.approx(sum(folds) / 6) and t.value == a["val_accuracy"]
        assert a["val_accuracy_std"] == pytest.approx(float(np.std(folds)))
        assert sorted(t.intermediate_values) == [1, 2] and t.intermediate_values[2] == a["val_accuracy"]
        assert f"val {a['val_accuracy']:.4f}±{a['val_accuracy_std']:.3f}" in out
        # the kept model: the same initial weights, trained on train + val without validation, tested once
        torch.manual_seed(0)
        model = build_model(trial_architecture(t), session.components, data.sample_shape, data.num_classes)
        train(model, pooled(data), t.system_attrs["train_config"], device=torch.device("cpu"), seed=0, validate=False)
        assert a["test_accuracy"] == evaluate(model, data.x_test, data.y_test, torch.device("cpu"))[0]
        assert a["steps"] == 2 * -(-(len(data.x_train) + len(data.x_val)) // 128)
    best = iasf_search.best_trials(study)[0]  # the engine's pick
    assert (f"best trial #{best.number}: validation accuracy {best.value:.4f} ± "
            f"{best.user_attrs['val_accuracy_std']:.4f} over 6 folds, test accuracy") in out
    assert study.user_attrs["data"]["cross_validation"] == {"folds": 3, "repeats": 2}
    recorded, fitted = study.user_attrs["baselines"], fit_baselines(data, 0, session.space.split)
    for name in ("1nn", "logistic_regression"):
        assert {k: recorded[name][k] for k in ("val_accuracy", "test_accuracy")} == {
            k: fitted[name][k] for k in ("val_accuracy", "test_accuracy")}
    assert "note: the validation split holds only" not in out  # cross-validated already: no advice
