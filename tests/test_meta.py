"""Meta-tests: every hook is documented in the README with its exact signature and exercised by a test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from iasf_search import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = {name: fn for name, fn in vars(hookspecs).items() if name.startswith("iasf_") and callable(fn)}
TESTS = [p for p in (ROOT / "tests").rglob("*.py") if p.name != Path(__file__).name]


def test_every_hook_has_the_prefix_and_a_docstring():
    assert HOOKS, "no hooks found"
    for name, fn in HOOKS.items():
        assert (fn.__doc__ or "").strip(), f"{name} has no docstring"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_in_the_readme_with_its_signature(name):
    params = ", ".join(inspect.signature(HOOKS[name]).parameters)
    assert f"`{name}({params})`" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_exercised_by_a_test(name):
    assert any(name in p.read_text(encoding="utf-8") for p in TESTS), f"no test mentions {name}"
