"""Model building: every registered op, fusion and stem keeps its shape contract; masks; broken plugins."""

from __future__ import annotations

import itertools
from pathlib import Path

import optuna
import pytest
import torch

import iasf_search
from iasf_search import graph as arch
from iasf_search.build import ArchNet, OpContractError, build_model, count_parameters
from iasf_search.components import BuildContext, TokenLayout
from iasf_search.params import Range, parse_params
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.ops import PATTERNS, connectivity_mask

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


def test_topk_attention_query_and_key_get_gradients(make_graph):
    """The top-k mask is computed without gradients, but q and k still learn through the attention weights."""
    torch.manual_seed(0)
    config = {"heads": 2, "pattern": "topk", "topk": 4}
    model = build_model(single_op_graph(make_graph, "attention", config, "image-p2"), COMPONENTS, (1, 8, 8), CLASSES)
    model(torch.randn(3, 1, 8, 8)).sum().backward()
    qkv = model.blocks["n0"].op.qkv.weight.grad  # rows: q (0:D), k (D:2D), v (2D:3D)
    for part in range(3):
        assert qkv[part * WIDTH : (part + 1) * WIDTH].abs().sum() > 0, part


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


def test_sum_and_beta_softmax_values():
    ctx = BuildContext(width=WIDTH, layout=TokenLayout((4,)))
    a, b = torch.randn(2, 4, WIDTH), torch.randn(2, 4, WIDTH)
    torch.testing.assert_close(COMPONENTS.fusions.get("sum").build({}, 2, ctx)([a, b]), a + b)
    # beta starts at zero: softmax gives equal weights, the mean of the inputs
    torch.testing.assert_close(COMPONENTS.fusions.get("beta_softmax").build({}, 2, ctx)([a, b]), (a + b) / 2)


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


# -- stems ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "none"])
@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize(("modality", "sample_shape", "patch", "grid"), [
    ("image", (1, 8, 8), 1, (8, 8)), ("image", (1, 8, 8), 2, (4, 4)), ("image", (3, 8, 4), 4, (2, 1)),
    ("sequence", (40, 1), 1, (40,)), ("sequence", (40, 1), 2, (20,)), ("sequence", (12, 3), 4, (3,)),
])
def test_stem_shapes(modality, sample_shape, patch, grid, overlap, position):
    stem = COMPONENTS.stems.get(modality)
    config = {"patch": patch, "overlap": overlap, "position": position}
    assert stem.layout(config, sample_shape).shape == grid
    module = stem.build(config, sample_shape, 12)
    tokens = module(torch.randn(2, *sample_shape))
    assert tokens.shape == (2, TokenLayout(grid).length, 12)


@pytest.mark.parametrize(("modality", "sample_shape"), [("image", (1, 8, 8)), ("sequence", (40, 1))])
def test_stem_rejects_a_patch_that_does_not_divide_the_grid(modality, sample_shape):
    with pytest.raises(ValueError, match="does not divide"):
        COMPONENTS.stems.get(modality).layout({"patch": 3, "overlap": False, "position": "none"}, sample_shape)


def test_stem_rejects_wrong_sample_rank():
    with pytest.raises(ValueError, match="axes per sample"):
        COMPONENTS.stems.get("image").layout({"patch": 1, "overlap": False, "position": "none"}, (8, 8))


# -- connectivity masks -----------------------------------------------------------------------------


def _index(grid_w: int, row: int, col: int) -> int:
    return row * grid_w + col


def test_local_window_3_is_the_3x3_neighbourhood():
    mask = connectivity_mask(TokenLayout((4, 4)), "local", window=3, dilation=1)
    assert mask.shape == (16, 16) and mask.dtype == torch.bool
    interior = _index(4, 1, 2)
    assert int(mask[interior].sum()) == 9
    expected = {_index(4, r, c) for r in (0, 1, 2) for c in (1, 2, 3)}
    assert set(mask[interior].nonzero().flatten().tolist()) == expected
    assert int(mask[_index(4, 0, 0)].sum()) == 4
    assert int(mask[_index(4, 3, 3)].sum()) == 4
    assert int(mask[_index(4, 0, 2)].sum()) == 6  # an edge token
    assert torch.equal(mask, mask.T) and bool(mask.diagonal().all())


