"""Capturing a model's representations for the representation metrics, and measuring the space's metrics."""

from __future__ import annotations

import pytest
import torch

from iasf_search.trial.representations import capture, levels, measure_metrics


def test_capture_keeps_every_node_its_level_the_pooled_embedding_and_each_attention_map(fused_model):
    x, y = torch.randn(5, 1, 8, 8), torch.arange(5)
    fused_model.train()
    reps = capture(fused_model, x, y)
    assert fused_model.training  # the mode is restored
    assert list(reps.tokens) == ["input", "n0", "n1", "n2", "output"]
    assert all(t.shape == (5, 16, 16) and not t.requires_grad and t.dtype == torch.float32 for t in reps.tokens.values())
    assert reps.levels == {"input": 0, "n0": 1, "n1": 1, "n2": 2, "output": 2}  # n2 fuses n0 and n1
    assert reps.ops == {"n0": "mlp", "n1": "conv", "n2": "attention"}
    assert reps.pooled.shape == (5, 16)
    assert list(reps.attention) == ["n2"]
    a = reps.attention["n2"]
    assert a.shape == (5, 2, 16, 16)
    assert torch.allclose(a.sum(-1), torch.ones(5, 2, 16), atol=1e-5)
    assert reps.layout.shape == (4, 4)
    assert torch.equal(reps.labels, y)


def test_the_capture_is_what_the_model_computes_in_eval_mode(fused_model):
    x = torch.randn(3, 1, 8, 8)
    reps = capture(fused_model, x, torch.zeros(3, dtype=torch.long))
    fused_model.eval()
    with torch.no_grad():
        assert torch.allclose(fused_model.head(reps.pooled), fused_model(x), atol=1e-5)
        assert torch.allclose(reps.tokens["output"], fused_model.features(x), atol=1e-6)


def test_levels_are_longest_paths_from_the_stem():
    sources = {"n0": ["input"], "n1": ["n0"], "n2": ["input", "n1"], "output": ["n0", "n2"]}
    assert levels(["n0", "n1", "n2"], sources) == {"input": 0, "n0": 1, "n1": 2, "n2": 3, "output": 3}


def test_measure_metrics_measures_each_wanted_metric_in_order_and_nothing_without_any(fused_model, components, monkeypatch):
    x, y = torch.randn(40, 1, 8, 8), torch.arange(40) % 10
    wanted = {"oversmoothing": {}, "attention_entropy": {}, "intrinsic_dimension": {}}
    measured = measure_metrics(fused_model, x, y, wanted, components)
    assert list(measured) == list(wanted)
    assert all(m is not None and torch.isfinite(torch.tensor(m.value)) for m in measured.values())
    assert 0 <= measured["attention_entropy"].value <= torch.log(torch.tensor(16.0)).item() + 1e-6
    assert set(measured["attention_entropy"].details["per_node"]) == {"n2"}

    def no_forward(*args, **kwargs):
        raise AssertionError("no metric asked for: the model must not run")

    monkeypatch.setattr("iasf_search.trial.representations.capture", no_forward)
    assert measure_metrics(fused_model, x, y, {}, components) == {}


@pytest.mark.parametrize("name", ["attention_entropy", "attention_entropy_norm", "attention_distance"])
def test_attention_metrics_are_none_for_a_graph_without_attention(make_graph, components, name):
    from iasf_search.build import build_model

    model = build_model(make_graph([{"op": "mlp", "config": {"expansion": 2}}]), components, (1, 8, 8), 10)
    assert measure_metrics(model, torch.randn(8, 1, 8, 8), torch.zeros(8, dtype=torch.long), {name: {}}, components) == {name: None}
