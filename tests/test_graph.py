"""Architecture graphs: sampling rules, validation, canonical hashing and JSON round-trip."""

from __future__ import annotations

import random

import networkx as nx
import optuna
import pytest

from iasf_search import graph as arch
from iasf_search.graph import INPUT, OUTPUT, GraphError
from iasf_search.plugin_manager import load_components

MAX_IN, LOOKBACK = 3, 3


@pytest.fixture
def wide_space(make_space):
    """Up to 6 nodes, up to 3 inputs each, from the 3 previous nodes; every op and fusion."""
    return make_space({
        "manifold.nodes": {"low": 1, "high": 6},
        "manifold.max_in_degree": MAX_IN,
        "manifold.lookback": LOOKBACK,
        "manifold.width": [8, 16],
        "manifold.ops": {"attention": {"heads": [1, 2], "window": [3], "topk": [4]}, "conv": None, "mlp": None,
                         "pool": None, "identity": None},
        "manifold.fusions": ["sum", "concat", "gated", "beta_softmax"],
    })


def _position(node: str) -> int:
    """0 for the input, i + 1 for node n<i>."""
    return 0 if node == INPUT else int(node[1:]) + 1


def sample_many(space, n: int, seed: int = 0) -> list[nx.DiGraph]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    components = load_components(autoload=False)
    return [arch.sample_graph(study.ask(), space, components) for _ in range(n)]


def test_300_random_graphs_follow_the_rules(wide_space):
    graphs = sample_many(wide_space, 300)
    node_counts, in_degrees, fused_outputs = set(), set(), 0
    for g in graphs:
        arch.validate(g)
        assert nx.is_directed_acyclic_graph(g)
        hidden = [n for n in g if g.nodes[n]["role"] == "node"]
        assert set(g) == {INPUT, OUTPUT, *hidden}
        assert g.in_degree(INPUT) == 0 and g.out_degree(OUTPUT) == 0
        assert g.graph["width"] in (8, 16)
        node_counts.add(len(hidden))
        reachable = nx.descendants(g, INPUT)
        reaching = nx.ancestors(g, OUTPUT)
        for n in hidden:
            assert n in reachable, n
            assert n in reaching, n
            sources = arch.inputs_of(g, n)
            in_degrees.add(len(sources))
            assert 1 <= len(sources) <= MAX_IN
            i = int(n[1:])
            for s in sources:
                # only the last `lookback` earlier nodes (the input counting as node -1)
                assert _position(s) <= i, (n, s)
                assert i + 1 - _position(s) <= LOOKBACK, (n, s)
            assert sorted(g.edges[s, n]["slot"] for s in sources) == list(range(len(sources)))
            assert g.nodes[n]["op"] in wide_space.ops
            if len(sources) > 1:
                assert g.nodes[n]["fusion"] in wide_space.fusions
            else:
                assert "fusion" not in g.nodes[n]
        # the output reads exactly the nodes nobody else reads
        assert set(g.predecessors(OUTPUT)) == {n for n in hidden if not set(g.successors(n)) - {OUTPUT}}
        if g.in_degree(OUTPUT) > 1:
            fused_outputs += 1
            assert g.nodes[OUTPUT]["fusion"] in wide_space.fusions
        # JSON round-trip keeps everything that defines the architecture
        back = arch.from_json(arch.to_json(g))
        assert arch.canonical_hash(back) == arch.canonical_hash(g)
        assert arch.same_architecture(back, g)
        assert back.graph["width"] == g.graph["width"]
        assert dict(back.nodes(data=True)) == dict(g.nodes(data=True))
        assert {e: d["slot"] for e, d in back.edges.items()} == {e: d["slot"] for e, d in g.edges.items()}
    # the sample covers the space rather than one corner of it
    assert node_counts == {1, 2, 3, 4, 5, 6}
    assert in_degrees == {1, 2, 3}
    assert fused_outputs > 0


