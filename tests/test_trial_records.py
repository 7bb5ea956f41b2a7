"""The built-in trial_records plugin: notes, diagrams, heat maps and checkpoints on the trials of a real search."""

from __future__ import annotations

import json

import optuna
import pytest
import safetensors.torch
import torch
import yaml
from conftest import make_doc
from optuna.trial import TrialState
from optuna_dashboard._note import get_note_from_system_attrs

import iasf_search
from iasf_search.artifacts import CHECKPOINT, DIAGRAM, HEATMAPS, default_artifact_dir, open_artifact_store, read_trial_file, trial_files
from iasf_search.build import build_model
from iasf_search.export import trained_source
from iasf_search.plugins.trial_records import dominates, is_front_runner
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


def test_every_trial_has_a_diagram_and_a_note_with_its_architecture_and_costs(searched):
    study, _, store, _ = searched
    for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        svg = read_trial_file(study, t, store, DIAGRAM)
        assert svg is not None and b"<svg" in svg and b"trial " + str(t.number).encode() in svg
        body = note(study, t)
        assert body.startswith(f"## Trial {t.number}: {t.user_attrs['summary']}")
        assert t.user_attrs["arch_hash"] in body
        assert "| n0 |" in body and "| output | head |" in body
        assert f"**Costs:** flops {t.user_attrs['cost.flops']:,.0f}, params {t.user_attrs['cost.params']:,.0f}" in body
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert all("**Result:** val accuracy" in note(study, t) for t in complete if "reused_from" not in t.user_attrs)


def test_front_runners_keep_heat_maps_and_a_checkpoint_others_do_not(searched):
    study, _, store, _ = searched
    best_so_far = float("-inf")
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        files = trial_files(study, t)
        improved = t.value > best_so_far and "reused_from" not in t.user_attrs
        best_so_far = max(best_so_far, t.value)
        assert (CHECKPOINT in files) == improved, t.number
        has_attention = any(n.get("op") == "attention" for n in json.loads(t.user_attrs["architecture"])["nodes"])
        assert (HEATMAPS in files) == (improved and has_attention), t.number
    best = trained_source(study, study.best_trial)
    assert CHECKPOINT in trial_files(study, best)


def test_the_checkpoint_reproduces_the_trials_test_accuracy(searched, digits, components):
    study, _, store, _ = searched
    best = trained_source(study, study.best_trial)
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
    assert not any("note" in k for k in study._storage.get_study_system_attrs(study._study_id))


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
    single.add_trial(optuna.trial.create_trial(value=0.5))
    assert is_front_runner(single, [0.6]) and not is_front_runner(single, [0.5])
