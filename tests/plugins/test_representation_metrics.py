"""The built-in representation metrics: each formula on inputs whose answer is known, and the metrics'
contract (None where a metric does not apply, per-node details, the topology extra's message)."""

from __future__ import annotations

import math

import pytest
import torch

from iasf_search.components import Measurement, Representations, TokenLayout
from iasf_search.plugins import representation_metrics as rm


def reps(tokens: dict[str, torch.Tensor], *, attention: dict[str, torch.Tensor] | None = None, layout=(4,),
         pooled: torch.Tensor | None = None) -> Representations:
    levels = {name: i for i, name in enumerate(tokens)}
    return Representations(tokens=tokens, levels=levels, ops={n: "conv" for n in tokens if n not in ("input", "output")},
                           pooled=pooled if pooled is not None else torch.randn(32, 6, generator=torch.Generator().manual_seed(0)),
                           attention=attention or {}, layout=TokenLayout(tuple(layout)), labels=torch.zeros(32, dtype=torch.long))


def test_oversmoothing_is_one_for_identical_tokens_zero_for_orthogonal_ones_and_matches_the_pairwise_mean():
    same = torch.ones(3, 5, 4)
    assert rm.oversmoothing_index(same) == pytest.approx(1.0)
    orthogonal = torch.eye(4).expand(2, 4, 4)  # 4 tokens, each along its own axis
    assert rm.oversmoothing_index(orthogonal) == pytest.approx(0.0, abs=1e-7)
    x = torch.randn(6, 7, 5, generator=torch.Generator().manual_seed(1))
    xn = torch.nn.functional.normalize(x, dim=-1)
    pairwise = xn @ xn.transpose(1, 2)
    brute = float(((pairwise.sum((1, 2)) - 7) / 42).mean())
    assert rm.oversmoothing_index(x) == pytest.approx(brute, abs=1e-6)
    assert rm.oversmoothing_index(torch.randn(2, 1, 4)) is None  # one token: no pair


def test_effective_rank_counts_equal_singular_values_and_matches_svd():
    k = 3
    tokens = torch.zeros(2, 6, 8)
    tokens[:, :k, :k] = torch.eye(k) * 5  # k equal singular values, the rest 0
    assert rm.effective_rank(tokens) == pytest.approx(k, rel=1e-4)
    x = torch.randn(4, 9, 5, generator=torch.Generator().manual_seed(2))
    s = torch.linalg.svdvals(x.double())
    p = s / s.sum(-1, keepdim=True)
    expected = float(torch.exp(-(p * p.log()).sum(-1)).mean())
    assert rm.effective_rank(x) == pytest.approx(expected, rel=1e-4)
    assert rm.effective_rank(torch.zeros(2, 3, 3)) is None


@pytest.mark.parametrize("dimension", [2, 5])
def test_two_nn_recovers_the_dimension_of_a_linear_subspace(dimension):
    g = torch.Generator().manual_seed(dimension)
    basis = torch.linalg.qr(torch.randn(20, dimension, generator=g)).Q  # a d-dimensional subspace of R^20
    points = torch.rand(1000, dimension, generator=g) @ basis.T
    assert rm.two_nn(points) == pytest.approx(dimension, rel=0.15)


def test_two_nn_leaves_out_duplicates_and_needs_three_points():
    points = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    assert rm.two_nn(points) is None
    assert rm.two_nn(torch.randn(2, 3)) is None


def test_attention_entropy_is_log_k_for_uniform_attention_over_k_keys_and_its_norm_is_one():
    T, k = 6, 3
    a = torch.zeros(2, 1, T, T)
    for q in range(T):
        a[:, :, q, [(q + j) % T for j in range(k)]] = 1 / k
    assert float(rm.entropy_nats(a).mean()) == pytest.approx(math.log(k), rel=1e-6)
    assert rm.normalised_entropy(a) == pytest.approx(1.0, rel=1e-6)
    one_key = torch.eye(T).expand(2, 1, T, T)
    assert float(rm.entropy_nats(one_key).mean()) == pytest.approx(0.0, abs=1e-6)
    assert rm.normalised_entropy(one_key) is None  # no query sees two keys