def test_conditional_op_parameters_are_sampled_only_when_used(wide_space):
    for g in sample_many(wide_space, 60, seed=1):
        for n in arch.hidden_nodes(g):
            attrs = g.nodes[n]
            if attrs["op"] != "attention":
                continue
            keys = set(attrs["config"])
            pattern = attrs["config"]["pattern"]
            expected = {"heads", "pattern"} | {"local": {"window"}, "dilated": {"window", "dilation"},
                                               "topk": {"topk"}, "full": set()}[pattern]
            assert keys == expected


def test_lookback_none_and_single_input(make_space):
    space = make_space({"manifold.nodes": 5, "manifold.max_in_degree": 1, "manifold.lookback": None})
    firsts = set()
    for g in sample_many(space, 80):
        assert len(arch.hidden_nodes(g)) == 5
        assert all(g.in_degree(n) == 1 for n in arch.hidden_nodes(g))
        firsts.add(arch.inputs_of(g, "n4")[0])
    assert INPUT in firsts  # without a lookback, the first node may read the input directly


# -- hashing ----------------------------------------------------------------------------------------


def _diamond(make_graph, width=16, n2_inputs=("n0", "n1"), expansion=2):
    return make_graph([
        {"op": "mlp", "config": {"expansion": expansion}},
        {"op": "conv", "config": {"kernel": 3, "dilation": 1}, "inputs": ["n0"]},
        {"op": "attention", "config": {"heads": 2, "pattern": "full"}, "inputs": list(n2_inputs), "fusion": "gated"},
        {"op": "pool", "config": {"kind": "avg", "kernel": 3}, "inputs": ["input"]},
    ], width=width, output=["n2", "n3"])


def _relabel_hidden(g: nx.DiGraph, seed: int) -> nx.DiGraph:
    """A copy with the hidden node names permuted (never the identity); input and output keep their names."""
    hidden = sorted(n for n in g if n not in (INPUT, OUTPUT))
    rng = random.Random(seed)
    shuffled = hidden[:]
    while shuffled == hidden:
        rng.shuffle(shuffled)
    return nx.relabel_nodes(g, dict(zip(hidden, shuffled, strict=True)), copy=True)


def test_isomorphic_relabelled_graph_hashes_equal(make_graph):
    g = _diamond(make_graph)
    arch.validate(g)
    h = _relabel_hidden(g, seed=3)
    arch.validate(h)
    assert nx.is_isomorphic(g, h) and set(h) == set(g)
    assert any(g.nodes[n]["op"] != h.nodes[n]["op"] for n in g)  # the names really moved
    assert arch.canonical_hash(h) == arch.canonical_hash(g)
    assert arch.same_architecture(g, h)


def test_relabelled_sampled_graphs_hash_equal(wide_space):
    for k, g in enumerate(sample_many(wide_space, 40, seed=7)):
        if len(arch.hidden_nodes(g)) < 2:
            continue
        h = _relabel_hidden(g, seed=k)
        assert arch.canonical_hash(h) == arch.canonical_hash(g)
        assert arch.same_architecture(g, h)


def test_hash_changes_with_an_op_config_value(make_graph):
    g, h = _diamond(make_graph), _diamond(make_graph, expansion=4)
    assert arch.canonical_hash(g) != arch.canonical_hash(h)
    assert not arch.same_architecture(g, h)


def test_hash_changes_with_the_width(make_graph):
    g, h = _diamond(make_graph), _diamond(make_graph, width=32)
    assert arch.canonical_hash(g) != arch.canonical_hash(h)
    assert not arch.same_architecture(g, h)


def test_hash_changes_with_one_edge(make_graph):
    g, h = _diamond(make_graph), _diamond(make_graph, n2_inputs=("input", "n1"))
    arch.validate(h)
    assert not nx.is_isomorphic(g, h)
    assert arch.canonical_hash(g) != arch.canonical_hash(h)
    assert not arch.same_architecture(g, h)


