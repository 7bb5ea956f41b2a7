"""The built-in node operations (plugins/ops.py): attention patterns and their connectivity masks, convolution,
MLP, the token-mixing MLPs (token_mlp, gmlp), pooling and identity, each on its own. (Every registered op inside a
built model: tests/test_build.py; the conformance kit on every op: tests/test_testing.py.)"""

from __future__ import annotations

import optuna
import pytest
import torch
from conftest import finished, run
from optuna.trial import TrialState
from torch import nn

from iasf_search import graph as arch
from iasf_search.build import ArchNet, build_model
from iasf_search.components import BuildContext, TokenLayout
from iasf_search.params import parse_params
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.ops import (
    PATTERNS,
    TOKEN_MLP_MAX_HIDDEN,
    GatedMLP,
    PoolMix,
    SelfAttention,
    TokenMLP,
    connectivity_mask,
    heads_fit_widths,
)

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


# -- token-mixing MLPs: token_mlp (MLP-Mixer), gmlp (gMLP) ------------------------------------------------

TOKEN_MIXERS = ("token_mlp", "gmlp")
ODD_INPUTS = {
    "image-9x7-p2": ("image", (1, 9, 7), {"patch": 2, "overlap": True, "position": "learned"}, (5, 4)),
    "image-5x5-p1": ("image", (3, 5, 5), {"patch": 1, "overlap": False, "position": "sinusoidal"}, (5, 5)),
    "sequence-41-p2": ("sequence", (41, 1), {"patch": 2, "overlap": False, "position": "sinusoidal"}, (21,)),
    "sequence-13-p1": ("sequence", (13, 3), {"patch": 1, "overlap": True, "position": "none"}, (13,)),
    "text-17": ("text", (17,), {"vocabulary": 50, "position": "learned"}, (17,)),
}
"""id -> (modality, sample shape, stem config, token grid): sizes a patch does not divide, prime lengths, text."""


def _inputs(modality: str, sample_shape: tuple[int, ...], batch: int) -> torch.Tensor:
    return torch.randint(0, 50, (batch, *sample_shape)) if modality == "text" else torch.randn(batch, *sample_shape)


@pytest.mark.parametrize("input_id", ODD_INPUTS)
@pytest.mark.parametrize("op", TOKEN_MIXERS)
def test_token_mixers_build_run_and_learn_on_every_stem_layout(make_graph, op, input_id):
    """T comes from the stem's layout (padded sizes included): logits of the right shape, each sample's
    own, and gradients reach every parameter of the op and the stem."""
    modality, sample_shape, stem, grid = ODD_INPUTS[input_id]
    torch.manual_seed(0)
    graph = make_graph([{"op": op, "config": {"expansion": 2}}], width=WIDTH, modality=modality, stem=stem)
    model = build_model(graph, COMPONENTS, sample_shape, CLASSES)
    assert model.layout.shape == grid
    x = _inputs(modality, sample_shape, 3)
    out = model(x)
    assert out.shape == (3, CLASSES) and torch.isfinite(out).all()
    model.eval()
    torch.testing.assert_close(model(x)[1:2], model(x[1:2]), rtol=1e-4, atol=1e-5)
    model.train()
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2])).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    op_grads = {n: p.grad for n, p in model.named_parameters() if n.startswith("blocks.n0.op.")}
    assert op_grads and all(g.abs().sum() > 0 for g in op_grads.values())


@pytest.mark.parametrize("grid", [(21,), (5, 4), (1,)])
@pytest.mark.parametrize("op", TOKEN_MIXERS)
def test_token_mixers_keep_btd_for_odd_grids(op, grid):
    module = build(op, {"expansion": 3}, grid)
    T = TokenLayout(grid).length
    for batch in (1, 4):
        assert module(torch.randn(batch, T, WIDTH)).shape == (batch, T, WIDTH)


