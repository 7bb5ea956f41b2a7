"""Model building: every registered op and fusion keeps its shape contract inside a built model; broken plugins;
every architecture a shipped space can sample builds. (What one built-in op, fusion or stem does is tested in
tests/plugins/test_ops.py, test_fusions.py and test_stems.py.)"""

from __future__ import annotations

import itertools
from pathlib import Path

import optuna
import pytest
import torch

import iasf_search
from iasf_search import graph as arch
from iasf_search.build import OpContractError, build_model, count_parameters
from iasf_search.components import BuildContext, TokenLayout
from iasf_search.params import Range, parse_params
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.ops import PATTERNS

COMPONENTS = load_components(autoload=False)  # collection-time: parametrise over everything registered
WIDTH, CLASSES = 8, 10

LAYOUTS = {
    "image-p1": ("image", (1, 8, 8), {"patch": 1, "overlap": True, "position": "learned"}, (8, 8)),
    "image-p2": ("image", (1, 8, 8), {"patch": 2, "overlap": False, "position": "sinusoidal"}, (4, 4)),
    "sequence-p1": ("sequence", (40, 1), {"patch": 1, "overlap": True, "position": "learned"}, (40,)),
}
"""id -> (modality, sample shape, stem config, token grid)."""

# Explicit values where a default would make a case trivial (e.g. top-k >= T) or not divide the width.
OVERRIDES = {"attention": {"heads": 2, "window": 3, "dilation": 2, "topk": 4}}


def _first(r: Range):
    return r.fixed if r.is_fixed else r.choices[0] if r.choices is not None else r.low


def op_cases() -> list:
    """One case per registered op and per value of each of its string choice parameters (pattern, kind)."""
    cases = []
    for name in COMPONENTS.ops.names():
        op = COMPONENTS.ops.get(name)
        ranges = parse_params(None, dict(op.params), "defaults", name)
        varied = {p: r.values() for p, r in ranges.items() if op.params[p].kind is str and r.values() and len(r.values()) > 1}
        for combo in itertools.product(*varied.values()) or [()]:
            chosen = {**OVERRIDES.get(name, {}), **dict(zip(varied, combo, strict=True))}
            config = op.sample(ranges, lambda p, chosen=chosen, ranges=ranges: chosen.get(p, _first(ranges[p])))
            label = "-".join([name, *map(str, combo)])
            cases.append(pytest.param(name, config, id=label))
    return cases


OP_CASES = op_cases()


def single_op_graph(make_graph, op: str, config: dict, layout_id: str, width: int = WIDTH):
    modality, _, stem, _ = LAYOUTS[layout_id]
    return make_graph([{"op": op, "config": config}], width=width, modality=modality, stem=stem)


def test_cases_cover_every_op_and_pattern():
    ids = {c.id for c in OP_CASES}
    assert {c.values[0] for c in OP_CASES} == set(COMPONENTS.ops.names())
    assert {f"attention-{p}" for p in PATTERNS} <= ids
    assert set(PATTERNS) == {"full", "local", "dilated", "topk"}


@pytest.mark.parametrize("layout_id", LAYOUTS)
@pytest.mark.parametrize(("op_name", "config"), OP_CASES)
def test_op_module_maps_btd_to_btd(op_name, config, layout_id):
    _, _, _, grid = LAYOUTS[layout_id]
    layout = TokenLayout(grid)
    module = COMPONENTS.ops.get(op_name).build(config, BuildContext(width=WIDTH, layout=layout))
    for batch in (1, 3):
        x = torch.randn(batch, layout.length, WIDTH)
        y = module(x)
        assert y.shape == (batch, layout.length, WIDTH)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("layout_id", LAYOUTS)
