"""Registries (iasf_search.registry): registering, name clashes between plugins (naming both), wrong types, and
unknown names with the close one suggested. (Loading plugins: tests/test_plugin_manager.py.)"""

from __future__ import annotations

import pytest

from iasf_search.components import NodeOp
from iasf_search.errors import BadInput
from iasf_search.plugin_manager import load_components
from iasf_search.registry import Registry


def test_duplicate_names_from_two_plugins():
    with pytest.raises(BadInput) as info:
        load_components([("plugin_samples.dup_a", "--plugin"), ("plugin_samples.dup_b", "--plugin")], autoload=False)
    message = str(info.value)
    assert "op 'twin' is registered by two plugins" in message
    assert "'plugin_samples.dup_a'" in message and "'plugin_samples.dup_b'" in message


def test_plugin_clashing_with_a_builtin_names_both():
    with pytest.raises(BadInput, match="op 'mlp' is registered by two plugins: 'iasf_search.plugins.ops' and 'plugin_samples.clash_mlp'"):
        load_components([("plugin_samples.clash_mlp", "--plugin")], autoload=False)


def test_get_unknown_name_suggests_the_close_one(components):
    with pytest.raises(BadInput) as info:
        components.ops.get("atention")
    message = str(info.value)
    assert "unknown op 'atention'" in message
    assert "did you mean 'attention'" in message
    assert "allowed: attention, conv, gmlp, identity, mlp, pool, token_mlp" in message
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
