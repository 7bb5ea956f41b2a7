"""The installable example under examples/iasf-example-plugin, as a user would use it.

The README's test command installs it; the test is skipped (with the reason) where it is not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

from iasf_search.cli import main
from iasf_search.plugin_manager import DISABLE_AUTOLOAD_ENV
from iasf_search.testing import check_fusion, check_op

example = pytest.importorskip("iasf_example_plugin", reason="install examples/iasf-example-plugin (the README's test command does)")
EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "examples" / "iasf-example-plugin"


def test_example_components_pass_the_kit():
    check_op(example.Fourier())
    check_fusion(example.Maximum())


def test_entry_point_plugin_is_listed(capsys, monkeypatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "example (entry point)" in lines
    block = lines[lines.index("example (entry point)") + 1: lines.index("example (entry point)") + 5]
    assert block == ["  ops: fourier", "  fusions: maximum", "  auxiliary objectives: token_smoothness",
                     "  cost models: activation_kb"]


def test_disabling_autoload_hides_it(capsys):
    assert main(["plugins"]) == 0  # conftest sets the disabling variable
    assert "example (entry point)" not in capsys.readouterr().out


def test_example_op_is_sampled_and_trained_in_a_search(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    space = tmp_path / "example.yaml"
    shutil.copy(EXAMPLE_DIR / "search_space.yaml", space)
    url = f"sqlite:///{tmp_path / 'example.db'}"
    assert main(["--space", str(space), "--storage", url]) == 0, capsys.readouterr().err
    trials = optuna.load_study(study_name="example", storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    ops = [n.get("op") for t in trials for n in json.loads(t.system_attrs["architecture"])["nodes"]]
    assert "fourier" in ops
    assert any("fft" in t.user_attrs["summary"] for t in trials)
    for t in trials:  # the plugin's cost model and objective were recorded
        assert t.user_attrs["cost.activation_kb"] > 0 and t.user_attrs["cost.flops"] > 0
        assert t.user_attrs["aux.token_smoothness"]["loss"] >= 0
        assert t.system_attrs["train_config"]["auxiliary"]["token_smoothness"]["weight"] in (0.0, 0.01)
