"""The cross-domain synthesis score (plugins/cds.py): gradient alignment of the branches entering a fusion,
as a measurement and as a regulariser."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from iasf_search.build import build_model
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.cds import branch_alignment

COMPONENTS = load_components(autoload=False)
CDS = COMPONENTS.aux_objectives.get("cds")


def test_cds_of_a_sum_fusion_is_perfectly_aligned(make_graph):
    """A sum hands the same gradient to each input: cosine 1, inner product = squared norm."""
    torch.manual_seed(0)
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}},
                        {"op": "conv", "config": {"kernel": 3, "dilation": 1}, "inputs": ["input"]},
                        {"op": "mlp", "config": {"expansion": 2}, "inputs": ["n0", "n1"], "fusion": "sum"}], width=16)
    model = build_model(graph, COMPONENTS, (1, 8, 8), 10)
    forward = model.run(torch.randn(4, 1, 8, 8), capture_fusion_inputs=True)
    assert list(forward.fusion_inputs) == ["n2"]
    (cos, inner), = branch_alignment(forward, torch.arange(4), create_graph=False).values()
    assert float(cos) == pytest.approx(1.0, abs=1e-5)
    forward = model.run(torch.randn(4, 1, 8, 8), capture_fusion_inputs=True)
    g = torch.autograd.grad(torch.nn.functional.cross_entropy(forward.logits, torch.arange(4)), forward.fusion_inputs["n2"][0],
                            retain_graph=True)[0]
    (_, inner), = branch_alignment(forward, torch.arange(4), create_graph=False).values()
    assert float(inner) == pytest.approx(float(g.reshape(4, -1).pow(2).sum(-1).mean()), rel=1e-4)


def test_concat_branches_are_not_identical(fused_model):
    forward = fused_model.run(torch.randn(6, 1, 8, 8), capture_fusion_inputs=True)
    (cos, _), = branch_alignment(forward, torch.arange(6), create_graph=False).values()
    assert -1.0 <= float(cos) < 0.999


def test_alignment_averages_every_pair_of_branches_over_the_batch(make_graph):
    torch.manual_seed(0)
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}},
                        {"op": "conv", "config": {"kernel": 3, "dilation": 1}, "inputs": ["input"]},
                        {"op": "mlp", "config": {"expansion": 1}, "inputs": ["n0", "n1", "input"], "fusion": "gated"}], width=8)
    model = build_model(graph, COMPONENTS, (1, 8, 8), 10)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 3, 5, 9])
    forward = model.run(x, capture_fusion_inputs=True)
    (cos, inner), = branch_alignment(forward, y, create_graph=False).values()
    forward = model.run(x, capture_fusion_inputs=True)
    grads = torch.autograd.grad(F.cross_entropy(forward.logits, y), forward.fusion_inputs["n2"])
    flat = [g.reshape(4, -1) for g in grads]
    pairs = list(itertools.combinations(flat, 2))
    assert len(pairs) == 3
    expected_cos = sum(F.cosine_similarity(a, b, dim=-1).mean() for a, b in pairs) / 3
    expected_inner = sum((a * b).sum(-1).mean() for a, b in pairs) / 3
    assert float(cos) == pytest.approx(float(expected_cos), rel=1e-4)
    assert float(inner) == pytest.approx(float(expected_inner), rel=1e-4)


def test_measure_names_each_fusion_node_and_the_mean(fused_model):
    forward = fused_model.run(torch.randn(6, 1, 8, 8), capture_fusion_inputs=True)
    measured = CDS.measure(torch.nn.Module(), {"weight": 0.0}, forward, torch.arange(6))
    assert set(measured) == {"n2.cosine", "n2.inner", "cosine"}
    assert measured["cosine"] == measured["n2.cosine"] and -1 <= measured["cosine"] <= 1


def test_loss_is_one_minus_the_mean_cosine_and_trains_the_model(fused_model):
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6)
    with sdpa_kernel([SDPBackend.MATH]):  # as the trainer runs it (needs_double_backward): a kernel with a second derivative
        forward = fused_model.run(x, capture_fusion_inputs=True)
    loss = CDS.loss(torch.nn.Module(), {"weight": 0.1}, forward, y)
    (cos, _), = branch_alignment(fused_model.run(x, capture_fusion_inputs=True), y, create_graph=False).values()
    assert float(loss.detach()) == pytest.approx(1 - float(cos), abs=1e-5)
    loss.backward()  # a second derivative: the regulariser moves the weights
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fused_model.parameters())


def test_a_model_without_fusions_has_nothing_to_align(make_graph):
    model = build_model(make_graph([{"op": "mlp", "config": {"expansion": 2}}], width=8), COMPONENTS, (1, 8, 8), 10)
    forward = model.run(torch.randn(3, 1, 8, 8), capture_fusion_inputs=True)
    assert branch_alignment(forward, torch.arange(3), create_graph=True) == {}
    loss = CDS.loss(torch.nn.Module(), {"weight": 0.1}, forward, torch.arange(3))
    assert loss.shape == () and loss.item() == 0.0
    assert CDS.measure(torch.nn.Module(), {"weight": 0.1}, forward, torch.arange(3)) == {}


def test_declares_what_the_trainer_must_provide():
    assert CDS.needs_fusion_inputs and CDS.needs_double_backward
    assert CDS.params["weight"].default == 0.0  # measured only, unless a space asks for the regulariser
    assert COMPONENTS.aux_objectives.owner("cds") == "iasf_search.plugins.cds"
