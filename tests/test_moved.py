"""Old import paths of moved modules (iasf_search.moved): the same module object as the new path, which
keeps its real name and spec, for plugins and scripts written against the earlier layout."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import iasf_search
from iasf_search import moved
from iasf_search.moved import MOVED, SPLIT, MovedModules

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_path_gives_the_module_at_the_new_path(old, new):
    module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__name__ == new and module.__spec__.name == new
    assert sys.modules[old] is module


def test_new_paths_exist_and_old_ones_are_gone():
    for old, new in [*MOVED.items(), *((old, new) for old, parts in SPLIT.items() for new in parts)]:
        assert importlib.util.find_spec(new) is not None, new
        relative = Path(*old.split("."))
        assert not (ROOT / relative).with_suffix(".py").exists(), f"{old} is both moved and present"


def test_a_split_module_answers_each_name_from_the_module_it_went_to():
    from iasf_search.objective import TrialObjective, attach_aux, sample_trial
    from iasf_search.study import load_task, prepare_search, run_search

    assert run_search is importlib.import_module("iasf_search.search.study").run_search
    assert (load_task, prepare_search) == (importlib.import_module("iasf_search.search.setup").load_task,
                                           importlib.import_module("iasf_search.search.setup").prepare_search)
    assert TrialObjective is importlib.import_module("iasf_search.trial.objective").TrialObjective
    assert sample_trial is importlib.import_module("iasf_search.sampling").sample_trial
    assert attach_aux is importlib.import_module("iasf_search.train").attach_aux
    study = importlib.import_module("iasf_search.study")
    assert "prepare_search" in dir(study) and "run_search" in dir(study)
    with pytest.raises(AttributeError, match="iasf_search.search.study, iasf_search.search.setup"):
        study.no_such_name  # noqa: B018


def test_from_import_of_an_old_path():
    from iasf_search import kernels, progress

    assert progress is importlib.import_module("iasf_search.plugins.console_progress")
    assert kernels.trace_kernels is importlib.import_module("iasf_search.hardware.kernels").trace_kernels


def test_the_finder_answers_only_moved_names():
    finder = MovedModules()
    assert finder.find_spec("iasf_search.no_such_module") is None
    assert finder.find_spec("iasf_search.space") is None  # not moved: the normal import system finds it
    spec = finder.find_spec("iasf_search.records")
    assert spec.name == "iasf_search.records" and spec.loader is finder


def test_install_is_idempotent():
    moved.install()
    moved.install()
    assert sum(isinstance(f, MovedModules) for f in sys.meta_path) == 1
    assert iasf_search.moved is moved


def test_a_fresh_interpreter_imports_an_old_path_first():
    """The old path imported before anything else (as a plugin written for the old layout would)."""
    code = ("import iasf_search.timing as t, iasf_search.hardware.timing as h, sys; "
            "print(t is h, t.__spec__.name, sys.modules['iasf_search.timing'] is h)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.split() == ["True", "iasf_search.hardware.timing", "True"]