def test_hash_changes_with_the_stem_config(make_graph):
    g = make_graph([{"op": "mlp", "config": {"expansion": 2}}])
    h = make_graph([{"op": "mlp", "config": {"expansion": 2}}], stem={"patch": 1, "overlap": False, "position": "learned"})
    assert arch.canonical_hash(g) != arch.canonical_hash(h)


def test_hash_is_a_stable_string(make_graph):
    g = _diamond(make_graph)
    assert arch.canonical_hash(g) == arch.canonical_hash(_diamond(make_graph))
    assert isinstance(arch.canonical_hash(g), str) and len(arch.canonical_hash(g)) == 32


# -- validation -------------------------------------------------------------------------------------


def test_valid_hand_built_graph(make_graph):
    g = _diamond(make_graph)
    arch.validate(g)
    assert arch.hidden_nodes(g) == ["n0", "n1", "n2", "n3"]
    assert arch.inputs_of(g, "n2") == ["n0", "n1"]


def test_cycle_is_rejected(make_graph):
    g = make_graph([{"op": "mlp", "config": {"expansion": 2}}, {"op": "mlp", "config": {"expansion": 2}}])
    g.add_edge("n1", "n0", slot=1)
    g.nodes["n0"]["fusion"] = "sum"
    with pytest.raises(GraphError, match="not acyclic"):
        arch.validate(g)


def test_node_not_reaching_output_is_rejected(make_graph):
    g = make_graph([{"op": "mlp", "config": {"expansion": 2}}, {"op": "conv", "config": {"kernel": 3, "dilation": 1}}],
                   output=["n0"])
    g.remove_edge("n0", "n1")
    g.add_edge("input", "n1", slot=0)
    with pytest.raises(GraphError, match="n1 does not reach the output"):
        arch.validate(g)


def test_node_not_reachable_from_input_is_rejected(make_graph):
    g = make_graph([{"op": "mlp", "config": {"expansion": 2}}])
    g.add_node("n1", role="node", op="mlp", config={"expansion": 2})
    g.add_edge("n1", "output", slot=1)
    g.nodes["output"]["fusion"] = "sum"
    with pytest.raises(GraphError, match="n1 is not reachable from the input"):
        arch.validate(g)


def test_multi_input_node_without_fusion_is_rejected(make_graph):
    g = _diamond(make_graph)
    del g.nodes["n2"]["fusion"]
    with pytest.raises(GraphError, match="n2 reads 2 inputs but has no fusion"):
        arch.validate(g)


def test_bad_slots_are_rejected(make_graph):
    g = _diamond(make_graph)
    g.edges["n1", "n2"]["slot"] = 5
    with pytest.raises(GraphError, match="input slots"):
        arch.validate(g)


def test_from_json_validates(make_graph):
    g = _diamond(make_graph)
    del g.nodes["n2"]["fusion"]
    with pytest.raises(GraphError):
        arch.from_json(arch.to_json(g))


def test_summary_line(make_graph):
    g = _diamond(make_graph)
    assert arch.summary(g) == "w16 mlp > conv > attention<0,1|gated > pool<in out<2,3"


def test_hash_sees_which_input_is_first(make_graph):
    """cross_attention queries with its first input: swapping the slots is another architecture."""
    def two_branches(order):
        return make_graph([{"op": "mlp", "config": {"expansion": 2}},
                           {"op": "conv", "config": {"kernel": 3, "dilation": 1}, "inputs": ["input"]},
                           {"op": "identity", "config": {}, "inputs": list(order), "fusion": "cross_attention"}])
    a, b = two_branches(("n0", "n1")), two_branches(("n1", "n0"))
    assert arch.canonical_hash(a) != arch.canonical_hash(b)
    assert not arch.same_architecture(a, b)
    assert arch.canonical_hash(a) == arch.canonical_hash(two_branches(("n0", "n1")))


# -- readouts and norms -----------------------------------------------------------------------------


