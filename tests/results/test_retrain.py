"""Retrain a found architecture from scratch on train + validation (`train`, :func:`~iasf_search.results.retrain.retrain`)."""

from __future__ import annotations

import json

import pytest
import safetensors
import torch
import yaml
from conftest import EXPORT_SPACE, TINY_SPACE, run

import iasf_search
from iasf_search.errors import BadInput
from iasf_search.graph import to_json
from iasf_search.results.retrain import read_architecture, retrain, training_config
from iasf_search.train import evaluate

CPU = torch.device("cpu")


def test_train_retrains_on_train_plus_validation(export_search, capsys, tmp_path, digits):
    _, path, url = export_search
    assert run(capsys, "export", "--space", str(path), "--storage", url, "--out", str(tmp_path / "m"))[0] == 0
    rc, out, err = run(capsys, "train", "--arch", str(tmp_path / "m" / "arch.json"), "--epochs", "3")
    assert rc == 0, err
    retrained = tmp_path / "m" / "retrained"
    info = json.loads((retrained / "model.json").read_text())
    assert info["metrics"]["epochs"] == 3 and info["retrained"]["on"] == "train+val"
    assert info["retrained"]["samples"] == len(digits.x_train) + len(digits.x_val)
    assert f"test accuracy {info['metrics']['test_accuracy']:.4f}" in out and "3 epochs on train + validation" in out
    model = iasf_search.load_model(retrained)
    acc, _ = evaluate(model, digits.x_test, digits.y_test, CPU)
    assert acc == info["metrics"]["test_accuracy"]
    # the default schedule is twice the trial's epochs
    rc, out, _ = run(capsys, "train", "--arch", str(tmp_path / "m" / "arch.json"), "--out", str(tmp_path / "r2"))
    assert rc == 0 and "for 4 epochs" in out


@pytest.mark.parametrize("write, message", [
    (None, "no such file"),
    ("not json", "not an architecture graph"),
])
def test_train_bad_input(capsys, tmp_path, write, message):
    arch = tmp_path / "arch.json"
    if write is not None:
        arch.write_text(write)
        (tmp_path / "space.yaml").write_text(yaml.safe_dump(EXPORT_SPACE))
    rc, _, err = run(capsys, "train", "--arch", str(arch))
    assert rc == 2 and message in err and "Traceback" not in err


def test_train_without_space_says_to_pass_one(capsys, tmp_path):
    (tmp_path / "arch.json").write_text("{}")
    rc, _, err = run(capsys, "train", "--arch", str(tmp_path / "arch.json"))
    assert rc == 2 and "pass --space PATH" in err


# -- the steps, in Python ------------------------------------------------------------------------------


def test_training_config_comes_from_the_export_else_from_fixed_space_values(make_space, tmp_path):
    space = make_space()
    trial_config = {"epochs": 3, "lr": 0.5, "batch_size": 32}
    config = training_config(space, {"train_config": trial_config}, tmp_path / "arch.json")
    assert config == trial_config and config is not trial_config  # a copy: the caller changes its epochs
    fixed = training_config(space, {}, tmp_path / "arch.json")
    assert (fixed["epochs"], fixed["batch_size"], fixed["lr"]) == (1, 128, 0.003)


def test_training_config_refuses_a_searched_setting_without_the_trials_settings(make_space, tmp_path):
    space = make_space({"training.lr": [0.01, 0.1]})
    with pytest.raises(BadInput, match=r"training\.lr is searched.*fix training\.lr to one value"):
        training_config(space, {}, tmp_path / "arch.json")


def test_read_architecture_gives_the_graph_or_bad_input(make_graph, tmp_path):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 1}}, {"op": "conv", "config": {"kernel": 3}}], width=8)
    (tmp_path / "arch.json").write_text(to_json(graph))
    read = read_architecture(tmp_path / "arch.json")
    assert sorted(read.nodes) == sorted(graph.nodes) and sorted(read.edges) == sorted(graph.edges)
    assert read.nodes["n1"]["op"] == "conv"
    (tmp_path / "bad.json").write_text(json.dumps({"nodes": []}))
    with pytest.raises(BadInput, match="not an architecture graph"):
        read_architecture(tmp_path / "bad.json")


@pytest.fixture
def arch_folder(tmp_path, make_graph):
    """A folder with an arch.json (one mlp node, width 8) and the tiny space (fixed training settings), no model.json."""
    folder = tmp_path / "found"
    folder.mkdir()
    graph = make_graph([{"op": "mlp", "config": {"expansion": 1}}], width=8)
    (folder / "arch.json").write_text(to_json(graph))
    (folder / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    return folder


def test_retrain_writes_a_loadable_model_and_says_how_it_was_trained(arch_folder, digits):
    result = retrain(arch_folder / "arch.json", epochs=1, device="cpu", seed=3)
    out = arch_folder / "retrained"
    assert result.out == out and result.epochs == 1 and result.search_test_accuracy is None
    assert result.train_samples == len(digits.x_train) + len(digits.x_val)
    assert {p.name for p in out.iterdir()} == {"arch.json", "space.yaml", "model.safetensors", "model.json"}
    assert (out / "arch.json").read_text() == (arch_folder / "arch.json").read_text()
    info = json.loads((out / "model.json").read_text())
    assert info["format"] == "iasf-search-model/1" and info["sample_shape"] == [1, 8, 8] and info["num_classes"] == 10
    assert info["train_config"]["epochs"] == 1 and info["train_config"]["lr"] == 0.003
    assert info["metrics"] == {"test_accuracy": result.test_accuracy, "test_loss": result.test_loss, "epochs": 1,
                               "train_seconds": round(result.seconds, 3), "params": result.params}
    assert info["retrained"] == {"on": "train+val", "samples": result.train_samples, "seed": 3, "device": "cpu",
                                 "search_metrics": {}}
    with safetensors.safe_open(str(out / "model.safetensors"), "pt") as weights:
        assert weights.metadata() == {"format": "iasf-search-model/1", "retrained": "train+val"}
    acc, _ = evaluate(iasf_search.load_model(out), digits.x_test, digits.y_test, CPU)
    assert acc == result.test_accuracy


def test_retrain_is_reproducible_with_its_seed(arch_folder):
    a = retrain(arch_folder / "arch.json", epochs=1, device="cpu", seed=5, out=arch_folder / "a")
    b = retrain(arch_folder / "arch.json", epochs=1, device="cpu", seed=5, out=arch_folder / "b")
    assert (a.test_accuracy, a.test_loss) == (b.test_accuracy, b.test_loss)


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "--epochs must be at least 1, got 0"),
    ({"device": "tpu"}, "tpu"),
    ({"space_path": "nowhere.yaml"}, "nowhere.yaml: no such space file"),
])
def test_retrain_bad_arguments_write_nothing(arch_folder, kwargs, message):
    with pytest.raises(BadInput, match=message):
        retrain(arch_folder / "arch.json", **kwargs)
    assert not (arch_folder / "retrained").exists()
