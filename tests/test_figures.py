"""Figures: the architecture diagram and heat maps render to SVG/PNG with what they show."""

from __future__ import annotations

import torch

from iasf_search.figures import architecture_figure, heatmap_figure, node_labels, save


def test_diagram_labels_every_node_with_its_component_description(components, make_graph):
    graph = make_graph([
        {"op": "attention", "config": {"heads": 2, "pattern": "local", "window": 3}},
        {"op": "conv", "config": {"kernel": 3, "dilation": 1}, "inputs": ["input"]},
        {"op": "mlp", "config": {"expansion": 2}, "inputs": ["n0", "n1"], "fusion": "gated"},
    ])
    labels = node_labels(graph, components)
    assert labels == {"input": components.stems.get("image").describe(graph.nodes["input"]["config"]),
                      "output": "head", "n0": "attn-loc3/h2", "n1": "conv3", "n2": "mlp2"}
    svg = save(architecture_figure(graph, labels.__getitem__, title="trial 7"), "svg").decode()
    assert svg.startswith("<?xml") and "<svg" in svg
    for text in ("trial 7", "attn-loc3/h2", "conv3", "mlp2", "gated"):
        assert text in svg


def test_unknown_ops_are_labelled_by_name(components, make_graph):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}])
    graph.nodes["n0"]["op"] = "from_a_missing_plugin"
    assert node_labels(graph, components)["n0"] == "from_a_missing_plugin"


def test_heatmap_png_has_one_panel_per_node():
    maps = {"n0": torch.eye(4), "n2": torch.ones(4, 4)}
    png = save(heatmap_figure(maps, {"n0": "attn-loc3/h2"}, title="t"), "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    fig = heatmap_figure(maps)
    assert len([ax for ax in fig.axes if ax.images]) == 2