@pytest.mark.parametrize("grid", [(21,), (5, 4)])
@pytest.mark.parametrize("op", TOKEN_MIXERS)
def test_token_mixers_mix_every_token_into_every_other(op, grid):
    """Perturbing one token changes the output of every token (the per-token mlp changes only its own);
    gmlp does so from its near-zero initial spatial weights already."""
    torch.manual_seed(0)
    module, mlp = build(op, {"expansion": 2}, grid), build("mlp", {"expansion": 2}, grid)
    T = TokenLayout(grid).length
    x = torch.randn(2, T, WIDTH)
    for token in (0, T // 2, T - 1):  # T - 1: the last token, the one a stem pads
        x2 = x.clone()
        x2[0, token] += 3.0
        changed = (module(x) - module(x2)).abs().sum(-1) > 0
        assert bool(changed[0].all()), (token, changed[0].nonzero().flatten().tolist())
        assert not bool(changed[1].any())  # other samples are untouched
        assert ((mlp(x) - mlp(x2)).abs().sum(-1)[0] > 0).nonzero().flatten().tolist() == [token]


def test_token_mlp_is_mixer_token_mixing_shared_by_every_channel():
    torch.manual_seed(0)
    module = build("token_mlp", {"expansion": 2}, (4, 4))
    assert isinstance(module, TokenMLP)
    assert (module.fc1.in_features, module.fc1.out_features, module.fc2.out_features) == (16, 32, 16)
    x = torch.randn(2, 16, WIDTH)
    expected = module.fc2(torch.nn.functional.gelu(module.fc1(x.transpose(1, 2)))).transpose(1, 2)
    torch.testing.assert_close(module(x), expected)
    x2 = x.clone()
    x2[0, 3, 5] += 2.0  # one channel of one token: only that channel changes, at every token
    diff = (module(x) - module(x2)).abs()[0].detach()
    assert bool((diff[:, 5] > 0).all()) and float(diff[:, [c for c in range(WIDTH) if c != 5]].max()) == 0.0
    # the hidden token count is capped: linear, not quadratic, in T
    long = build("token_mlp", {"expansion": 2}, (400,))
    assert (long.fc1.in_features, long.fc1.out_features) == (400, TOKEN_MLP_MAX_HIDDEN)


def test_gmlp_is_a_gated_channel_mlp_with_a_near_identity_spatial_gate_at_start():
    torch.manual_seed(0)
    module = build("gmlp", {"expansion": 3}, (5, 4))
    assert isinstance(module, GatedMLP)
    assert (module.proj_in.in_features, module.proj_in.out_features) == (WIDTH, 2 * 3 * WIDTH)
    assert (module.proj_out.in_features, module.proj_out.out_features) == (3 * WIDTH, WIDTH)
    spatial = module.gate.spatial
    assert (spatial.in_features, spatial.out_features) == (20, 20)
    assert float(spatial.weight.detach().abs().max()) <= 1e-3 / 20 and torch.equal(spatial.bias, torch.ones(20))
    assert module.gate.norm.normalized_shape == (3 * WIDTH,)
    x = torch.randn(2, 20, WIDTH)
    u, v = torch.nn.functional.gelu(module.proj_in(x)).chunk(2, dim=-1)
    gate = module.gate.spatial(module.gate.norm(v).transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(module(x), module.proj_out(u * gate))
    with torch.no_grad():
        spatial.weight.zero_()  # the gate is then exactly 1: the block is a per-token channel MLP on u
    torch.testing.assert_close(module(x), module.proj_out(u))


def test_token_mixer_labels():
    assert OPS.get("token_mlp").describe({"expansion": 2}) == "tmlp2"
    assert OPS.get("gmlp").describe({"expansion": 3}) == "gmlp3"
    assert OPS.get("token_mlp").residual and OPS.get("gmlp").residual
    assert {n: OPS.get(n).params["expansion"].default for n in TOKEN_MIXERS} == {"token_mlp": 2, "gmlp": 2}


def test_a_space_offering_the_token_mixers_samples_builds_and_trains_them(make_space, components, digits, train_config):
    from iasf_search.train import train

    space = make_space({"manifold.ops": {"token_mlp": None, "gmlp": {"expansion": [1, 2]}}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, ArchNet] = {}
    for _ in range(12):
        graph = arch.sample_graph(study.ask(), space, components)
        model = build_model(graph, components, digits.sample_shape, digits.num_classes)
        assert model(digits.x_val[:2]).shape == (2, digits.num_classes)
        for node in arch.hidden_nodes(graph):
            seen.setdefault(graph.nodes[node]["op"], model)
    assert set(seen) == {"token_mlp", "gmlp"}
    for op, model in seen.items():  # one optimiser step over the whole training split
        before = [p.detach().clone() for p in model.parameters()]
        config = {**train_config, "epochs": 1, "batch_size": len(digits.x_train)}
        result = train(model, digits, config, device=torch.device("cpu"), seed=0)
        assert result.steps == 1 and 0.0 <= result.val_accuracy <= 1.0, op
        assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)), op


def test_a_search_offering_the_token_mixers_completes_through_the_cli(capsys, tmp_path, write_space):
    write_space({"manifold.ops": {"token_mlp": None, "gmlp": None}, "training.schedule": "one_cycle"})
    url = f"sqlite:///{tmp_path / 'mixers.db'}"
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "3")
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(finished(study)) == 3 and all(t.state == TrialState.COMPLETE for t in study.trials)
    ops = set()
    for t in study.trials:
        graph = arch.from_json(t.system_attrs["architecture"])
        ops |= {graph.nodes[n]["op"] for n in arch.hidden_nodes(graph)}
        assert t.system_attrs["train_config"]["schedule"] == "one_cycle"
        assert 0.0 <= t.user_attrs["val_accuracy"] <= 1.0
    assert ops and ops <= {"token_mlp", "gmlp"}
    assert any(label in out for label in ("tmlp2", "gmlp2"))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_masked_attention_attends_to_real_keys_only(pattern):
    """With a padding mask, real queries get what they get without the padded tokens; padded queries get finite
    values (they keep their pattern's keys); the attention maps give padded keys exactly 0."""
    torch.manual_seed(0)
    layout, short = TokenLayout((10,)), TokenLayout((6,))
    config = {"heads": 2, "pattern": pattern, "window": 3, "dilation": 2, "topk": 3}
    op = COMPONENTS.ops.get("attention")
    padded_op = op.build(config, BuildContext(width=8, layout=layout)).eval()
    short_op = op.build(config, BuildContext(width=8, layout=short)).eval()
    short_op.load_state_dict(padded_op.state_dict())
    real = torch.randn(2, 6, 8)
    x = torch.cat([real, torch.randn(2, 4, 8)], dim=1)
    mask = torch.arange(10)[None, :].expand(2, 10) < 6
    with torch.no_grad():
        out = padded_op(x, mask=mask)
        torch.testing.assert_close(out[:, :6], short_op(real), atol=1e-5, rtol=1e-5)
        assert torch.isfinite(out).all()
        weights = padded_op.attention_weights(x, mask=mask)
    assert weights[:, :, :6, 6:].abs().max() == 0 and torch.isfinite(weights).all()


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_masked_pool_pools_real_tokens_only(kind):
    torch.manual_seed(0)
    real = torch.randn(2, 5, 4)
    x = torch.cat([real, 50 * torch.ones(2, 3, 4)], dim=1)
    mask = torch.arange(8)[None, :].expand(2, 8) < 5
    out = PoolMix(TokenLayout((8,)), kind, 3)(x, mask=mask)
    torch.testing.assert_close(out[:, :5], PoolMix(TokenLayout((5,)), kind, 3)(real))
    assert torch.isfinite(out).all()
