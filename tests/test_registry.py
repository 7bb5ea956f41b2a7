"""Registries and plugin loading: built-ins, name clashes, unknown names, --plugin and the space's plugins:."""

from __future__ import annotations

import json

import optuna
import pluggy
import pytest
from optuna.trial import TrialState

import iasf_search
from iasf_search import graph as arch
from iasf_search.cli import main
from iasf_search.components import NodeOp
from iasf_search.errors import BadInput, SpaceError
from iasf_search.plugin_manager import BUILTIN_PLUGINS, load_components
from iasf_search.registry import Registry

BUILTIN_NAMES = {
    "ops": {"attention", "conv", "mlp", "pool", "identity"},
    "fusions": {"sum", "concat", "gated", "beta_softmax"},
    "stems": {"image", "sequence"},
    "datasets": {"digits", "mnist1d"},
    "samplers": {"tpe", "random", "nsga2"},
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


def test_duplicate_names_from_two_plugins():
    with pytest.raises(BadInput) as info:
        load_components([("plugin_samples.dup_a", "--plugin"), ("plugin_samples.dup_b", "--plugin")], autoload=False)
    message = str(info.value)
    assert "op 'twin' is registered by two plugins" in message
    assert "'plugin_samples.dup_a'" in message and "'plugin_samples.dup_b'" in message


def test_plugin_clashing_with_a_builtin_names_both():
    with pytest.raises(BadInput, match="op 'mlp' is registered by two plugins: 'iasf_search.plugins.ops' and 'plugin_samples.clash_mlp'"):
        load_components([("plugin_samples.clash_mlp", "--plugin")], autoload=False)


def test_same_module_twice_is_loaded_once():
    components = load_components([("plugin_samples.scale_op", "--plugin"), ("plugin_samples.scale_op", "space file")],
                                 autoload=False)
    assert "scaled_linear" in components.ops
    assert components.sources["plugin_samples.scale_op"] == "--plugin"
    assert components.ops.owner("scaled_linear") == "plugin_samples.scale_op"


def test_get_unknown_name_suggests_the_close_one(components):
    with pytest.raises(BadInput) as info:
        components.ops.get("atention")
    message = str(info.value)
    assert "unknown op 'atention'" in message
    assert "did you mean 'attention'" in message
    assert "allowed: attention, conv, identity, mlp, pool" in message
    with pytest.raises(BadInput, match="did you mean 'beta_softmax'"):
        components.fusions.get("beta_sofmax")
    with pytest.raises(BadInput) as info:
        components.samplers.get("zzz")
    assert "did you mean" not in str(info.value)


def test_registry_basics():
    class Op(NodeOp):
        name = "op1"

        def build(self, config, ctx):
            raise AssertionError("never built")

    registry: Registry = Registry("op", NodeOp)._as_plugin("tests")
    op = Op()
    assert registry.register(op) is op
    assert registry.get("op1") is op and "op1" in registry and len(registry) == 1
    assert list(registry) == registry.names() == ["op1"]
    assert registry.owner("op1") == "tests"
    with pytest.raises(BadInput, match="must be a NodeOp instance"):
        registry.register(object())
    nameless = Op()
    nameless.name = ""
    with pytest.raises(BadInput, match="without a name"):
        registry.register(nameless)


def test_plugin_registering_a_wrong_type():
    with pytest.raises(BadInput, match="plugin 'plugin_samples.not_a_component' registered 'attention2' as a op"):
        load_components([("plugin_samples.not_a_component", "--plugin")], autoload=False)


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


# -- through the CLI --------------------------------------------------------------------------------


def test_cli_unknown_plugin_exits_2(capsys, write_space):
    write_space()
    rc = main(["--space", "tiny.yaml", "--plugin", "no_such_module"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.startswith("iasf-search: error: cannot load plugin module 'no_such_module'")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_duplicate_plugins_exit_2(capsys, write_space):
    write_space()
    rc = main(["--space", "tiny.yaml", "--plugin", "plugin_samples.dup_a", "--plugin", "plugin_samples.dup_b"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "plugin_samples.dup_a" in err and "plugin_samples.dup_b" in err


def test_space_naming_a_plugin_op_without_the_plugin(write_space):
    path = write_space({"manifold.ops": {"scaled_linear": None}})
    with pytest.raises(iasf_search.SpaceError) as info:
        iasf_search.load_space(path)
    assert info.value.key == "manifold.ops.scaled_linear"


PLUGIN_SPACE = {
    "manifold.nodes": 1,
    "manifold.width": 8,
    "manifold.ops": {"scaled_linear": {"factor": [0.5, 1.0]}},
}


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
    space = iasf_search.load_space(path)
    assert space.plugins == ("plugin_samples.scale_op",)
    assert space.components.sources["plugin_samples.scale_op"] == "space file"
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
    """A new modality from a third-party plugin: its stem, dataset, op, fusion, sampler and pruner all take part."""
    from iasf_search.testing import check_dataset, check_fusion, check_op, check_stem

    comps = load_components([("plugin_samples.every_hook", "--plugin")], autoload=False)
    owners = {kind: getattr(comps, attr).owner(name) for kind, attr, name in [
        ("op", "ops", "negate"), ("fusion", "fusions", "maximum"), ("stem", "stems", "flat"),
        ("dataset", "datasets", "flat_digits"), ("sampler", "samplers", "seeded_random"), ("pruner", "pruners", "never"),
        ("auxiliary objective", "aux_objectives", "smoothness"), ("cost model", "cost_models", "tokens"),
        ("space section", "space_sections", "flat_logger")]}
    assert set(owners.values()) == {"plugin_samples.every_hook"}
    check_op(comps.ops.get("negate"))
    check_fusion(comps.fusions.get("maximum"))
    check_stem(comps.stems.get("flat"), (64,))
    check_dataset(comps.datasets.get("flat_digits"))

    write_space(doc={"name": "flat", "plugins": ["plugin_samples.every_hook"], "task": {"dataset": "flat_digits"},
                     "manifold": {"nodes": 2, "max_in_degree": 2, "width": 8, "ops": ["negate", "mlp"], "fusions": ["maximum"]},
                     "training": {"epochs": 1}, "auxiliary": {"smoothness": {}},
                     "costs": {"tokens": {"scale": 2}}, "flat_logger": {"prefix": "x"},
                     "search": {"sampler": "seeded_random", "pruner": "never", "trials": 3}})
    url = f"sqlite:///{tmp_path / 'flat.db'}"
    assert main(["--space", "tiny.yaml", "--storage", url]) == 0, capsys.readouterr().err
    trials = optuna.load_study(study_name="flat", storage=url).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    archs = [json.loads(t.system_attrs["architecture"]) for t in trials]
    assert all(a["nodes"][0]["op"] == "flat" for a in archs)  # the plugin's stem
    assert any(n.get("op") == "negate" for a in archs for n in a["nodes"])
    assert any(n.get("fusion") == "maximum" for a in archs for n in a["nodes"])
    assert all(t.system_attrs["train_config"]["auxiliary"] == {"smoothness": {"weight": 0.05}} for t in trials)
    assert all(t.user_attrs["aux.smoothness"]["loss"] >= 0 for t in trials)
    assert all(t.user_attrs["cost.tokens"] == 128.0 for t in trials)  # 64 feature tokens x scale 2
    space = iasf_search.load_space("tiny.yaml")
    assert space.sections["flat_logger"] == {"prefix": "x", "every": 1}
    write_space(doc={"name": "flat", "plugins": ["plugin_samples.every_hook"], "task": {"dataset": "flat_digits"},
                     "manifold": {"ops": ["mlp"]}, "flat_logger": {"evry": 2}})
    with pytest.raises(SpaceError, match=r"flat_logger.evry: unknown key \(did you mean 'every'\?\)"):
        iasf_search.load_space("tiny.yaml")
