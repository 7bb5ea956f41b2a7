"""The built-in trial_records plugin: notes, diagrams, heat maps and checkpoints on the trials of a real search."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import optuna
import pytest
import safetensors.torch
import torch
import yaml
from conftest import make_doc
from optuna.trial import TrialState
from optuna_dashboard._note import get_note_from_system_attrs

import iasf_search
from iasf_search.build import build_model
from iasf_search.plugins.trial_records import dominates, is_front_runner, key_values, trial_note
from iasf_search.results.access import trained_source
from iasf_search.results.artifacts import (
    CHECKPOINT,
    DIAGRAM,
    HEATMAPS,
    default_artifact_dir,
    open_artifact_store,
    read_trial_file,
    trial_files,
)
from iasf_search.results.markdown import SPACER
from iasf_search.train import evaluate

ATTENTION_SPACE = {
    "manifold.ops": {"attention": {"heads": 2, "pattern": ["full", "local"], "window": 3}, "conv": {"kernel": 3}},
    "manifold.width": 16,
    "training.epochs": 2,
    "training.lr": 0.01,
    "costs": ["params", "flops"],
}


def run_search(tmp_path, **changes):
    doc = make_doc({**ATTENTION_SPACE, **changes})
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'runs' / 'tiny.db'}"
    result = iasf_search.run_search(iasf_search.load_space(path), trials=5, storage=url)
    return result, url


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished 5-trial search with attention ops, default artifact settings."""
    tmp = tmp_path_factory.mktemp("records")
    result, url = run_search(tmp)
    return result.study, url, open_artifact_store(default_artifact_dir(url), create=False), result


def note(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    return get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id), trial._trial_id)["body"]


def table(body: str, index: int = 0) -> list[list[str]]:
    """The rows of the note's ``index``-th table (header first, the alignment row left out), each cell stripped."""
    blocks: list[list[str]] = [[]]
    for line in body.splitlines():
        if line.startswith("|"):
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    rows = [line.strip().strip("|").split("|") for line in blocks[index]]
    return [[c.strip() for c in row] for row in rows if not all(set(c.strip()) <= set(":-") for c in row)]


def test_every_trial_has_a_diagram_and_a_note_with_its_architecture_and_costs(searched):
    study, _, store, _ = searched
    for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        svg = read_trial_file(study, t, store, DIAGRAM)
        assert svg is not None and b"<svg" in svg and b"trial " + str(t.number).encode() in svg
        body = note(study, t)
        assert body.startswith(f"## Trial {t.number}: {t.user_attrs['summary']}")
        assert t.user_attrs["arch_hash"] in body
        rows = table(body)
        assert rows[0] == ["node", "op", "label", "configuration", "reads"]
        assert [r[0] for r in rows[1:]] == ["input", *(f"n{i}" for i in range(len(rows) - 3)), "output"]
        assert rows[-1][:2] == ["output", "head"]
        assert f"**Costs:** flops {t.user_attrs['cost.flops']:,.0f}, params {t.user_attrs['cost.params']:,.0f}" in body
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert all("**Result:** val accuracy" in note(study, t) for t in complete if "reused_from" not in t.user_attrs)


def test_every_trained_trial_notes_its_representation_metrics_per_node_and_level(searched):
    study, _, _, _ = searched
    trained = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if "reused_from" not in t.user_attrs]
    assert trained
    for t in trained:
        numbers = {k.removeprefix("metric."): v for k, v in t.user_attrs.items() if k.startswith("metric.")}
        assert {"oversmoothing", "effective_rank", "intrinsic_dimension"} <= set(numbers)
        body = note(study, t)
        batch = t.user_attrs["metric_details.oversmoothing"]["batch"]
        assert f"**Representation metrics** ({batch} validation samples): " in body
        rows = table(body, 1)
        assert rows[0] == ["node", "level", *sorted(numbers)]
        by_node = {r[0]: r for r in rows[1:]}
        assert by_node["input"][1] == "0" and "output" in by_node
        per_node = t.user_attrs["metric_details.oversmoothing"]["per_node"]
        column = rows[0].index("oversmoothing")
        assert by_node["output"][column] == f"{per_node['output']:,.4g}"


