"""The built-in fusion operators (plugins/fusions.py): what each computes from its inputs, and its parameters.
(Every registered fusion inside a built model: tests/test_build.py; the conformance kit: tests/test_testing.py.)"""

from __future__ import annotations

import pytest
import torch

from iasf_search.components import BuildContext, TokenLayout
from iasf_search.params import parse_params
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.fusions import CrossAttentionFusion

COMPONENTS = load_components(autoload=False)
FUSIONS = COMPONENTS.fusions
WIDTH = 8
CTX = BuildContext(width=WIDTH, layout=TokenLayout((4,)))


def inputs(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, WIDTH, generator=g) for _ in range(n)]


def test_sum_and_beta_softmax_values():
    ctx = BuildContext(width=WIDTH, layout=TokenLayout((4,)))
    a, b = torch.randn(2, 4, WIDTH), torch.randn(2, 4, WIDTH)
    torch.testing.assert_close(COMPONENTS.fusions.get("sum").build({}, 2, ctx)([a, b]), a + b)
    # beta starts at zero: softmax gives equal weights, the mean of the inputs
    torch.testing.assert_close(COMPONENTS.fusions.get("beta_softmax").build({}, 2, ctx)([a, b]), (a + b) / 2)



def test_builtin_fusions():
    assert FUSIONS.names() == ["sum", "concat", "gated", "beta_softmax", "cross_attention", "alpha_product"]
    assert all(FUSIONS.owner(n) == "iasf_search.plugins.fusions" for n in FUSIONS)


def test_sum_of_three():
    a, b, c = inputs(3)
    torch.testing.assert_close(FUSIONS.get("sum").build({}, 3, CTX)([a, b, c]), a + b + c)


def test_concat_projects_the_concatenation():
    torch.manual_seed(0)
    module = FUSIONS.get("concat").build({}, 3, CTX)
    assert (module.proj.in_features, module.proj.out_features) == (3 * WIDTH, WIDTH)
    xs = inputs(3)
    torch.testing.assert_close(module(xs), module.proj(torch.cat(xs, dim=-1)))


def test_gated_weighs_each_input_by_its_own_gate():
    module = FUSIONS.get("gated").build({}, 2, CTX)
    assert len(module.gates) == 2
    for gate in module.gates:
        torch.nn.init.zeros_(gate.weight)
        torch.nn.init.zeros_(gate.bias)
    a, b = inputs(2)
    torch.testing.assert_close(module([a, b]), 0.5 * a + 0.5 * b)  # sigmoid(0) = 1/2
    torch.nn.init.constant_(module.gates[1].bias, -100.0)  # the second gate closes
    torch.testing.assert_close(module([a, b]), 0.5 * a)


def test_beta_softmax_weights_are_per_channel():
    module = FUSIONS.get("beta_softmax").build({}, 2, CTX)
    assert module.beta.shape == (2, WIDTH) and not module.beta.any()
    with torch.no_grad():
        module.beta[0, :4] = 50.0  # channels 0-3 take the first input, 4-7 the second
        module.beta[1, 4:] = 50.0
    a, b = inputs(2)
    out = module([a, b])
    torch.testing.assert_close(out[..., :4], a[..., :4])
    torch.testing.assert_close(out[..., 4:], b[..., 4:])


def test_alpha_product_starts_near_the_mean():
    module = FUSIONS.get("alpha_product").build({}, 3, CTX)
    assert module.alpha.shape == (WIDTH,) and bool((module.alpha == -2.0).all())
    xs = inputs(3)
    a = torch.sigmoid(torch.tensor(-2.0))
    expected = a * xs[0] * xs[1] * xs[2] + (1 - a) * (xs[0] + xs[1] + xs[2]) / 3
    torch.testing.assert_close(module(xs), expected)


def test_cross_attention_is_a_residual_on_the_first_input():
    torch.manual_seed(0)
    module = FUSIONS.get("cross_attention").build({"heads": 2}, 3, CTX)
    assert isinstance(module, CrossAttentionFusion) and module.heads == 2
    a, b, c = inputs(3)
    assert not torch.allclose(module([a, b, c]), module([b, a, c]))  # slot 0 is the query: order matters
    torch.nn.init.zeros_(module.proj.weight)
    torch.nn.init.zeros_(module.proj.bias)
    torch.testing.assert_close(module([a, b, c]), a)  # nothing attended: the query passes unchanged


def test_cross_attention_keys_come_from_the_other_inputs_only():
    torch.manual_seed(0)
    module = FUSIONS.get("cross_attention").build({"heads": 1}, 2, CTX)
    a, b = inputs(2)
    a2 = a.clone()
    a2[:, 1] += 1.0  # another query token: the other tokens' outputs do not change
    out, out2 = module([a, b]), module([a2, b])
    torch.testing.assert_close(out[:, [0, 2, 3]], out2[:, [0, 2, 3]])


def test_cross_attention_heads_must_divide_the_width():
    fusion = FUSIONS.get("cross_attention")
    with pytest.raises(ValueError, match="3 heads do not divide width 8"):
        fusion.build({"heads": 3}, 2, CTX)
    ranges = parse_params({"heads": [2, 3]}, dict(fusion.params), "manifold.fusions.cross_attention", "cross_attention")
    assert fusion.check_ranges(ranges, widths=(12,)) is None
    assert fusion.check_ranges(ranges, widths=(8,))[0] == "heads"
    assert "3 heads do not divide width 8" in fusion.check_ranges(ranges, widths=(8,))[1]


def test_describe_labels():
    assert FUSIONS.get("sum").describe({}) == "sum"
    assert FUSIONS.get("cross_attention").describe({"heads": 2}) == "cross_attention(2)"


def test_masked_cross_attention_reads_the_real_tokens_of_the_other_inputs():
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(3, 8, 2)
    real = [torch.randn(2, 4, 8) for _ in range(3)]
    padded = [torch.cat([t, 30 * torch.randn(2, 3, 8)], dim=1) for t in real]
    mask = torch.arange(7)[None, :].expand(2, 7) < 4
    with torch.no_grad():
        torch.testing.assert_close(fusion(padded, mask=mask)[:, :4], fusion(real), atol=1e-5, rtol=1e-5)
