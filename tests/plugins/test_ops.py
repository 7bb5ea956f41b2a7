"""The built-in node operations (plugins/ops.py): attention patterns and their connectivity masks, convolution,
MLP, pooling and identity, each on its own. (Every registered op inside a built model: tests/test_build.py;
the conformance kit on every op: tests/test_testing.py.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from iasf_search.build import ArchNet, build_model
from iasf_search.components import BuildContext, TokenLayout
from iasf_search.params import parse_params
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.ops import PATTERNS, PoolMix, SelfAttention, connectivity_mask, heads_fit_widths

COMPONENTS = load_components(autoload=False)
OPS = COMPONENTS.ops
WIDTH, CLASSES = 8, 10


def single_op_graph(make_graph, op: str, config: dict, width: int = WIDTH):
    """One hidden node on 8x8 digits-like images cut into 2x2 patches (a 4x4 token grid)."""
    return make_graph([{"op": op, "config": config}], width=width, modality="image",
                      stem={"patch": 2, "overlap": False, "position": "sinusoidal"})


def build(op: str, config: dict, grid: tuple[int, ...], width: int = WIDTH) -> nn.Module:
    return OPS.get(op).build(config, BuildContext(width=width, layout=TokenLayout(grid)))


# -- attention ------------------------------------------------------------------------------------------

def test_topk_attention_query_and_key_get_gradients(make_graph):
    """The top-k mask is computed without gradients, but q and k still learn through the attention weights."""
    torch.manual_seed(0)
    config = {"heads": 2, "pattern": "topk", "topk": 4}
    model = build_model(single_op_graph(make_graph, "attention", config), COMPONENTS, (1, 8, 8), CLASSES)
    model(torch.randn(3, 1, 8, 8)).sum().backward()
    qkv = model.blocks["n0"].op.qkv.weight.grad  # rows: q (0:D), k (D:2D), v (2D:3D)
    for part in range(3):
        assert qkv[part * WIDTH : (part + 1) * WIDTH].abs().sum() > 0, part


# -- connectivity masks -------------------------------------------------------------------------------


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


# -- in a built model ----------------------------------------------------------------------------------


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


@pytest.mark.parametrize(("pattern", "keys"), [
    ("full", {"heads", "pattern"}),
    ("local", {"heads", "pattern", "window"}),
    ("dilated", {"heads", "pattern", "window", "dilation"}),
    ("topk", {"heads", "pattern", "topk"}),
])
def test_attention_samples_only_what_its_pattern_uses(pattern, keys):
    asked = []

    def suggest(name):
        asked.append(name)
        return pattern if name == "pattern" else 2

    config = OPS.get("attention").sample({}, suggest)
    assert set(config) == set(asked) == keys
    assert config["pattern"] == pattern


def test_attention_weights_are_what_forward_applies():
    """Rows are probabilities, zero outside the local window, and forward is proj(weights @ v)."""
    torch.manual_seed(0)
    module = build("attention", {"heads": 2, "pattern": "local", "window": 3}, (12,))
    assert isinstance(module, SelfAttention)
    x = torch.randn(2, 12, WIDTH)
    weights = module.attention_weights(x)
    assert weights.shape == (2, 2, 12, 12)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 12))
    outside = ~connectivity_mask(TokenLayout((12,)), "local", window=3, dilation=1)
    assert bool((weights[..., outside] == 0).all())
    _, _, v, _ = module._qkv_mask(x)
    expected = module.proj((weights @ v).transpose(1, 2).reshape(2, 12, WIDTH))
    torch.testing.assert_close(module(x), expected, rtol=1e-4, atol=1e-5)


def test_topk_attention_keeps_k_keys_per_query_and_full_keeps_all():
    torch.manual_seed(0)
    x = torch.randn(3, 16, WIDTH)
    topk = build("attention", {"heads": 2, "pattern": "topk", "topk": 4}, (4, 4)).attention_weights(x)
    assert ((topk > 0).sum(-1) == 4).all()
    full = build("attention", {"heads": 2, "pattern": "full"}, (4, 4)).attention_weights(x)
    assert ((full > 0).sum(-1) == 16).all()
    # top-k of at least T keys is full attention: no mask
    assert build("attention", {"heads": 1, "pattern": "topk", "topk": 16}, (4, 4))._qkv_mask(x)[3] is None


def test_heads_must_divide_every_width():
    ranges = parse_params({"heads": [1, 2, 4]}, dict(OPS.get("attention").params), "manifold.ops.attention", "attention")
    assert heads_fit_widths(ranges, (8, 16)) is None
    assert heads_fit_widths(ranges, None) is None  # widths too many to list: nothing to check
    assert heads_fit_widths(ranges, (8, 6)) == (
        "heads", "4 heads do not divide width 6 (manifold.width); choose heads that divide every width")
    assert OPS.get("attention").check_ranges(ranges, widths=(12,)) is None
    with pytest.raises(ValueError, match="3 heads do not divide width 8"):
        build("attention", {"heads": 3, "pattern": "full"}, (4, 4))


def test_unknown_pattern_is_refused():
    with pytest.raises(ValueError, match="unknown attention pattern 'ring'"):
        connectivity_mask(TokenLayout((4,)), "ring", window=3, dilation=1)
    assert set(PATTERNS) == set(OPS.get("attention").params["pattern"].choices)


# -- convolution, MLP, pooling --------------------------------------------------------------------------


def test_conv_mixes_only_the_kernel_neighbourhood_on_the_grid():
    torch.manual_seed(0)
    module = build("conv", {"kernel": 3, "dilation": 1}, (4, 4))
    x = torch.randn(1, 16, WIDTH)
    x2 = x.clone()
    x2[0, 0] += 3.0  # grid position (0, 0)
    changed = (module(x) - module(x2)).abs().sum(-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == [0, 1, 4, 5]  # (0,0), (0,1), (1,0), (1,1)
    depthwise = module.layer
    assert isinstance(depthwise, nn.Conv2d) and depthwise.groups == WIDTH and depthwise.kernel_size == (3, 3)
    assert isinstance(build("conv", {"kernel": 5, "dilation": 2}, (10,)).layer, nn.Conv1d)


def test_token_grids_of_three_axes_are_refused():
    with pytest.raises(ValueError, match="token grids of 3 axes are not supported"):
        build("conv", {"kernel": 3, "dilation": 1}, (2, 2, 2))


def test_mlp_hidden_width_is_expansion_times_width():
    module = build("mlp", {"expansion": 3}, (4,))
    first, _, last = module
    assert (first.in_features, first.out_features, last.out_features) == (WIDTH, 3 * WIDTH, WIDTH)
    x = torch.randn(2, 4, WIDTH)
    x2 = x.clone()
    x2[0, 1] += 1.0
    assert torch.equal(module(x)[0, [0, 2, 3]], module(x2)[0, [0, 2, 3]])  # per token: no mixing


def test_pool_is_pooled_minus_input():
    x = torch.zeros(1, 5, 2)
    x[0, 2, 0] = 4.0  # a spike on token 2, channel 0
    max_pool = build("pool", {"kind": "max", "kernel": 3}, (5,))
    assert isinstance(max_pool, PoolMix)
    assert max_pool(x)[0, :, 0].tolist() == [0.0, 4.0, 0.0, 4.0, 0.0]  # neighbours see the spike, the spike sees itself
    avg_pool = build("pool", {"kind": "avg", "kernel": 3}, (5,))
    torch.testing.assert_close(avg_pool(x)[0, :, 0], torch.tensor([0.0, 4 / 3, 4 / 3 - 4, 4 / 3, 0.0]))
    ones = torch.ones(1, 5, 2)
    assert torch.equal(avg_pool(ones), torch.zeros(1, 5, 2))  # edges average real tokens only (no padding counted)


def test_identity_passes_its_input_through():
    assert OPS.get("identity").residual is False and all(OPS.get(n).residual for n in OPS if n != "identity")
    x = torch.randn(2, 4, WIDTH)
    assert build("identity", {}, (4,))(x) is x


def test_describe_labels():
    attention = OPS.get("attention")
    assert attention.describe({"heads": 2, "pattern": "full"}) == "attn-full/h2"
    assert attention.describe({"heads": 1, "pattern": "local", "window": 3}) == "attn-loc3/h1"
    assert attention.describe({"heads": 4, "pattern": "dilated", "window": 5, "dilation": 2}) == "attn-dil5x2/h4"
    assert attention.describe({"heads": 2, "pattern": "topk", "topk": 8}) == "attn-top8/h2"
    assert OPS.get("conv").describe({"kernel": 3, "dilation": 1}) == "conv3"
    assert OPS.get("conv").describe({"kernel": 5, "dilation": 2}) == "conv5d2"
    assert OPS.get("mlp").describe({"expansion": 4}) == "mlp4"
    assert OPS.get("pool").describe({"kind": "avg", "kernel": 3}) == "avgpool3"
    assert OPS.get("identity").describe({}) == "id"


def test_pool_kernel_rule_names_even_kernels():
    rule = OPS.get("pool").params["kernel"].rule
    assert rule(3) is None and "is even" in rule(4)
