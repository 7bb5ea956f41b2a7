"""The hooks (iasf_search.hookspecs), checked as a whole: each one has the ``iasf_`` prefix and a docstring,
a plugin implementing a hook that does not exist is refused when it is loaded, each is documented in
docs/plugins.md with its exact signature, and a real search calls every one of them."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from iasf_search import hookspecs
from iasf_search.cli import main
from iasf_search.errors import BadInput
from iasf_search.plugin_manager import load_components

ROOT = Path(__file__).resolve().parent.parent
MARKER = "iasf_search_spec"
"""The attribute pluggy's ``HookspecMarker("iasf_search")`` puts on every hook specification."""
HOOKS = {name: fn for name, fn in vars(hookspecs).items() if hasattr(fn, MARKER)}
"""Every hook, whatever its name."""


def test_every_hook_has_the_prefix_and_a_docstring():
    assert HOOKS, "no hooks found"
    unprefixed = sorted(name for name in HOOKS if not name.startswith("iasf_"))
    assert not unprefixed, f"hooks without the iasf_ prefix: {unprefixed}"
    undocumented = sorted(name for name, fn in HOOKS.items() if not (fn.__doc__ or "").strip())
    assert not undocumented, f"hooks without a docstring: {undocumented}"


def test_every_function_of_the_module_is_a_hook_and_the_plugin_manager_knows_each():
    functions = {name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and fn.__module__ == hookspecs.__name__}
    assert functions == set(HOOKS), f"functions in hookspecs.py without @hookspec: {sorted(functions - set(HOOKS))}"
    pm = load_components(autoload=False).pm
    assert {name for name in vars(pm.hook) if not name.startswith("_")} == set(HOOKS)


@pytest.mark.parametrize(("sample", "hook"), [("unknown_hook", "iasf_register_opz"), ("unprefixed_hook", "register_ops")])
def test_a_plugin_implementing_a_hook_that_does_not_exist_is_refused_at_load_time(sample, hook):
    with pytest.raises(BadInput, match="implements a hook iasf-search does not have") as info:
        load_components([(f"plugin_samples.{sample}", "--plugin")], autoload=False)
    assert f"plugin_samples.{sample}" in str(info.value) and hook in str(info.value)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_in_the_plugin_guide_with_its_signature(name):
    params = ", ".join(inspect.signature(HOOKS[name]).parameters)
    assert f"`{name}({params})`" in (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def test_a_real_search_calls_every_hook_with_every_argument(write_space, capsys):
    """A recording plugin implements every hook; a 2-trial search with it (registration included) must call each."""
    from plugin_samples import record_hooks

    record_hooks.CALLS.clear()
    write_space()
    assert main(["--space", "tiny.yaml", "--trials", "2", "-q", "--plugin", "plugin_samples.record_hooks"]) == 0, capsys.readouterr().err
    called = {name for name, _ in record_hooks.CALLS}
    never = sorted(set(HOOKS) - called)
    assert not never, f"hooks no search called: {never}"
    for name, arguments in record_hooks.CALLS:
        assert list(arguments) == list(inspect.signature(HOOKS[name]).parameters), (name, sorted(arguments))
    order = [name for name, _ in record_hooks.CALLS if not name.startswith("iasf_register_")]
    assert order[0] == "iasf_study_start" and order[-1] == "iasf_study_end"
    assert order.count("iasf_trial_start") == order.count("iasf_trial_end") == 2
