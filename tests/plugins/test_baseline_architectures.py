"""The built-in baseline architectures of ``search.enqueue``: sized to each space, in it, named errors otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from iasf_search import graph as arch
from iasf_search.params import Range
from iasf_search.plugins.baseline_architectures import node_count, pick
from iasf_search.search.enqueue import graph_params
from iasf_search.session import open_session

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


@pytest.mark.parametrize("name", ["vision.yaml", "sequence.yaml", "timeseries.yaml", "text.yaml"])
def test_the_built_in_baselines_fit_every_shipped_space(name):
    session = open_session(SPACES / name)
    for baseline in ("transformer", "cnn"):
        graph = session.components.architectures.get(baseline).graph(session.space, session.components)
        graph_params(graph, session.space, session.components)  # in the space
        ops = [graph.nodes[n]["op"] for n in arch.hidden_nodes(graph)]
        assert ops == (["attention", "mlp"] * 2 if baseline == "transformer" else ["conv"] * 3)[:len(ops)] and ops
        patterns = {graph.nodes[n]["config"]["pattern"] for n in arch.hidden_nodes(graph) if graph.nodes[n]["op"] == "attention"}
        assert patterns == ({"full"} if baseline == "transformer" else set())


def test_node_count_stays_inside_the_space_s_bounds(make_space):
    assert node_count(make_space({"manifold.nodes": {"low": 1, "high": 8}}), 4) == 4
    assert node_count(make_space({"manifold.nodes": {"low": 1, "high": 2}}), 4) == 2
    assert node_count(make_space({"manifold.nodes": {"low": 5, "high": 8}}), 3) == 5


def test_pick_prefers_what_a_hand_written_model_uses():
    assert pick("pattern", Range(choices=("local", "full"))) == "full"
    assert pick("pattern", Range(choices=("local", "dilated"))) == "local"
    assert pick("heads", Range(low=2, high=8, is_int=True)) == 2
    assert pick("position", Range(fixed="sinusoidal")) == "sinusoidal"


def test_a_space_without_the_ops_cannot_build_them(make_session):
    session = make_session()  # mlp and conv only
    with pytest.raises(ValueError, match=r"needs the op\(s\) attention in manifold.ops; the space offers conv, mlp"):
        session.components.architectures.get("transformer").graph(session.space, session.components)
