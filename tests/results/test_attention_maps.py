"""Attention heat maps: H = A / max A per attention node, masks respected."""

from __future__ import annotations

import torch

from iasf_search.build import build_model
from iasf_search.results.attention_maps import attention_maps, normalised


def test_normalised_divides_by_the_maximum_and_zeroes_the_rest():
    h = normalised(torch.tensor([[0.0, 2.0], [4.0, -1.0]]))
    assert torch.equal(h, torch.tensor([[0.0, 0.5], [1.0, 0.0]]))
    assert torch.equal(normalised(torch.zeros(2, 2)), torch.zeros(2, 2))


def test_maps_per_attention_node_respect_the_pattern(components, make_graph):
    graph = make_graph([
        {"op": "attention", "config": {"heads": 2, "pattern": "local", "window": 3}},
        {"op": "conv", "config": {"kernel": 3, "dilation": 1}},
        {"op": "attention", "config": {"heads": 2, "pattern": "full"}},
    ])
    torch.manual_seed(0)
    model = build_model(graph, components, (1, 8, 8), 10)  # patch 2: a 4x4 token grid
    maps = attention_maps(model, torch.randn(6, 1, 8, 8))
    assert list(maps) == ["n0", "n2"]                      # the conv node has no attention
    for h in maps.values():
        assert h.shape == (16, 16) and h.max() == 1.0 and h.min() >= 0
    coords = torch.stack(torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij"), -1).reshape(16, 2)
    far = ((coords[:, None] - coords[None]).abs() > 1).any(-1)  # outside a 3x3 window
    assert torch.all(maps["n0"][far] == 0) and torch.all(maps["n0"][~far] > 0)
    assert torch.all(maps["n2"] > 0)                           # full attention sees every key


def test_weights_are_what_forward_applies(components, make_graph):
    graph = make_graph([{"op": "attention", "config": {"heads": 2, "pattern": "topk", "topk": 4}}])
    model = build_model(graph, components, (1, 8, 8), 10).eval()
    op = model.blocks["n0"].op
    x = torch.randn(3, 16, 16)
    a = op.attention_weights(x)                                # (B, heads, T, T)
    assert torch.allclose(a.sum(-1), torch.ones(3, 2, 16))
    assert torch.all((a > 0).sum(-1) <= 4)
    B, T, D = x.shape
    v = op.qkv(x).view(B, T, 3, 2, D // 2).permute(2, 0, 3, 1, 4)[2]
    manual = op.proj((a @ v).transpose(1, 2).reshape(B, T, D))
    assert torch.allclose(manual, op(x), atol=1e-5)


def test_maps_of_padded_multivariate_series_give_padded_keys_nothing(components, make_graph):
    """Series of 3 channels padded to 12 steps: the maps still draw, and a key that is padding in every series gets 0."""
    graph = make_graph([{"op": "attention", "config": {"heads": 2, "pattern": "full"}}], modality="sequence",
                       stem={"patch": 2, "overlap": False, "position": "learned"})
    torch.manual_seed(0)
    model = build_model(graph, components, (12, 3), 4, padded=True)
    x = torch.randn(5, 12, 3)
    x[:, 8:] = float("nan")  # every series ends after 8 steps: tokens 4 and 5 are padding
    x[0, 4:] = float("nan")
    maps = attention_maps(model, x)
    h = maps["n0"]
    assert h.shape == (6, 6) and torch.isfinite(h).all() and h.max() == 1.0
    assert torch.all(h[:4, 4:] == 0) and torch.all(h[:4, :2] > 0)
