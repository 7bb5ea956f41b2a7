"""Export a trial and load it back, ONNX too (`export`, `load_model`); the search is conftest's ``export_search``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import run

import iasf_search
from iasf_search.train import evaluate

CPU = torch.device("cpu")


def test_export_best_and_load_model_reproduce_the_trial(export_search, capsys, tmp_path, digits):
    _, path, url = export_search
    rc, out, err = run(capsys, "export", "--space", str(path), "--storage", url, "--out", str(tmp_path / "best"))
    assert rc == 0, err
    folder = tmp_path / "best"
    assert {p.name for p in folder.iterdir()} == {"arch.json", "model.safetensors", "model.json", "space.yaml", "README.md"}
    study = iasf_search.load_results(url, "tiny")
    best = iasf_search.best_trials(study)[0]  # the engine's pick
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


def test_export_again_into_the_same_folder_overwrites(export_search, capsys, tmp_path):
    _, path, url = export_search
    for _ in range(2):
        rc, _, err = run(capsys, "export", "--space", str(path), "--storage", url, "--out", str(tmp_path / "e"))
        assert rc == 0, err


def test_onnx_export_gives_the_same_logits(export_search, capsys, tmp_path, digits):
    ort = pytest.importorskip("onnxruntime")
    _, path, url = export_search
    rc, out, err = run(capsys, "export", "--space", str(path), "--storage", url, "--out", str(tmp_path / "o"), "--onnx")
    assert rc == 0, err
    assert "model.onnx" in out and "warning" not in err
    model = iasf_search.load_model(tmp_path / "o")
    x = digits.x_test[:7]
    session = ort.InferenceSession(str(tmp_path / "o" / "model.onnx"))
    logits = session.run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(logits, model(x).detach().numpy(), atol=1e-4)


def test_a_trial_without_checkpoint_names_those_with_one(export_search, capsys, tmp_path):
    _, path, url = export_search
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
def test_export_bad_input(export_search, capsys, tmp_path, args, message):
    _, path, url = export_search
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    subs = {"{file}": str(tmp_path / "f.txt"), "{foreign}": str(tmp_path / "foreign"), "{missing}": str(tmp_path / "nope")}
    args = [subs.get(a, a) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "new")]
    rc, _, err = run(capsys, "export", "--space", str(path), "--storage", url, *out, *args)
    assert rc == 2 and message in err and "Traceback" not in err
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"


def test_load_model_of_a_folder_that_is_not_an_export(tmp_path):
    with pytest.raises(iasf_search.BadInput, match="no model.json"):
        iasf_search.load_model(tmp_path)


def test_a_truncated_checkpoint_is_one_line_for_export_and_best_reads_on(export_search, capsys, tmp_path):
    import shutil

    folder, _, _ = export_search
    shutil.copytree(folder / "runs", tmp_path / "runs")  # the shared study stays whole
    url = f"sqlite:///{tmp_path / 'runs' / 'tiny.db'}"
    truncated = 0
    for file in (tmp_path / "runs" / "artifacts").rglob("*"):
        data = file.read_bytes() if file.is_file() else b""
        if data[8:9] == b"{":  # a safetensors file: 8 bytes of header length, then its JSON header
            file.write_bytes(data[: len(data) // 3])
            truncated += 1
    assert truncated
    rc, out, err = run(capsys, "export", "--storage", url, "--study", "tiny", "--out", str(tmp_path / "out"))
    assert rc == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "model.safetensors is damaged (SafetensorError" in line and line.endswith(
        "pick another trial with --trial N, or search again to train it anew")
    assert run(capsys, "best", "--storage", url, "--study", "tiny")[0] == 0  # reading the study needs no weights


def test_an_earlier_export_s_onnx_file_does_not_outlive_it(export_search, capsys, tmp_path):
    _, _, url = export_search
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"an earlier export's model")
    assert run(capsys, "export", "--storage", url, "--study", "tiny", "--out", str(out))[0] == 0
    assert not (out / "model.onnx").exists() and (out / "model.safetensors").is_file()


def test_export_on_a_full_disk_is_one_line_and_keeps_the_earlier_export(export_search, capsys, tmp_path, monkeypatch):
    import errno
    import os

    _, _, url = export_search
    out = tmp_path / "out"
    assert run(capsys, "export", "--storage", url, "--study", "tiny", "--out", str(out))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    rc, _, err = run(capsys, "export", "--storage", url, "--study", "tiny", "--out", str(out))
    assert rc == 2 and err.strip() == (f"iasf-search: error: {out / 'arch.json'}: cannot write it (No space left on device); "
                                       f"make room or choose another folder")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # every file whole, none half-written