def test_note_is_short_key_value_text_in_left_aligned_columns(make_space, components, make_graph, train_config):
    space = make_space({"manifold.fusions": ["sum", "gated"]})
    graph = make_graph([
        {"op": "attention", "config": {"heads": 2, "pattern": "local", "window": 3}},
        {"op": "conv", "config": {"kernel": 3, "dilation": 1}, "inputs": ["input"]},
        {"op": "mlp", "config": {"expansion": 2}, "inputs": ["n0", "n1"], "fusion": "gated"},
    ])
    attrs = {"summary": "p2/learned w16 attn-loc3/h2", "arch_hash": "abc123", "params": 2586, "cost.params": 2586.0,
             "train_config": train_config, "test_accuracy": 0.925, "epochs": 2, "train_seconds": 13.6123}
    trial = SimpleNamespace(number=4, user_attrs=attrs)
    body = trial_note(trial, graph, space, components)
    assert body.startswith("## Trial 4: p2/learned w16 attn-loc3/h2\n") and "`abc123`" in body
    assert "|:---|:---|:---|:---|:---|" in body and "{" not in body
    assert f"| n0{SPACER} |" in body  # cells end with a visible gap in the dashboard
    rows = {r[0]: r for r in table(body)}
    assert rows["n0"] == ["n0", "attention", "attn-loc3/h2", "heads=2 pattern=local window=3", "input"]
    assert rows["n1"][2:] == ["conv3", "dilation=1 kernel=3", "input"]
    assert rows["n2"][4] == "n0 + n1 (gated)"
    assert rows["output"] == ["output", "head", "", "", "n2"]
    assert rows["input"][3] == "overlap=false patch=2 position=learned"
    assert ("**Training:** optimizer=adamw lr=0.003 epochs=2 batch_size=128 weight_decay=0.05 warmup=0.1 "
            "label_smoothing=0 grad_clip=1 augment=false") in body
    assert "**Result:**" not in body
    trained = trial_note(trial, graph, space, components, [0.9481481])
    assert "**Result:** val accuracy 0.9481; test accuracy 0.9250; 2 epochs in 13.6 s" in trained


def test_key_values_writes_values_as_a_space_file_would():
    assert key_values({"b": [1, "x"], "a": None, "c": 1e-5}) == "a=none b=1,x c=1e-05"
    assert key_values({"z": 1, "lr": 0.5, "a": True}, ("lr",), sort=False) == "lr=0.5 z=1 a=true"


def test_front_runners_keep_heat_maps_and_a_checkpoint_others_do_not(searched):
    study, _, store, _ = searched
    best_so_far = (float("-inf"), 0.0)  # (value, -validation loss): ties on the value go to the surer trial
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        files = trial_files(study, t)
        mine = (t.value, -t.user_attrs["val_loss"])
        improved = mine > best_so_far and "reused_from" not in t.user_attrs
        best_so_far = max(best_so_far, mine)
        assert (CHECKPOINT in files) == improved, t.number
        has_attention = any(n.get("op") == "attention" for n in json.loads(t.system_attrs["architecture"])["nodes"])
        assert (HEATMAPS in files) == (improved and has_attention), t.number
    best = trained_source(study, iasf_search.best_trials(study)[0])
    assert CHECKPOINT in trial_files(study, best)


