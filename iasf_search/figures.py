"""Figures drawn from results: the architecture diagram and attention heat maps (SVG or PNG bytes).

Uses matplotlib's object API (no pyplot state, no display needed).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import matplotlib
import networkx as nx
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from iasf_search.graph import INPUT, OUTPUT, hidden_nodes, inputs_of

if TYPE_CHECKING:
    from iasf_search.plugin_manager import Components
    from iasf_search.registry import Registry

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")


def _op_colour(op: str, ops: list[str]) -> str:
    return PALETTE[ops.index(op) % len(PALETTE)]


def save(fig: Figure, fmt: str) -> bytes:
    """``fig`` rendered as ``svg`` or ``png`` bytes."""
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text: smaller, searchable
        fig.savefig(buf, format=fmt, bbox_inches="tight", dpi=120)
    return buf.getvalue()


def node_labels(graph: nx.DiGraph, components: Components) -> dict[str, str]:
    """Each node's short description from its component (``attn-loc3/h2``); the op's name when it is not loaded."""

    def describe(registry: Registry, op: str, config: Mapping[str, Any]) -> str:
        try:
            return registry.get(op).describe(config)
        except Exception:
            return op

    stem = graph.nodes[INPUT]
    labels = {INPUT: describe(components.stems, stem.get("op", ""), stem.get("config", {})), OUTPUT: "head"}
    for n in hidden_nodes(graph):
        labels[n] = describe(components.ops, graph.nodes[n].get("op", ""), graph.nodes[n].get("config", {}))
    return labels


def architecture_figure(graph: nx.DiGraph, label: Callable[[str], str], title: str = "") -> Figure:
    """The graph drawn left to right by topological generation: one box per node with its
    name and ``label(node)`` (e.g. ``attn-loc3/h2``), the fusion on nodes with several inputs,
    arrows numbered by input slot when a node reads several inputs."""
    generations = list(nx.topological_generations(graph))
    pos: dict[str, tuple[float, float]] = {}
    for x, layer in enumerate(generations):
        for i, node in enumerate(sorted(layer, key=lambda n: (len(n), n))):
            pos[node] = (x * 2.2, (len(layer) - 1) / 2 - i)
    ops = sorted({graph.nodes[n].get("op", "") for n in graph if n not in (INPUT, OUTPUT)})
    width = max(4.0, 2.0 * len(generations))
    height = max(2.0, 1.2 * max(len(layer) for layer in generations))
    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot()
    for node in graph:
        srcs = inputs_of(graph, node)
        for slot, src in enumerate(srcs):
            (x0, y0), (x1, y1) = pos[src], pos[node]
            ax.annotate("", xy=(x1 - 0.75, y1), xytext=(x0 + 0.75, y0),
                        arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.2, "shrinkA": 0, "shrinkB": 0})
            if len(srcs) > 1:  # the slot number near the arrow's head
                xa, xb = x0 + 0.75, x1 - 0.75
                ax.text(xa + 0.8 * (xb - xa), y0 + 0.8 * (y1 - y0) + 0.06, str(slot), fontsize=7, ha="center",
                        va="bottom", color="#555555")
    for node, (x, y) in pos.items():
        attrs = graph.nodes[node]
        colour = "#dddddd" if node in (INPUT, OUTPUT) else _op_colour(attrs.get("op", ""), ops)
        ax.add_patch(FancyBboxPatch((x - 0.75, y - 0.3), 1.5, 0.6, boxstyle="round,pad=0.02", fc=colour, ec="#333333",
                                    alpha=0.9))
        text = f"{node}\n{label(node)}"
        if attrs.get("fusion") and len(inputs_of(graph, node)) > 1:
            text += f"\n⊕ {attrs['fusion']}"
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def heatmap_figure(maps: Mapping[str, torch.Tensor], labels: Mapping[str, str] | None = None, title: str = "") -> Figure:
    """One panel per node: its ``(T, T)`` map ``H = A / max A`` (queries down, keys across), colour 0..1."""
    n = max(1, len(maps))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.4 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for ax, (node, h) in zip(axes.flat, maps.items(), strict=False):
        image = ax.imshow(h.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"{node}: {labels.get(node, '') if labels else ''}".rstrip(": "), fontsize=8)
        ax.set_xlabel("key token", fontsize=7)
        ax.set_ylabel("query token", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(maps):]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="A / max A")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