def _with(g: nx.DiGraph, node: str, kind: str, name: str, config: dict | None = None) -> nx.DiGraph:
    g.nodes[node].update({kind: name, f"{kind}_config": dict(config or {})})
    return g


def test_the_default_readout_and_norm_leave_the_hash_and_the_labels_as_they_were(make_graph):
    """Old studies' hashes and reuse keys hold: ``mean`` and ``layer`` (or no attribute) hash as before."""
    g = _diamond(make_graph)
    assert arch.labelled(g).nodes[OUTPUT]["label"] == (
        '{"config": null, "fusion": "sum", "fusion_config": {}, "op": null, "role": "output"}')  # the label before readouts
    named = _with(_with(_diamond(make_graph), OUTPUT, "readout", "mean"), "n0", "norm", "layer")
    assert arch.labelled(named).nodes[OUTPUT]["label"] == arch.labelled(g).nodes[OUTPUT]["label"]
    assert arch.canonical_hash(named) == arch.canonical_hash(g) and arch.same_architecture(named, g)


def test_hash_distinguishes_readouts_and_their_parameters(make_graph):
    hashes = {arch.canonical_hash(_diamond(make_graph))}
    for name, config in (("max", {}), ("mean_max", {}), ("flatten", {}), ("class_token", {"heads": 1}), ("class_token", {"heads": 2})):
        hashes.add(arch.canonical_hash(_with(_diamond(make_graph), OUTPUT, "readout", name, config)))
    assert len(hashes) == 6
    g = _with(_diamond(make_graph), OUTPUT, "readout", "max")
    assert not arch.same_architecture(g, _diamond(make_graph))
    assert arch.canonical_hash(_relabel_hidden(g, seed=3)) == arch.canonical_hash(g)


def test_hash_distinguishes_norms_and_the_node_they_are_on(make_graph):
    plain = arch.canonical_hash(_diamond(make_graph))
    on_n0 = arch.canonical_hash(_with(_diamond(make_graph), "n0", "norm", "batch"))
    on_n1 = arch.canonical_hash(_with(_diamond(make_graph), "n1", "norm", "batch"))
    assert len({plain, on_n0, on_n1}) == 3


def test_readout_and_norms_survive_json(make_graph):
    g = _with(_with(_diamond(make_graph), OUTPUT, "readout", "class_token", {"heads": 2}), "n1", "norm", "batch")
    back = arch.from_json(arch.to_json(g))
    assert back.nodes[OUTPUT]["readout"] == "class_token" and back.nodes[OUTPUT]["readout_config"] == {"heads": 2}
    assert back.nodes["n1"]["norm"] == "batch" and "norm" not in back.nodes["n0"]
    assert arch.canonical_hash(back) == arch.canonical_hash(g)


def test_summary_line_names_a_norm_and_a_readout_other_than_the_defaults(make_graph):
    g = _with(_with(_diamond(make_graph), OUTPUT, "readout", "class_token", {"heads": 2}), "n1", "norm", "batch")
    assert arch.summary(g) == "w16 mlp > conv[batch] > attention<0,1|gated > pool<in out<2,3 head=class_token"
    labels = {"class_token": lambda c: f"cls/h{c['heads']}", "batch": lambda c: "bn"}
    assert arch.summary(g, describe_norm=lambda n, c: labels[n](c), describe_readout=lambda r, c: labels[r](c)) == (
        "w16 mlp > conv[bn] > attention<0,1|gated > pool<in out<2,3 head=cls/h2")
    assert arch.summary(_with(_diamond(make_graph), OUTPUT, "readout", "mean")) == arch.summary(_diamond(make_graph))


@pytest.mark.parametrize("text", ["not json", "[]", "{}", '{"nodes": 3}', "7", '{"nodes": [], "edges": [1]}'])
def test_from_json_of_anything_but_an_architecture_is_a_graph_error(text):
    with pytest.raises(GraphError, match="not JSON|not an architecture graph|must have|input"):
        arch.from_json(text)
