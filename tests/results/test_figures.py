"""Figures: the architecture diagram and heat maps render to SVG/PNG with what they show."""

from __future__ import annotations

import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from iasf_search.results.figures import architecture_figure, heatmap_figure, node_labels, save


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


def _crosses(points, box, inset: float = 1.5) -> bool:
    """Whether the polyline ``points`` enters ``box`` (a Bbox shrunk by ``inset``), sampled finely."""
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        for i in range(201):
            x, y = x0 + (x1 - x0) * i / 200, y0 + (y1 - y0) * i / 200
            if box.x0 + inset < x < box.x1 - inset and box.y0 + inset < y < box.y1 - inset:
                return True
    return False


def test_diagram_runs_top_to_bottom_and_skip_arrows_go_around_boxes(make_graph):
    mlp = {"op": "mlp", "config": {"expansion": 2}}
    graph = make_graph([mlp, mlp, {**mlp, "inputs": ["n1", "input"]}, {**mlp, "inputs": ["n2", "n0"], "fusion": "gated"}])
    fig = architecture_figure(graph, lambda n: f"label-{n}", title="trial 3 · 0123abcd")
    width, height = fig.get_size_inches()
    assert height > width  # one column of six rows: taller than wide, not a strip
    ax = fig.axes[0]
    y = {t.get_text(): t.get_position()[1] for t in ax.texts}
    assert y["input"] > y["n0"] > y["n1"] > y["n2"] > y["n3"] > y["output"]
    assert min(t.get_fontsize() for t in ax.texts) >= 9
    assert sorted(t.get_text() for t in ax.texts if t.get_text().isdigit()) == ["0", "0", "1", "1"]
    boxes = [p.get_bbox() for p in ax.patches if isinstance(p, FancyBboxPatch)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(boxes) == 6 and len(arrows) == graph.number_of_edges()
    for arrow in arrows:
        points = [tuple(v) for poly in arrow.get_path().to_polygons(closed_only=False) for v in poly]
        assert sum(_crosses(points, box) for box in boxes) == 0


def test_a_long_title_wraps_instead_of_widening_the_diagram(make_graph):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}])
    title = "trial 12: 3ae6d3b9982f29af45d14540a34f5314 and some more words"
    fig = architecture_figure(graph, str, title=title)
    shown = [t.get_text() for t in fig.axes[0].texts if "trial 12" in t.get_text()]
    assert len(shown) == 1 and "\n" in shown[0] and shown[0].replace("\n", " ") == title


def test_unknown_ops_are_labelled_by_name(components, make_graph):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}])
    graph.nodes["n0"]["op"] = "from_a_missing_plugin"
    assert node_labels(graph, components)["n0"] == "from_a_missing_plugin"


def test_diagram_labels_name_a_readout_and_norms_other_than_the_defaults(components, make_graph):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}, {"op": "conv", "config": {"kernel": 3, "dilation": 1}}])
    graph.nodes["n0"].update(norm="batch", norm_config={})
    graph.nodes["n1"].update(norm="layer", norm_config={})
    graph.nodes["output"].update(readout="class_token", readout_config={"heads": 2})
    labels = node_labels(graph, components)
    assert (labels["n0"], labels["n1"], labels["output"]) == ("mlp2[bn]", "conv3", "head cls/h2")


def test_heatmap_png_has_one_panel_per_node():
    maps = {"n0": torch.eye(4), "n2": torch.ones(4, 4)}
    png = save(heatmap_figure(maps, {"n0": "attn-loc3/h2"}, title="t"), "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    fig = heatmap_figure(maps)
    assert len([ax for ax in fig.axes if ax.images]) == 2
