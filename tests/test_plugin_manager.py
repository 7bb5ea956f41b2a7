"""Loading plugins (iasf_search.plugin_manager): the built-ins, entry points and the switch that disables them,
``--plugin`` modules and the space file's ``plugins:``, hooks a plugin may not implement, what each plugin
contributed, and which plugin raised."""

from __future__ import annotations

import json
import sys

import optuna
import pluggy
import pytest
import torch
from optuna.trial import TrialState

import iasf_search
from iasf_search import graph as arch
from iasf_search.cli import main
from iasf_search.errors import BadInput, SpaceError
from iasf_search.plugin_manager import (
    BUILTIN_PLUGINS,
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    PluginImportError,
    contributions,
    load_components,
    plugin_in_traceback,
    plugins_to_load,
)

BUILTIN_NAMES = {
    "ops": {"attention", "conv", "mlp", "pool", "identity"},
    "fusions": {"sum", "concat", "gated", "beta_softmax"},
    "stems": {"image", "sequence"},
    "datasets": {"digits", "mnist1d"},
    "samplers": {"tpe", "random", "nsga2", "evolution"},
    "pruners": {"median", "hyperband", "successive_halving", "pareto_halving", "none"},
}



def test_builtin_components(components):
    for kind, names in BUILTIN_NAMES.items():
        assert names <= set(getattr(components, kind)), kind
    assert components.ops.owner("attention") == "iasf_search.plugins.ops"
    assert components.fusions.owner("gated") == "iasf_search.plugins.fusions"
    assert components.datasets.owner("digits") == "iasf_search.plugins.datasets"
    assert all(components.sources[p] == "built-in" for p in BUILTIN_PLUGINS)
    # stems are looked up by modality name: every dataset's modality has one
    assert all(components.datasets.get(n).modality in components.stems for n in components.datasets)


def test_same_module_twice_is_loaded_once():
    components = load_components([("plugin_samples.scale_op", "--plugin"), ("plugin_samples.scale_op", "space file")],
                                 autoload=False)
    assert "scaled_linear" in components.ops
    assert components.sources["plugin_samples.scale_op"] == "--plugin"
    assert components.ops.owner("scaled_linear") == "plugin_samples.scale_op"


def test_plugins_to_load_puts_the_commands_modules_before_those_the_space_names():
    assert plugins_to_load(["b", "a"], ["c", "a"]) == [("b", "--plugin"), ("a", "--plugin"), ("c", "space file")]
    assert plugins_to_load(["x"], ["y"], extra_from="plugins=", recorded_from="model.json") == [
        ("x", "plugins="), ("y", "model.json")]
    assert plugins_to_load() == [] and plugins_to_load(["x", "x"]) == [("x", "--plugin")]
    # what a session loads: its --plugin modules, then its file's
    components = load_components(plugins_to_load(["plugin_samples.nan_op"], ["plugin_samples.scale_op", "plugin_samples.nan_op"]),
                                 autoload=False)
    assert [m for m in components.sources if m.startswith("plugin_samples.")] == ["plugin_samples.nan_op", "plugin_samples.scale_op"]
    assert components.sources["plugin_samples.nan_op"] == "--plugin"


def test_plugin_implementing_an_unknown_hook():
    with pytest.raises(BadInput, match="implements a hook iasf-search does not have"):
        load_components([("plugin_samples.unknown_hook", "--plugin")], autoload=False)


def test_missing_plugin_module():
    with pytest.raises(BadInput, match="cannot load plugin module 'no_such_module' \\(from --plugin\\)"):
        load_components([("no_such_module", "--plugin")], autoload=False)


def test_autoload_follows_the_environment(monkeypatch):
    calls = []
    monkeypatch.setattr(pluggy.PluginManager, "load_setuptools_entrypoints", lambda self, group, name=None: calls.append(group) or 0)
    load_components()  # the autouse fixture sets IASF_SEARCH_DISABLE_PLUGIN_AUTOLOAD=1
    assert calls == []
    monkeypatch.delenv("IASF_SEARCH_DISABLE_PLUGIN_AUTOLOAD")
    load_components()
    assert calls == ["iasf_search"]
    load_components(autoload=False)
    assert calls == ["iasf_search"]


def test_broken_entry_point_is_bad_input(monkeypatch):
    def explode(self, group, name=None):
        raise ImportError("broken_plugin: No module named 'torchvision'")

    monkeypatch.setattr(pluggy.PluginManager, "load_setuptools_entrypoints", explode)
    with pytest.raises(BadInput, match="IASF_SEARCH_DISABLE_PLUGIN_AUTOLOAD=1"):
        load_components(autoload=True)