@pytest.mark.parametrize(("op_name", "config"), OP_CASES)
def test_model_output_shape(make_graph, op_name, config, layout_id):
    _, sample_shape, _, grid = LAYOUTS[layout_id]
    model = build_model(single_op_graph(make_graph, op_name, config, layout_id), COMPONENTS, sample_shape, CLASSES)
    assert model.layout.shape == grid
    model.eval()
    for batch in (1, 3):
        out = model(torch.randn(batch, *sample_shape))
        assert out.shape == (batch, CLASSES)
        assert torch.isfinite(out).all()
    # each sample's logits depend only on that sample
    x = torch.randn(3, *sample_shape)
    torch.testing.assert_close(model(x)[1:2], model(x[1:2]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout_id", LAYOUTS)
@pytest.mark.parametrize(("op_name", "config"), OP_CASES)
def test_gradients_reach_every_parameter(make_graph, op_name, config, layout_id):
    _, sample_shape, _, _ = LAYOUTS[layout_id]
    torch.manual_seed(0)
    model = build_model(single_op_graph(make_graph, op_name, config, layout_id), COMPONENTS, sample_shape, CLASSES)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(3, *sample_shape)), torch.tensor([0, 1, 2]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    op_grads = [p.grad for n, p in model.named_parameters() if n.startswith("blocks.n0.op.")]
    assert all(g.abs().sum() > 0 for g in op_grads), "an op parameter gets an all-zero gradient"


@pytest.mark.parametrize("fusion_name", COMPONENTS.fusions.names())
@pytest.mark.parametrize("n_inputs", [2, 3])
def test_fusion_maps_inputs_to_btd(fusion_name, n_inputs):
    layout = TokenLayout((4, 4))
    fusion = COMPONENTS.fusions.get(fusion_name)
    config = {k: _first(r) for k, r in parse_params(None, dict(fusion.params), "defaults", fusion_name).items()}
    module = fusion.build(config, n_inputs, BuildContext(width=WIDTH, layout=layout))
    inputs = [torch.randn(3, layout.length, WIDTH, requires_grad=True) for _ in range(n_inputs)]
    out = module(inputs)
    assert out.shape == (3, layout.length, WIDTH)
    out.sum().backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in inputs)


@pytest.mark.parametrize("fusion_name", COMPONENTS.fusions.names())
def test_gradients_reach_fusion_parameters_in_a_graph(make_graph, fusion_name):
    torch.manual_seed(0)
    graph = make_graph([
        {"op": "mlp", "config": {"expansion": 2}},
        {"op": "conv", "config": {"kernel": 3, "dilation": 1}, "inputs": ["input"]},
        {"op": "attention", "config": {"heads": 2, "pattern": "local", "window": 3}, "inputs": ["n0", "n1", "input"],
         "fusion": fusion_name},
        {"op": "identity", "config": {}, "inputs": ["n1"]},
    ], width=WIDTH, output=["n2", "n3"], output_fusion=fusion_name)
    model = build_model(graph, COMPONENTS, (1, 8, 8), CLASSES)
    assert model.order == ["n0", "n1", "n2", "n3"]
    assert model.sources["n2"] == ["n0", "n1", "input"] and model.sources["output"] == ["n2", "n3"]
    model(torch.randn(3, 1, 8, 8)).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


# -- broken plugins ---------------------------------------------------------------------------------


def test_broken_op_raises_op_contract_error(make_graph):
    comps = load_components([("plugin_samples.broken_op", "--plugin")], autoload=False)
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}, {"op": "broken_shape", "config": {}}], width=WIDTH)
    with pytest.raises(OpContractError) as info:
        build_model(graph, comps, (1, 8, 8), CLASSES)
    assert "'broken_shape'" in str(info.value) and "n1" in str(info.value)
    assert "(2, 16, 7)" in str(info.value)


def test_broken_fusion_raises_op_contract_error(make_graph):
    """OpContractError's contract: 'A node op or fusion returned a tensor of the wrong shape'."""
    comps = load_components([("plugin_samples.broken_fusion", "--plugin")], autoload=False)
    graph = make_graph([
        {"op": "mlp", "config": {"expansion": 2}},
        {"op": "mlp", "config": {"expansion": 2}, "inputs": ["input", "n0"], "fusion": "raw_concat"},
    ], width=WIDTH)
    with pytest.raises(Exception) as info:  # noqa: B017 - the type is what this test checks
        build_model(graph, comps, (1, 8, 8), CLASSES)
    assert isinstance(info.value, OpContractError), (
        f"SOURCE BUG (build.py NodeBlock.forward / ArchNet.features): a fusion returning the wrong shape must raise "
        f"OpContractError naming the fusion; got {type(info.value).__name__}: {info.value}")
    assert "raw_concat" in str(info.value)


# -- everything a shipped space can sample builds -----------------------------------------------------

SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"
SAMPLE_SHAPES = {"digits": (1, 8, 8), "mnist1d": (40, 1)}


