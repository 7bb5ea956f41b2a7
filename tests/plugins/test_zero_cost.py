"""Zero-cost proxies: finite scores for every modality, the model left untouched, params exact,
synflow by hand, zico ranking a gradient-free model last and deterministic."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from iasf_search.build import build_model, count_parameters
from iasf_search.plugins.zero_cost import Synflow
from iasf_search.search.prescreen import measure_proxy

PROXIES = ("params", "synflow", "zico")
NODES = [{"op": "attention", "config": {"heads": 2, "pattern": "full"}}, {"op": "mlp", "config": {"expansion": 2}},
         {"op": "conv", "config": {"kernel": 3, "dilation": 1}}]


def _model_and_batch(make_graph, components, modality: str):
    """A 3-node model of ``modality`` (width 16, seed 0) and a batch of 8 inputs with labels of 5 classes."""
    torch.manual_seed(0)
    if modality == "image":
        shape, stem, x = (1, 8, 8), None, torch.randn(8, 1, 8, 8)
    elif modality == "sequence":
        shape, stem, x = (12, 3), {"patch": 2, "overlap": True, "position": "sinusoidal"}, torch.randn(8, 12, 3)
    else:
        shape, stem, x = (10,), {"vocabulary": 50, "position": "learned"}, torch.randint(0, 50, (8, 10))
    graph = make_graph(NODES, width=16, modality=modality, stem=stem)
    return build_model(graph, components, shape, 5), x, torch.arange(8) % 5


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("modality", ["image", "sequence", "text"])
@pytest.mark.parametrize("name", PROXIES)
def test_every_proxy_scores_every_modality_and_leaves_the_model_as_it_was(name, modality, make_graph, components):
    model, x, y = _model_and_batch(make_graph, components, modality)
    model.train()
    before = _state(model)
    score = components.proxies.get(name).score(model, x, y, torch.device("cpu"))
    assert isinstance(score, float) and math.isfinite(score) and score > 0, score
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before), "the proxy changed the model's weights or buffers"
    assert all(p.grad is None for p in model.parameters()), "the proxy left gradients"
    assert model.training


def test_batch_norm_statistics_are_not_touched(make_graph, components):
    torch.manual_seed(0)
    graph = make_graph([{"op": "mlp", "config": {"expansion": 1}}], width=8)
    graph.nodes["n0"]["norm"] = "batch"
    graph.nodes["n0"]["norm_config"] = {}
    model = build_model(graph, components, (1, 8, 8), 4).train()
    before = _state(model)
    for name in PROXIES:
        measure_proxy(components.proxies.get(name), model, (torch.randn(8, 1, 8, 8), torch.arange(8) % 4), torch.device("cpu"))
    assert all(torch.equal(before[k], v) for k, v in _state(model).items())


def test_params_is_the_trainable_parameter_count(make_graph, components):
    model, x, y = _model_and_batch(make_graph, components, "image")
    assert components.proxies.get("params").score(model, x, y, torch.device("cpu")) == count_parameters(model)


class _TwoLayers(nn.Module):
    """x -> W2 (W1 x), no biases: synflow = sum |W1 * dR/dW1| + sum |W2 * dR/dW2| with |W| and x = 1."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 2, bias=False)
        self.b = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
            self.b.weight.copy_(torch.tensor([[-1.0, 2.0]]))

    def forward(self, x):
        return self.b(self.a(x))


def test_synflow_by_hand():
    """|W1| = [[1, 2], [3, .5]], |W2| = [1, 2], x = (1, 1): hidden h = (3, 3.5), R = 3 + 7 = 10.
    dR/dW2 = h: |W2| * h = 3 + 7 = 10. dR/dW1[i, j] = |W2|[i] * x[j]: (1*1 + 1*2) + (2*3 + 2*.5) = 3 + 7 = 10.
    Total 20; the signs come back."""
    model = _TwoLayers()
    assert Synflow().score(model, torch.randn(4, 2), torch.zeros(4, dtype=torch.long), torch.device("cpu")) == pytest.approx(20.0)
    assert model.a.weight[0, 1].item() == -2.0 and model.a.weight.dtype == torch.float32


def test_zico_ranks_a_model_without_gradients_below_a_normal_one_and_is_deterministic(make_graph, components):
    zico = components.proxies.get("zico")
    model, x, y = _model_and_batch(make_graph, components, "image")
    first = zico.score(model, x, y, torch.device("cpu"))
    assert zico.score(model, x, y, torch.device("cpu")) == first
    dead = build_model(make_graph(NODES, width=16), components, (1, 8, 8), 5)
    with torch.no_grad():
        dead.head.weight.zero_()  # nothing reaches the loss through the head: every layer before it gets zero gradients
        dead.head.bias.zero_()
    assert zico.score(dead, x, y, torch.device("cpu")) < first


def test_zico_needs_two_samples(make_graph, components):
    model, x, y = _model_and_batch(make_graph, components, "image")
    with pytest.raises(ValueError, match="at least 2 samples"):
        components.proxies.get("zico").score(model, x[:1], y[:1], torch.device("cpu"))


def test_measure_proxy_keeps_the_global_random_state(make_graph, components):
    model, x, y = _model_and_batch(make_graph, components, "image")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    measure_proxy(components.proxies.get("zico"), model.eval(), (x, y), torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)
    assert not model.training  # its mode is restored