def test_attention_distance_uses_the_stem_grid():
    line = TokenLayout((4,))
    a = torch.zeros(1, 1, 4, 4)
    for q in range(4):
        a[0, 0, q, min(q + 1, 3) if q < 3 else 2] = 1.0  # each query attends to a neighbour one step away
    assert rm.attention_distance(a, line.coordinates()) == pytest.approx(1.0)
    grid = TokenLayout((2, 2))  # tokens (0,0) (0,1) (1,0) (1,1): 0 <-> 3 and 1 <-> 2 are diagonal
    diagonal = torch.zeros(1, 1, 4, 4)
    for q, k in ((0, 3), (3, 0), (1, 2), (2, 1)):
        diagonal[0, 0, q, k] = 1.0
    assert rm.attention_distance(diagonal, grid.coordinates()) == pytest.approx(math.sqrt(2))


def test_node_metrics_give_the_head_input_and_every_node_with_its_level():
    g = torch.Generator().manual_seed(3)
    tokens = {"input": torch.randn(8, 4, 6, generator=g), "n0": torch.ones(8, 4, 6), "output": torch.ones(8, 4, 6)}
    result = rm.Oversmoothing().measure(reps(tokens), {})
    assert isinstance(result, Measurement)
    assert result.value == pytest.approx(1.0)
    assert set(result.details["per_node"]) == {"input", "n0", "output"}
    assert result.details["level"] == {"input": 0, "n0": 1, "output": 2}
    assert result.details["per_node"]["input"] < 1.0


def test_attention_metrics_do_not_apply_without_attention_and_average_attention_nodes():
    tokens = {"input": torch.randn(2, 4, 6), "n0": torch.randn(2, 4, 6), "output": torch.randn(2, 4, 6)}
    for metric in (rm.AttentionEntropy(), rm.AttentionEntropyNorm(), rm.AttentionDistance()):
        assert metric.measure(reps(tokens), {}) is None
    uniform = torch.full((2, 2, 4, 4), 0.25)
    peaked = torch.eye(4).expand(2, 2, 4, 4).contiguous()
    result = rm.AttentionEntropy().measure(reps(tokens, attention={"n0": uniform, "n1": peaked}), {})
    assert result.details["per_node"] == {"n0": pytest.approx(math.log(4), rel=1e-5), "n1": pytest.approx(0.0, abs=1e-6)}
    assert result.value == pytest.approx(math.log(4) / 2, rel=1e-5)


def test_intrinsic_dimension_measures_the_pooled_embedding():
    g = torch.Generator().manual_seed(4)
    line = torch.rand(400, 1, generator=g) * torch.tensor([[1.0, 2.0, -1.0]])  # points on a line in R^3
    tokens = {"input": torch.randn(400, 3, 4, generator=g), "output": torch.randn(400, 3, 4, generator=g)}
    result = rm.IntrinsicDimension().measure(reps(tokens, pooled=line), {})
    assert result.value == pytest.approx(1.0, rel=0.15)
    assert set(result.details["per_node"]) == {"input", "output"}


def test_the_default_set_is_every_built_in_but_persistence(components):
    defaults = {name for name in components.metrics if components.metrics.get(name).default}
    assert defaults == {"attention_entropy", "attention_entropy_norm", "attention_distance", "oversmoothing",
                        "effective_rank", "intrinsic_dimension"}


def test_persistence_without_ripser_says_which_extra_to_install(monkeypatch):
    monkeypatch.setattr(rm.importlib.util, "find_spec", lambda name: None)
    assert rm.PersistenceH1().unavailable() == "needs the ripser package: pip install 'iasf-search[topology]'"


def test_persistence_of_a_circle_has_one_long_h1_bar():
    pytest.importorskip("ripser")
    angles = torch.linspace(0, 2 * math.pi, 61)[:-1]
    circle = torch.stack([angles.cos(), angles.sin()], dim=1)
    r = reps({"input": torch.randn(60, 2, 3), "output": torch.randn(60, 2, 3)}, pooled=circle)
    h1 = rm.PersistenceH1().measure(r, {"subsample": 60, "seed": 0})
    h0 = rm.PersistenceH0().measure(r, {"subsample": 60, "seed": 0})
    assert h1.value > 1.0  # the loop is born at the spacing (~0.1) and dies near the radius (~1.7)
    assert h1.details == {"subsample": 60, "seed": 0, "intervals": h1.details["intervals"]}
    assert h0.details["intervals"] == 59  # 60 points merge into one component: 59 finite bars
    assert h0.value == pytest.approx(59 * 2 * math.sin(math.pi / 60), rel=1e-3)


def test_every_built_in_metric_passes_the_plugin_contract_check(fused_model, components):
    from iasf_search.testing import check_metric

    pytest.importorskip("ripser")
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(40, 1, 8, 8, generator=g), torch.arange(40) % 10
    for name in components.metrics:
        assert check_metric(components.metrics.get(name), fused_model, x, y) is not None, name  # it has attention
