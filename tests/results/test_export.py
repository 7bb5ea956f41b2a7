"""Export a trial, load it back, ONNX, and retrain it from scratch (`export`, `load_model`, `train`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import make_doc, run

import iasf_search
from iasf_search.cli import main
from iasf_search.results.export import masked_command
from iasf_search.train import evaluate

SPACE = make_doc({"manifold.ops": {"attention": {"heads": 2, "pattern": ["full", "local"], "window": 3}, "conv": {"kernel": 3}},
                  "manifold.width": 16, "training.lr": 0.01, "training.epochs": 2, "costs": ["params", "flops"]})
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished 4-trial search (through the CLI), its space file and storage URL."""
    tmp = tmp_path_factory.mktemp("export")
    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    url = f"sqlite:///{tmp / 'runs' / 'tiny.db'}"
    assert main(["--space", str(path), "--storage", url, "--trials", "4", "-q"]) == 0
    return tmp, path, url



def test_export_best_and_load_model_reproduce_the_trial(searched, capsys, tmp_path, digits):
    _, path, url = searched
    rc, out, err = run(capsys, "export", "--space", str(path), "--storage", url, "--out", str(tmp_path / "best"))
    assert rc == 0, err
    folder = tmp_path / "best"
    assert {p.name for p in folder.iterdir()} == {"arch.json", "model.safetensors", "model.json", "space.yaml", "README.md"}
    study = iasf_search.load_results(url, "tiny")
    best = study.best_trial
    info = json.loads((folder / "model.json").read_text())
    assert (info["trial"], info["arch_hash"], info["num_classes"], info["sample_shape"]) == \
        (best.number, best.user_attrs["arch_hash"], 10, [1, 8, 8])
    assert info["metrics"]["test_accuracy"] == best.user_attrs["test_accuracy"]
    assert info["costs"]["flops"] == best.user_attrs["cost.flops"]
    assert f"exported trial #{best.number}" in out

    model = iasf_search.load_model(folder)
    assert not model.training
    acc, _ = evaluate(model, digits.x_test, digits.y_test, CPU)
    assert acc == best.user_attrs["test_accuracy"]          # the very weights the trial evaluated
    again = iasf_search.load_model(folder)
    x = digits.x_val[:5]
    assert torch.equal(model(x), again(x))

    card = (folder / "README.md").read_text()
    assert f"trial {best.number}" in card and "iasf-search --space" in card and "--trials 4 -q" in card
    assert "| test_accuracy |" in card and "flops" in card and "digits" in card
    assert yaml.safe_load((folder / "space.yaml").read_text())["name"] == "tiny"


def test_export_again_into_the_same_folder_overwrites(searched, capsys, tmp_path):
    _, path, url = searched
    for _ in range(2):
        rc, _, err = run(capsys, "export", "--space", str(path), "--storage", url, "--out", str(tmp_path / "e"))
        assert rc == 0, err


def test_onnx_export_gives_the_same_logits(searched, capsys, tmp_path, digits):
    ort = pytest.importorskip("onnxruntime")
    _, path, url = searched
    rc, out, err = run(capsys, "export", "--space", str(path), "--storage", url, "--out", str(tmp_path / "o"), "--onnx")
    assert rc == 0, err
    assert "model.onnx" in out and "warning" not in err
    model = iasf_search.load_model(tmp_path / "o")
    x = digits.x_test[:7]
    session = ort.InferenceSession(str(tmp_path / "o" / "model.onnx"))
    logits = session.run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(logits, model(x).detach().numpy(), atol=1e-4)


def test_a_trial_without_checkpoint_names_those_with_one(searched, capsys, tmp_path):
    _, path, url = searched
    study = iasf_search.load_results(url, "tiny")
    from iasf_search.results.artifacts import CHECKPOINT, trial_files

    without = [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"
               and "reused_from" not in t.user_attrs and CHECKPOINT not in trial_files(study, t)]
    if not without:
        pytest.skip("every completed trial improved on the previous ones in this run")
    rc, _, err = run(capsys, "export", "--space", str(path), "--storage", url, "--trial", str(without[0]), "--out", str(tmp_path / "x"))
    assert rc == 2 and f"trial #{without[0]} kept no checkpoint" in err and "trials with one:" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args, message", [
    (["--trial", "99"], "--trial 99: no such trial"),
    (["--out", "{file}"], "is a file"),
    (["--out", "{foreign}"], "holds other files"),
    (["--artifacts", "{missing}"], "no artifact folder there"),
])
def test_export_bad_input(searched, capsys, tmp_path, args, message):
    _, path, url = searched
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    subs = {"{file}": str(tmp_path / "f.txt"), "{foreign}": str(tmp_path / "foreign"), "{missing}": str(tmp_path / "nope")}
    args = [subs.get(a, a) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "new")]
    rc, _, err = run(capsys, "export", "--space", str(path), "--storage", url, *out, *args)
    assert rc == 2 and message in err and "Traceback" not in err
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"


def test_train_retrains_on_train_plus_validation(searched, capsys, tmp_path, digits):
    _, path, url = searched
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
        (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    rc, _, err = run(capsys, "train", "--arch", str(arch))
    assert rc == 2 and message in err and "Traceback" not in err


def test_train_without_space_says_to_pass_one(capsys, tmp_path):
    (tmp_path / "arch.json").write_text("{}")
    rc, _, err = run(capsys, "train", "--arch", str(tmp_path / "arch.json"))
    assert rc == 2 and "pass --space PATH" in err


def test_load_model_of_a_folder_that_is_not_an_export(tmp_path):
    with pytest.raises(iasf_search.BadInput, match="no model.json"):
        iasf_search.load_model(tmp_path)


def test_masked_command_hides_passwords():
    command = masked_command(["/usr/bin/iasf-search", "--storage", "postgresql://me:s3cret@db/nas", "--space", "a b.yaml"])
    assert "s3cret" not in command and command.startswith("iasf-search --storage 'postgresql://me:***@db/nas'")
    assert "'a b.yaml'" in command