def test_local_window_on_a_sequence():
    mask = connectivity_mask(TokenLayout((10,)), "local", window=5, dilation=1)
    assert mask[5].nonzero().flatten().tolist() == [3, 4, 5, 6, 7]
    assert mask[0].nonzero().flatten().tolist() == [0, 1, 2]


def test_dilated_window_3_dilation_2():
    mask = connectivity_mask(TokenLayout((9,)), "dilated", window=3, dilation=2)
    assert mask[4].nonzero().flatten().tolist() == [2, 4, 6]  # offset 2 yes, offset 1 no
    assert not mask[4, 3] and not mask[4, 5]
    assert mask[4, 2] and mask[4, 6]
    grid = connectivity_mask(TokenLayout((5, 5)), "dilated", window=3, dilation=2)
    centre = _index(5, 2, 2)
    assert set(grid[centre].nonzero().flatten().tolist()) == {_index(5, r, c) for r in (0, 2, 4) for c in (0, 2, 4)}
    assert not grid[centre, _index(5, 2, 3)] and not grid[centre, _index(5, 1, 1)]


@pytest.mark.parametrize("pattern", ["full", "topk"])
def test_full_and_topk_have_no_static_mask(pattern):
    assert connectivity_mask(TokenLayout((4, 4)), pattern, window=3, dilation=2) is None


def test_local_attention_ignores_tokens_outside_the_window():
    """Changing a far-away token must not change a token's output under local attention."""
    torch.manual_seed(0)
    layout = TokenLayout((12,))
    module = COMPONENTS.ops.get("attention").build({"heads": 2, "pattern": "local", "window": 3},
                                                   BuildContext(width=WIDTH, layout=layout))
    x = torch.randn(1, 12, WIDTH)
    x2 = x.clone()
    x2[0, 10] += 5.0
    y, y2 = module(x), module(x2)
    torch.testing.assert_close(y[0, :9], y2[0, :9])
    assert not torch.allclose(y[0, 9:], y2[0, 9:])


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


def test_op_rejecting_its_config_raises_value_error(make_graph):
    graph = make_graph([{"op": "pool", "config": {"kind": "avg", "kernel": 2}}], width=WIDTH)
    with pytest.raises(ValueError, match="odd"):
        build_model(graph, COMPONENTS, (1, 8, 8), CLASSES)
    graph = make_graph([{"op": "attention", "config": {"heads": 3, "pattern": "full"}}], width=WIDTH)
    with pytest.raises(ValueError, match="3 heads do not divide width 8"):
        build_model(graph, COMPONENTS, (1, 8, 8), CLASSES)


def test_identity_is_not_residual(make_graph):
    graph = make_graph([{"op": "identity", "config": {}}], width=WIDTH)
    model = build_model(graph, COMPONENTS, (1, 8, 8), CLASSES)
    assert isinstance(model, ArchNet)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(model.features(x), model.stem(x))  # not x + x


# -- everything a shipped space can sample builds -----------------------------------------------------

SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"
SAMPLE_SHAPES = {"digits": (1, 8, 8), "mnist1d": (40, 1)}


@pytest.mark.parametrize("path", sorted(SPACES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_architectures_sampled_from_a_shipped_space_build(path):
    space = iasf_search.load_space(path)
    if space.dataset in SAMPLE_SHAPES:
        sample_shape = SAMPLE_SHAPES[space.dataset]
    else:  # a dataset added later: ask it
        sample_shape = space.components.datasets.get(space.dataset).load(space.dataset_options, space.split).sample_shape
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    ops_seen = set()
    for _ in range(25):
        graph = arch.sample_graph(study.ask(), space)
        model = build_model(graph, space.components, sample_shape, 10)
        assert model(torch.zeros(1, *sample_shape)).shape == (1, 10)
        ops_seen |= {graph.nodes[n]["op"] for n in arch.hidden_nodes(graph)}
    assert ops_seen == set(space.ops)