@pytest.mark.parametrize("path", sorted(SPACES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_architectures_sampled_from_a_shipped_space_build(path):
    session = iasf_search.open_session(path)
    space, components = session.space, session.components
    if space.dataset in SAMPLE_SHAPES:
        sample_shape = SAMPLE_SHAPES[space.dataset]
    else:  # a dataset added later: ask it
        sample_shape = components.datasets.get(space.dataset).load(space.dataset_options, space.split).sample_shape
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    ops_seen = set()
    for _ in range(25):
        graph = arch.sample_graph(study.ask(), space, components)
        model = build_model(graph, components, sample_shape, 10)
        assert model(torch.zeros(1, *sample_shape)).shape == (1, 10)
        ops_seen |= {graph.nodes[n]["op"] for n in arch.hidden_nodes(graph)}
    assert ops_seen == set(space.ops)


# -- readouts and norms: old graphs build the model they always did -----------------------------------

OLD_GRAPH_JSON = (
    '{"directed": true, "edges": [{"slot": 0, "source": "input", "target": "n0"}, {"slot": 0, "source": "input", "target": "n1"}, '
    '{"slot": 0, "source": "n0", "target": "n2"}, {"slot": 1, "source": "n1", "target": "n2"}, {"slot": 0, "source": "n2", '
    '"target": "output"}], "graph": {"width": 16}, "multigraph": false, "nodes": [{"config": {"overlap": false, "patch": 2, '
    '"position": "learned"}, "id": "input", "op": "image", "role": "input"}, {"config": {"expansion": 2}, "id": "n0", "op": "mlp", '
    '"role": "node"}, {"config": {"dilation": 1, "kernel": 3}, "id": "n1", "op": "conv", "role": "node"}, {"config": {"heads": 2, '
    '"pattern": "full"}, "fusion": "concat", "fusion_config": {}, "id": "n2", "op": "attention", "role": "node"}, {"id": "output", '
    '"role": "output"}]}'
)
"""An arch.json written before readouts and norms were choices (no ``readout``, no ``norm``)."""
OLD_PARAMETERS = 3754
"""Its model's parameter count, as the code of that time built it."""


def _seeded(graph, components=COMPONENTS):
    torch.manual_seed(0)
    return build_model(graph, components, (1, 8, 8), CLASSES)


def test_an_old_graph_builds_the_model_it_always_did():
    """Same parameters (count, names, initial values from the same seed) and the same output as the old head,
    ``Linear(LayerNorm(tokens).mean(over tokens))``; naming the defaults (mean, layer) changes nothing."""
    old = arch.from_json(OLD_GRAPH_JSON)
    model = _seeded(old)
    assert count_parameters(model) == OLD_PARAMETERS and model.head.in_features == 16
    x = torch.linspace(-1, 1, 3 * 64).reshape(3, 1, 8, 8)
    forward = model.run(x)
    torch.testing.assert_close(forward.logits, model.head(model.norm(forward.values[arch.OUTPUT]).mean(dim=1)), rtol=0, atol=0)
    named = arch.from_json(OLD_GRAPH_JSON)
    named.nodes[arch.OUTPUT].update(readout="mean", readout_config={})
    for n in ("n0", "n1", "n2"):
        named.nodes[n].update(norm="layer", norm_config={})
    again = _seeded(named)
    assert again.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    assert torch.equal(again(x), model(x))
    assert arch.canonical_hash(named) == arch.canonical_hash(old) and arch.same_architecture(named, old)


def test_a_readout_that_returns_other_features_than_it_declares_is_named(make_graph):
    from iasf_search.components import Readout

    class Twice(Readout):
        name = "twice"

        def build(self, config, ctx):
            return torch.nn.Flatten(1)  # (B, T * D), declared D

    comps = load_components(autoload=False)
    comps.readouts.register(Twice())
    graph = make_graph([{"op": "mlp", "config": {"expansion": 1}}], width=WIDTH)
    graph.nodes[arch.OUTPUT].update(readout="twice", readout_config={})
    with pytest.raises(OpContractError, match=r"readout 'twice' returned shape \(2, 128\), expected \(2, 8\)"):
        build_model(graph, comps, (1, 8, 8), CLASSES)


def test_an_unknown_readout_or_norm_is_named(make_graph):
    from iasf_search.errors import BadInput

    graph = make_graph([{"op": "mlp", "config": {"expansion": 1}}], width=WIDTH)
    graph.nodes[arch.OUTPUT]["readout"] = "maxx"
    with pytest.raises(BadInput, match=r"unknown readout 'maxx' \(did you mean 'max'\?\)"):
        build_model(graph, COMPONENTS, (1, 8, 8), CLASSES)
    graph.nodes[arch.OUTPUT]["readout"] = "max"
    graph.nodes["n0"]["norm"] = "bach"
    with pytest.raises(BadInput, match=r"unknown norm 'bach' \(did you mean 'batch'\?\)"):
        build_model(graph, COMPONENTS, (1, 8, 8), CLASSES)


# -- padded inputs: series of unequal lengths, NaN after their end, masked (build.py's docstring) ----------------

PADDED_NODES = [
    {"op": "attention", "config": {"heads": 2, "pattern": "full"}, "norm": "batch"},
    {"op": "conv", "config": {"kernel": 3, "dilation": 1}},
    {"op": "attention", "config": {"heads": 2, "pattern": "local", "window": 3}, "inputs": ["n0", "n1"], "fusion": "cross_attention"},
    {"op": "attention", "config": {"heads": 2, "pattern": "topk", "topk": 3}},
    {"op": "pool", "config": {"kind": "avg", "kernel": 3}, "inputs": ["n2", "n3"], "fusion": "concat"},
]
"""Every built-in kind of token mixing that takes the mask (attention's patterns, cross-attention, batch norm) or sees
zeros (conv, pool), with a length-independent stem (sinusoidal positions), so one set of weights serves every length."""


def padded_graph(make_graph, readout: str = "mean"):
    graph = make_graph(PADDED_NODES, width=8, modality="sequence", stem={"patch": 2, "overlap": True, "position": "sinusoidal"},
                       output=["n3", "n4"])
    for i, spec in enumerate(PADDED_NODES):
        if "norm" in spec:
            graph.nodes[f"n{i}"]["norm"] = spec["norm"]
    graph.nodes[arch.OUTPUT]["readout"] = readout
    if readout == "class_token":
        graph.nodes[arch.OUTPUT]["readout_config"] = {"heads": 2}
    return graph


@pytest.mark.parametrize("readout", ["mean", "max", "mean_max", "class_token"])
def test_padding_changes_nothing_a_padded_model_computes(make_graph, readout):
    """A padded model's logits for a series are those of the same weights built for the series' own length: neither how
    much padding follows it nor what the other series of the batch are changes them."""
    graph = padded_graph(make_graph, readout)
    torch.manual_seed(0)
    own = {length: build_model(graph, COMPONENTS, (length, 3), CLASSES).eval() for length in (12, 6)}
    own[6].load_state_dict(own[12].state_dict())
    padded = {length: build_model(graph, COMPONENTS, (length, 3), CLASSES, padded=True).eval() for length in (12, 20, 31)}
    for model in padded.values():
        model.load_state_dict(own[12].state_dict())
    x = torch.randn(4, 12, 3)
    with torch.no_grad():
        expected_12, expected_6 = own[12](x), own[6](x[:, :6])
        for length, model in padded.items():
            batch = torch.full((8, length, 3), float("nan"))
            batch[:4, :12], batch[4:, :6] = x, x[:, :6]  # 4 series of 12 steps, the same 4 cut to 6 steps
            out = model(batch)
            torch.testing.assert_close(out[:4], expected_12, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out[4:], expected_6, atol=1e-5, rtol=1e-5)


def test_a_padded_model_trains_with_finite_gradients(make_graph):
    """Padded queries of a local pattern see no real key: they keep their pattern's keys, so no row of the softmax is
    empty and no NaN reaches a gradient."""
    torch.manual_seed(0)
    model = build_model(padded_graph(make_graph, "mean_max"), COMPONENTS, (16, 3), CLASSES, padded=True)
    batch = torch.randn(6, 16, 3)
    batch[1:, 3:] = float("nan")  # five series of 3 steps: most tokens padded
    loss = torch.nn.functional.cross_entropy(model(batch), torch.arange(6) % CLASSES)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_an_unpadded_model_takes_no_mask_and_a_stem_that_cannot_mask_is_refused(make_graph):
    model = build_model(padded_graph(make_graph), COMPONENTS, (12, 3), CLASSES)
    x = torch.randn(2, 12, 3)
    assert model.padding_mask(x) == (x, None) and model.run(x).mask is None
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}], width=8, modality="image")
    with pytest.raises(iasf_search.BadInput, match="stem 'image' cannot mask padding.*task.options.lengths"):
        build_model(graph, COMPONENTS, (1, 8, 8), CLASSES, padded=True)


def test_a_third_party_op_without_a_mask_sees_padded_tokens_as_zeros(make_graph):
    """An op whose forward takes no ``mask`` is called as before; the tokens it reads are zero wherever they are padding."""
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(x.detach().clone())
            return x

    torch.manual_seed(0)
    model = build_model(make_graph([{"op": "mlp", "config": {"expansion": 2}}], width=8, modality="sequence",
                                   stem={"patch": 2, "overlap": False, "position": "learned"}), COMPONENTS, (8, 2), CLASSES, padded=True)
    model.blocks["n0"].op = Spy()
    model.blocks["n0"].op_takes_mask = False
    x = torch.randn(2, 8, 2)
    x[1, 3:] = float("nan")  # steps 0-2 real: tokens 0 and 1 (patch 2) real, tokens 2 and 3 padding
    with torch.no_grad():
        forward = model.run(x)
    assert forward.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert seen[0][1, 2:].abs().sum() == 0 and seen[0][1, :2].abs().sum() > 0 and (seen[0][0].abs().sum(-1) > 0).all()
    assert forward.values["n0"][1, 2:].abs().sum() == 0