def test_the_checkpoint_reproduces_the_trials_test_accuracy(searched, digits, components):
    study, _, store, _ = searched
    best = trained_source(study, iasf_search.best_trials(study)[0])
    weights = safetensors.torch.load(read_trial_file(study, best, store, CHECKPOINT))
    assert not any(k.startswith("aux_modules.") for k in weights)
    model = build_model(iasf_search.trial_architecture(best), components, digits.sample_shape, digits.num_classes)
    model.load_state_dict(weights)
    acc, _ = evaluate(model, digits.x_test, digits.y_test, torch.device("cpu"))
    assert acc == best.user_attrs["test_accuracy"]


def test_heat_map_is_a_png(searched):
    study, _, store, _ = searched
    pngs = [read_trial_file(study, t, store, HEATMAPS) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    pngs = [p for p in pngs if p is not None]
    assert pngs and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)


def test_objective_names_reach_the_dashboard(searched):
    study = searched[0]
    assert study.metric_names == ["val accuracy"]


def test_artifacts_section_switches_parts_off(tmp_path):
    result, url = run_search(tmp_path, artifacts={"checkpoints": "none", "heatmaps": "all", "diagram": False, "notes": False})
    study = result.study
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        files = trial_files(study, t)
        assert CHECKPOINT not in files and DIAGRAM not in files
    keys = study._storage.get_study_system_attrs(study._study_id)
    assert not any(re.match(r"dashboard:\d+:note", k) for k in keys)  # no trial's note (the study's own page is kept)


def test_no_artifact_store_means_no_files_but_notes(tmp_path, write_space):
    path = write_space(ATTENTION_SPACE)
    url = f"sqlite:///{tmp_path / 'x' / 'n.db'}"
    result = iasf_search.run_search(iasf_search.load_space(path), trials=2, storage=url, artifacts=None)
    assert not (tmp_path / "x" / "artifacts").exists()
    assert result.artifact_dir is None
    t = result.study.get_trials(states=(TrialState.COMPLETE,))[0]
    assert trial_files(result.study, t) == {}
    assert note(result.study, t).startswith("## Trial")


def test_dominance_and_front_runner_rule():
    assert dominates([0.9, 10], [0.8, 10], [1, -1]) and not dominates([0.9, 10], [0.9, 10], [1, -1])
    assert not dominates([0.9, 20], [0.8, 10], [1, -1])
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.9, 100.0]))
    assert is_front_runner(study, [0.8, 50.0])       # a trade-off: not dominated
    assert is_front_runner(study, [0.9, 100.0])      # a tie is not dominated
    assert not is_front_runner(study, [0.8, 200.0])
    single = optuna.create_study(direction="maximize")
    assert is_front_runner(single, [0.1])            # the first trial
    single.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"val_loss": 0.2}))
    assert is_front_runner(single, [0.6]) and not is_front_runner(single, [0.5])
    surer, less_sure = single.ask(), single.ask()  # level with the best: ahead only with a lower validation loss
    surer.set_user_attr("val_loss", 0.1)
    less_sure.set_user_attr("val_loss", 0.3)
    assert is_front_runner(single, [0.5], surer) and not is_front_runner(single, [0.5], less_sure)


def test_the_front_runner_rule_reads_constraints_as_the_pick_does():
    """An infeasible trial with the best accuracy neither is a front runner nor keeps later feasible ones from being
    one (they get the checkpoint ``export`` needs)."""
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.99, user_attrs={"val_loss": 0.1}, constraints={"oversmoothing": 0.5}))
    feasible = study.ask()
    feasible.set_user_attr("constraints", {"oversmoothing": {"value": 0.2, "max": 0.5, "feasible": True}})
    feasible.set_user_attr("val_loss", 0.3)
    assert is_front_runner(study, [0.9], feasible)
    infeasible = study.ask()
    infeasible.set_user_attr("constraints", {"oversmoothing": {"value": 0.9, "max": 0.5, "feasible": False}})
    assert not is_front_runner(study, [0.995], infeasible)
    study.tell(feasible, 0.9)
    later = study.ask()
    assert not is_front_runner(study, [0.85], later) and is_front_runner(study, [0.95], later)