def test_builtin_plugins_are_the_plugins_folder():
    """The built-in plugins are the modules of plugins/, installed as iasf_search.plugins, loaded in order."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "plugins"
    modules = {f"iasf_search.plugins.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__"}
    observers = {"iasf_search.plugins.console_progress", "iasf_search.plugins.json_event_log"}  # chosen by the CLI
    assert set(BUILTIN_PLUGINS) == modules - observers
    assert len(BUILTIN_PLUGINS) == len(set(BUILTIN_PLUGINS))
    components = load_components(autoload=False)
    assert list(components.sources) == list(BUILTIN_PLUGINS)
    assert {components.pm.get_name(p) for p in components.pm.get_plugins()} == set(BUILTIN_PLUGINS)
    assert ENTRY_POINT_GROUP == "iasf_search" and DISABLE_AUTOLOAD_ENV == "IASF_SEARCH_DISABLE_PLUGIN_AUTOLOAD"


def test_plugin_import_error_says_who_asked():
    with pytest.raises(PluginImportError) as info:
        load_components([("no_such_module", "space file")], autoload=False)
    assert info.value.module == "no_such_module" and info.value.source == "space file"
    assert isinstance(info.value, BadInput) and "install it or fix the name" in str(info.value)


def test_contributions_list_registered_names_and_life_cycle_hooks():
    components = load_components([("plugin_samples.scale_op", "--plugin"), ("plugin_samples.every_hook", "space file")],
                                 autoload=False)
    listed = contributions(components)
    assert list(listed) == [*BUILTIN_PLUGINS, "plugin_samples.scale_op", "plugin_samples.every_hook"]
    assert listed["iasf_search.plugins.ops"] == {"op": ["attention", "conv", "mlp", "token_mlp", "gmlp", "pool", "identity"]}
    assert listed["plugin_samples.scale_op"] == {"op": ["scaled_linear"]}
    assert listed["plugin_samples.every_hook"] == {
        "op": ["negate"], "fusion": ["maximum"], "readout": ["first_token"], "norm": ["rms"], "stem": ["flat"], "dataset": ["flat_digits"],
        "auxiliary objective": ["smoothness"], "cost model": ["tokens"], "space section": ["flat_logger"],
        "sampler": ["seeded_random"], "pruner": ["never"], "zero-cost proxy": ["output_spread"]}
    assert listed["iasf_search.plugins.trial_records"]["hooks"] == sorted(listed["iasf_search.plugins.trial_records"]["hooks"])
    assert all(h.startswith("iasf_") and "register" not in h for p in listed.values() for h in p.get("hooks", []))


def test_plugin_in_traceback_names_the_innermost_plugin_frame(make_graph):
    from iasf_search.build import build_model

    components = load_components([("plugin_samples.explode_op", "--plugin")], autoload=False)
    graph = make_graph([{"op": "mlp", "config": {"expansion": 1}}, {"op": "explode", "config": {"explode": True}}], width=8)
    with pytest.raises(RuntimeError, match="boom") as info:
        build_model(graph, components, (1, 8, 8), 10)(torch.zeros(2, 1, 8, 8))
    assert plugin_in_traceback(components, info.value.__traceback__) == "plugin_samples.explode_op"
    try:
        raise ValueError("core code")
    except ValueError:
        assert plugin_in_traceback(components, sys.exc_info()[2]) is None
    assert plugin_in_traceback(components, None) is None


# -- through the CLI --------------------------------------------------------------------------------


PLUGIN_SPACE = {
    "manifold.nodes": 1,
    "manifold.width": 8,
    "manifold.ops": {"scaled_linear": {"factor": [0.5, 1.0]}},
}


def test_space_naming_a_plugin_op_without_the_plugin(write_space):
    path = write_space({"manifold.ops": {"scaled_linear": None}})
    with pytest.raises(iasf_search.SpaceError) as info:
        iasf_search.load_space(path)
    assert info.value.key == "manifold.ops.scaled_linear"


def _assert_plugin_op_trained(url: str) -> None:
    study = optuna.load_study(study_name="tiny", storage=url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete
    for t in complete:
        assert "scaled_linear" in t.system_attrs["architecture"]
        graph = arch.from_json(t.system_attrs["architecture"])
        assert graph.nodes["n0"]["op"] == "scaled_linear"
        assert graph.nodes["n0"]["config"]["factor"] in (0.5, 1.0)
        assert t.params["n0.scaled_linear.factor"] == graph.nodes["n0"]["config"]["factor"]
        assert t.user_attrs["params"] > 0 and "val_accuracy" in t.user_attrs


def test_plugin_op_via_cli_flag_is_sampled_and_trained(capsys, tmp_path, write_space):
    write_space(PLUGIN_SPACE)
    url = f"sqlite:///{tmp_path / 'plugin.db'}"
    rc = main(["--space", "tiny.yaml", "--plugin", "plugin_samples.scale_op", "--storage", url, "--trials", "2"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    _assert_plugin_op_trained(url)
    assert "scaled_linear" in out
    # the study can be inspected again only with the plugin (the space names its op)
    assert main(["best", "--space", "tiny.yaml", "--plugin", "plugin_samples.scale_op", "--storage", url]) == 0
    assert main(["best", "--space", "tiny.yaml", "--storage", url]) == 2


def test_plugins_listed_in_the_space_file(capsys, tmp_path, write_space):
    path = write_space({**PLUGIN_SPACE, "plugins": ["plugin_samples.scale_op"]})
    session = iasf_search.open_session(path)
    space = session.space
    assert space.plugins == ("plugin_samples.scale_op",)
    assert session.components.sources["plugin_samples.scale_op"] == "space file"
    assert space.ops["scaled_linear"]["factor"].choices == (0.5, 1.0)
    assert space.resolved()["plugins"] == ["plugin_samples.scale_op"]

    url = f"sqlite:///{tmp_path / 'listed.db'}"
    rc = main(["--space", "tiny.yaml", "--storage", url, "--trials", "2"])
    assert rc == 0, capsys.readouterr().err
    _assert_plugin_op_trained(url)
    stored = optuna.load_study(study_name="tiny", storage=url).user_attrs["space"]
    assert stored["plugins"] == ["plugin_samples.scale_op"]
    assert json.dumps(stored)  # plain JSON


def test_a_plugin_using_every_registration_hook_runs_a_search(tmp_path, write_space, capsys):
    """A new modality from a third-party plugin: its stem, dataset, op, fusion, readout, norm, sampler and pruner all take part."""
    from iasf_search.testing import check_dataset, check_fusion, check_norm, check_op, check_readout, check_stem

    comps = load_components([("plugin_samples.every_hook", "--plugin")], autoload=False)
    owners = {kind: getattr(comps, attr).owner(name) for kind, attr, name in [
        ("op", "ops", "negate"), ("fusion", "fusions", "maximum"), ("readout", "readouts", "first_token"),
        ("norm", "norms", "rms"), ("stem", "stems", "flat"),
        ("dataset", "datasets", "flat_digits"), ("sampler", "samplers", "seeded_random"), ("pruner", "pruners", "never"),
        ("auxiliary objective", "aux_objectives", "smoothness"), ("cost model", "cost_models", "tokens"),
        ("space section", "space_sections", "flat_logger"), ("zero-cost proxy", "proxies", "output_spread")]}
    assert set(owners.values()) == {"plugin_samples.every_hook"}
    check_op(comps.ops.get("negate"))
    check_fusion(comps.fusions.get("maximum"))
    check_readout(comps.readouts.get("first_token"))
    check_norm(comps.norms.get("rms"))
    check_stem(comps.stems.get("flat"), (64,))
    check_dataset(comps.datasets.get("flat_digits"))

    write_space(doc={"name": "flat", "plugins": ["plugin_samples.every_hook"], "task": {"dataset": "flat_digits"},
                     "manifold": {"nodes": 2, "max_in_degree": 2, "width": 8, "ops": ["negate", "mlp"], "fusions": ["maximum"],
                                  "readouts": ["first_token"], "norms": ["rms"]},
                     "training": {"epochs": 1}, "auxiliary": {"smoothness": {}},
                     "costs": {"tokens": {"scale": 2}}, "flat_logger": {"prefix": "x"},
                     "search": {"sampler": "seeded_random", "pruner": "never", "trials": 3,
                                "proxies": ["output_spread", "zico", "synflow"]}})
    url = f"sqlite:///{tmp_path / 'flat.db'}"
    assert main(["--space", "tiny.yaml", "--storage", url]) == 0, capsys.readouterr().err
    trials = optuna.load_study(study_name="flat", storage=url).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    archs = [json.loads(t.system_attrs["architecture"]) for t in trials]
    assert all(a["nodes"][0]["op"] == "flat" for a in archs)  # the plugin's stem
    assert any(n.get("op") == "negate" for a in archs for n in a["nodes"])
    assert any(n.get("fusion") == "maximum" for a in archs for n in a["nodes"])
    assert all(n.get("readout") == "first_token" for a in archs for n in a["nodes"] if n["id"] == "output")
    assert all(n.get("norm") == "rms" for a in archs for n in a["nodes"] if n["id"].startswith("n"))
    assert all(t.system_attrs["train_config"]["auxiliary"] == {"smoothness": {"weight": 0.05}} for t in trials)
    assert all(t.user_attrs["aux.smoothness"]["loss"] >= 0 for t in trials)
    assert all(t.user_attrs["cost.tokens"] == 128.0 for t in trials)  # 64 feature tokens x scale 2
    assert all(t.user_attrs["proxy.output_spread"] > 0 and "proxy.zico" in t.user_attrs for t in trials)  # the built-in proxies too
    space = iasf_search.load_space("tiny.yaml")
    assert space.sections["flat_logger"] == {"prefix": "x", "every": 1}
    write_space(doc={"name": "flat", "plugins": ["plugin_samples.every_hook"], "task": {"dataset": "flat_digits"},
                     "manifold": {"ops": ["mlp"]}, "flat_logger": {"evry": 2}})
    with pytest.raises(SpaceError, match=r"flat_logger.evry: unknown key \(did you mean 'every'\?\)"):
        iasf_search.load_space("tiny.yaml")
