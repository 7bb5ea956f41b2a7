"""Figures drawn from results: the architecture diagram and attention heat maps (SVG or PNG bytes).

Uses matplotlib's object API (no pyplot state, no display needed).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import matplotlib
import networkx as nx
import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path as MplPath
from matplotlib.textpath import TextToPath

from iasf_search.graph import DEFAULT_NORM, DEFAULT_READOUT, INPUT, OUTPUT, hidden_nodes, inputs_of, is_default

if TYPE_CHECKING:
    from matplotlib.axes import Axes

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
    out = graph.nodes[OUTPUT]
    if not is_default(out, "readout", DEFAULT_READOUT):
        labels[OUTPUT] += " " + describe(components.readouts, out.get("readout") or DEFAULT_READOUT, out.get("readout_config") or {})
    for n in hidden_nodes(graph):
        attrs = graph.nodes[n]
        labels[n] = describe(components.ops, attrs.get("op", ""), attrs.get("config", {}))
        if not is_default(attrs, "norm", DEFAULT_NORM):
            labels[n] += f"[{describe(components.norms, attrs.get('norm') or DEFAULT_NORM, attrs.get('norm_config') or {})}]"
    return labels


# The architecture diagram is laid out in points (1 data unit = 1 pt), so text keeps its size against the boxes.
FONT = 12.0                # node text
SMALL = 0.8 * FONT         # fusion line, slot numbers
TITLE_FONT = 1.05 * FONT
PAD = 0.8 * FONT           # text to box edge, across
LINE = 1.25 * FONT         # box height per line of text
ROW_GAP = 1.9 * FONT       # between generations: arrows and slot numbers
COL_GAP = 1.4 * FONT       # between nodes of one generation
LANE = 1.7 * FONT          # first detour lane from the outermost box edge; each further one LANE_STEP out
LANE_STEP = 0.9 * FONT
EDGE = "#555555"
_TEXT = TextToPath()


def _width(text: str, size: float, weight: str = "normal") -> float:
    return _TEXT.get_text_width_height_descent(text, FontProperties(size=size, weight=weight), ismath=False)[0]


def _tint(colour: str, amount: float) -> tuple[float, float, float]:
    r, g, b = to_rgb(colour)
    return (1 - amount + amount * r, 1 - amount + amount * g, 1 - amount + amount * b)


def _wrap(text: str, width: float, size: float) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` points (a word longer stays whole)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and _width(f"{lines[-1]} {word}", size) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines or [""]


@dataclass
class _Box:
    x: float  # centre
    y: float
    w: float
    h: float
    row: int

    @property
    def top(self) -> float:
        return self.y + self.h / 2

    @property
    def bottom(self) -> float:
        return self.y - self.h / 2

    def hit(self, a: tuple[float, float], b: tuple[float, float], margin: float = 3.0) -> bool:
        """Whether the segment ``a``-``b`` passes through this box (grown by ``margin``)."""
        (x0, y0), (x1, y1) = a, b
        lo, hi = 0.0, 1.0  # Liang-Barsky: clip the segment's parameter range to the box
        for d, p, q in ((x1 - x0, x0, self.x - self.w / 2 - margin), (x0 - x1, -x0, -(self.x + self.w / 2 + margin)),
                        (y1 - y0, y0, self.y - self.h / 2 - margin), (y0 - y1, -y0, -(self.y + self.h / 2 + margin))):
            # the point at t is inside on this side when p + d * t >= q
            if d == 0:
                if p < q:
                    return False
            elif d > 0:
                lo = max(lo, (q - p) / d)
            else:
                hi = min(hi, (q - p) / d)
        return lo <= hi


@dataclass
class _Layout:
    """Where each node's box sits: one row per topological generation, top to bottom, centred on x = 0."""

    graph: nx.DiGraph
    rows: list[list[str]]
    column: dict[str, float]  # a node's place in its row, centred on 0
    row_of: dict[str, int]
    names: dict[str, tuple[str, str]]  # node -> (name, label)
    fused: set[str]  # nodes with several inputs and a fusion (a second text line)
    boxes: dict[str, _Box]

    @property
    def right(self) -> float:
        return max(b.x + b.w / 2 for b in self.boxes.values())

    @property
    def left(self) -> float:
        return min(b.x - b.w / 2 for b in self.boxes.values())

    def lane_x(self, side: int, k: int) -> float:
        """The x of detour lane ``k`` on ``side`` (+1 right, -1 left)."""
        return (self.right if side > 0 else self.left) + side * (LANE + LANE_STEP * k)

    def outermost(self, n: str, side: int) -> bool:
        """Whether ``n`` is the last box of its row towards ``side``."""
        row = self.rows[self.row_of[n]]
        return n == (row[-1] if side > 0 else row[0])


@dataclass
class _Routes:
    """How each edge runs: straight down, or out to a lane beside the rows and back (a detour)."""

    straight: list[tuple[str, str]]
    detours: list[tuple[str, str, int]]  # (src, dst, side) side +1 right, -1 left
    lanes: dict[tuple[str, str], int]  # detour -> its lane on its side, 0 innermost
    taken: dict[tuple[int, int], list[tuple[int, int]]]  # (side, lane) -> the row spans it carries
    port_y: dict[tuple[str, str, str], float]  # (node, src, dst) -> y where the edge meets the node's side
    top_x: dict[tuple[str, str], float]  # (src, dst) -> x where the edge meets dst's top


def architecture_figure(graph: nx.DiGraph, label: Callable[[str], str], title: str = "") -> Figure:
    """The graph drawn top to bottom, one row per topological generation: one box per node with its
    name and ``label(node)`` (e.g. ``n2 attn-loc3/h2``), ``⊕ fusion`` on nodes with several inputs,
    arrows numbered by input slot when a node reads several. An arrow that would cross a box takes a
    lane beside the rows. Sized in points, so the text stays legible when the image is shrunk."""
    layout = _layout(graph, label)
    routes = _routes(layout)
    fig = Figure()
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    _draw_edges(ax, layout, routes)
    _draw_boxes(ax, layout)
    _frame(fig, ax, layout, routes, title)
    return fig


def _rows(graph: nx.DiGraph) -> tuple[list[list[str]], dict[str, float]]:
    """The nodes by topological generation, each row ordered by where its inputs sit (fewer crossings), then by
    name; and each node's column, centred on 0."""
    rows: list[list[str]] = []
    column: dict[str, float] = {}
    for layer in nx.topological_generations(graph):
        def key(n: str) -> tuple[float, int, str]:
            ins = inputs_of(graph, n)
            return (sum(column[s] for s in ins) / len(ins) if ins else 0.0, len(n), n)

        row = sorted(layer, key=key)
        for i, n in enumerate(row):
            column[n] = i - (len(row) - 1) / 2
        rows.append(row)
    return rows, column


def _layout(graph: nx.DiGraph, label: Callable[[str], str]) -> _Layout:
    """Every node's box: all as wide as the widest text, a fused node taller (its fusion on a second line)."""
    rows, column = _rows(graph)
    row_of = {n: r for r, row in enumerate(rows) for n in row}
    fused = {n for n in graph if len(inputs_of(graph, n)) > 1 and graph.nodes[n].get("fusion")}
    names = {n: (n, label(n)) for n in graph}
    box_w = _box_width(graph, names, fused)
    boxes: dict[str, _Box] = {}
    y = 0.0
    for r, row in enumerate(rows):
        row_h = max(LINE * (2.5 if n in fused else 1.6) for n in row)
        for n in row:
            h = LINE * (2.5 if n in fused else 1.6)
            boxes[n] = _Box(column[n] * (box_w + COL_GAP), y - row_h / 2, box_w, h, r)
        y -= row_h + ROW_GAP
    return _Layout(graph, rows, column, row_of, names, fused, boxes)


def _box_width(graph: nx.DiGraph, names: dict[str, tuple[str, str]], fused: set[str]) -> float:
    text_w = max(_width(name, FONT, "bold") + _width(" ", FONT) * 1.5 + _width(text, FONT) for name, text in names.values())
    text_w = max([text_w, *(_width(f"⊕ {graph.nodes[n]['fusion']}", SMALL) for n in fused)])
    return 1.08 * text_w + 2 * PAD  # some room for a wider fallback font in the browser


def _routes(layout: _Layout) -> _Routes:
    """Edges straight when nothing is in the way, else out of the box's side (or, for a node with a
    neighbour on that side, through the gap below/above its row) along a lane beside the rows."""
    straight, detours = _split_edges(layout)
    lanes, taken = _assign_lanes(layout, detours)
    port_y = _side_ports(layout, detours, lanes)
    top_x = _top_ports(layout, straight, detours)
    return _Routes(straight, detours, lanes, taken, port_y, top_x)


def _split_edges(layout: _Layout) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]]]:
    """``(straight edges, detours with their side)``, shortest edges first; a detour goes to the side its
    ends lean to, else to the side with fewer detours."""
    boxes, row_of, column = layout.boxes, layout.row_of, layout.column
    straight: list[tuple[str, str]] = []
    detours: list[tuple[str, str, int]] = []
    per_side = {1: 0, -1: 0}
    for src, dst in sorted(layout.graph.edges, key=lambda e: (row_of[e[1]] - row_of[e[0]], row_of[e[0]], column[e[0]])):
        a, b = boxes[src], boxes[dst]
        between = [x for x in boxes.values() if a.row < x.row < b.row]
        if not any(x.hit((a.x, a.bottom), (b.x, b.top)) for x in between):
            straight.append((src, dst))
            continue
        mid = a.x + b.x
        side = 1 if mid > 0 else -1 if mid < 0 else (1 if per_side[1] <= per_side[-1] else -1)
        per_side[side] += 1
        detours.append((src, dst, side))
    return straight, detours


def _assign_lanes(layout: _Layout, detours: list[tuple[str, str, int]]
                  ) -> tuple[dict[tuple[str, str], int], dict[tuple[int, int], list[tuple[int, int]]]]:
    """Each detour's lane: the innermost on its side whose row spans neither overlap nor share an end with it."""
    lanes: dict[tuple[str, str], int] = {}
    taken: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for src, dst, side in detours:  # shortest first: inner lanes
        span = (layout.row_of[src], layout.row_of[dst])
        k = 0
        while any(max(span[0], s0) < min(span[1], s1) or span[0] == s0 or span[1] == s1 for s0, s1 in taken.get((side, k), [])):
            k += 1
        taken.setdefault((side, k), []).append(span)
        lanes[src, dst] = k
    return lanes, taken


def _side_ports(layout: _Layout, detours: list[tuple[str, str, int]],
                lanes: dict[tuple[str, str], int]) -> dict[tuple[str, str, str], float]:
    """Where detours leave or enter the side of an outermost box: spread over its height, entries above exits."""
    side_ports: dict[tuple[str, int], list[tuple[int, int, str, str]]] = {}  # (order, lane, src, dst)
    for src, dst, side in detours:
        k = lanes[src, dst]
        if layout.outermost(src, side):
            side_ports.setdefault((src, side), []).append((1, -k, src, dst))
        if layout.outermost(dst, side):
            side_ports.setdefault((dst, side), []).append((0, k, src, dst))
    port_y: dict[tuple[str, str, str], float] = {}
    for (n, _), ports in side_ports.items():
        box = layout.boxes[n]
        for i, (_, _, src, dst) in enumerate(sorted(ports)):  # entries above exits
            port_y[n, src, dst] = box.y + (box.h * 0.25 * (1 - 2 * i / (len(ports) - 1)) if len(ports) > 1 else 0.0)
    return port_y


def _top_ports(layout: _Layout, straight: list[tuple[str, str]],
               detours: list[tuple[str, str, int]]) -> dict[tuple[str, str], float]:
    """Where edges enter the top of their destination: spread across it, ordered by where they come from, then slot."""
    top_ins: dict[str, list[str]] = {}
    for src, dst in straight:
        top_ins.setdefault(dst, []).append(src)
    for src, dst, side in detours:
        if not layout.outermost(dst, side):
            top_ins.setdefault(dst, []).append(src)
    top_x: dict[tuple[str, str], float] = {}
    for dst, srcs in top_ins.items():
        box = layout.boxes[dst]
        step = min(2.2 * FONT, 0.7 * box.w / max(1, len(srcs) - 1))
        srcs.sort(key=lambda s: (layout.boxes[s].x if (s, dst) in straight else layout.lane_x(
            next(sd for a, b, sd in detours if (a, b) == (s, dst)), 0), layout.graph.edges[s, dst]["slot"]))
        for i, s in enumerate(srcs):
            top_x[s, dst] = box.x + (i - (len(srcs) - 1) / 2) * step
    return top_x


def _draw_edges(ax: Axes, layout: _Layout, routes: _Routes) -> None:
    boxes = layout.boxes
    for src, dst in routes.straight:
        a, b = boxes[src], boxes[dst]
        _draw_arrow(ax, layout.graph, src, dst, [(a.x, a.bottom), (routes.top_x[src, dst], b.top)])
    for src, dst, side in routes.detours:
        _draw_arrow(ax, layout.graph, src, dst, _detour_points(layout, routes, src, dst, side))


def _detour_points(layout: _Layout, routes: _Routes, src: str, dst: str, side: int) -> list[tuple[float, float]]:
    """The detour's path: out of the source's side (or bottom), along its lane, into the destination's side (or top)."""
    a, b = layout.boxes[src], layout.boxes[dst]
    x_lane = layout.lane_x(side, routes.lanes[src, dst])
    jog = 0.3 * FONT * routes.lanes[src, dst]  # detours through the same gap keep apart
    if layout.outermost(src, side):
        y0 = routes.port_y[src, src, dst]
        points = [(a.x + side * a.w / 2, y0), (x_lane, y0)]
    else:
        y0 = a.bottom - ROW_GAP / 2 + jog
        points = [(a.x, a.bottom), (a.x, y0), (x_lane, y0)]
    if layout.outermost(dst, side):
        y1 = routes.port_y[dst, src, dst]
        points += [(x_lane, y1), (b.x + side * b.w / 2, y1)]
    else:
        y1 = b.top + ROW_GAP / 2 - jog
        points += [(x_lane, y1), (routes.top_x[src, dst], y1), (routes.top_x[src, dst], b.top)]
    return points


def _draw_arrow(ax: Axes, graph: nx.DiGraph, src: str, dst: str, points: list[tuple[float, float]]) -> None:
    """An arrow along ``points``; when ``dst`` reads several inputs, the slot number on its last stretch."""
    ax.add_patch(FancyArrowPatch(path=MplPath(points), arrowstyle="-|>", mutation_scale=13, color=EDGE,
                                 lw=1.2, joinstyle="round", capstyle="round", zorder=1))
    if len(inputs_of(graph, dst)) > 1:  # the slot number on the last stretch, just before the head
        (x0, y0), (x1, y1) = points[-2], points[-1]
        length = math.hypot(x1 - x0, y1 - y0) or 1.0
        rise = abs(y0 - y1)  # on a slanted arrow, keep the number clear of the box's top edge
        back = min(max(1.15 * FONT / length, 0.8 * FONT / rise if rise > 1 else 0.0), 0.5)
        ax.text(x1 + (x0 - x1) * back, y1 + (y0 - y1) * back, str(graph.edges[src, dst]["slot"]), fontsize=SMALL,
                ha="center", va="center", color=EDGE, zorder=3,
                bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none"})


def _draw_boxes(ax: Axes, layout: _Layout) -> None:
    """Each node's box, coloured by op (grey for input and output), with its bold name, label and fusion."""
    graph = layout.graph
    ops = sorted({graph.nodes[n].get("op", "") for n in graph if n not in (INPUT, OUTPUT)})
    for n, box in layout.boxes.items():
        attrs = graph.nodes[n]
        colour = "#9a9a9a" if n in (INPUT, OUTPUT) else _op_colour(attrs.get("op", ""), ops)
        ax.add_patch(FancyBboxPatch((box.x - box.w / 2, box.bottom), box.w, box.h, boxstyle="round,pad=0,rounding_size=4",
                                    fc=_tint(colour, 0.35), ec=colour, lw=1.4, zorder=2))
        name, text = layout.names[n]
        text_y = box.y + (0.5 * LINE if n in layout.fused else 0.0)
        wn, gap = _width(name, FONT, "bold"), 1.5 * _width(" ", FONT)
        x0 = box.x - (wn + gap + _width(text, FONT)) / 2
        ax.text(x0, text_y, name, fontsize=FONT, fontweight="bold", ha="left", va="center_baseline", zorder=3)
        ax.text(x0 + wn + gap, text_y, text, fontsize=FONT, ha="left", va="center_baseline", zorder=3)
        if n in layout.fused:
            ax.text(box.x, box.y - 0.55 * LINE, f"⊕ {attrs['fusion']}", fontsize=SMALL, ha="center", va="center_baseline",
                    color="#333333", zorder=3)


def _frame(fig: Figure, ax: Axes, layout: _Layout, routes: _Routes, title: str) -> None:
    """The title above the diagram (wrapped to its width, widening it only for a long word), the axes'
    limits around boxes, lanes and title, and the figure's size in points."""
    lanes_used = {side: max((k + 1 for (sd, k) in routes.taken if sd == side), default=0) for side in (1, -1)}
    x_max = layout.lane_x(1, lanes_used[1] - 1) + 0.3 * FONT if lanes_used[1] else layout.right
    x_min = layout.lane_x(-1, lanes_used[-1] - 1) - 0.3 * FONT if lanes_used[-1] else layout.left
    y_min = min(b.bottom for b in layout.boxes.values())
    y_max = 0.0
    if title:
        width = max(x_max - x_min, 16 * FONT)
        lines = _wrap(title, width, TITLE_FONT)
        title_w = max(_width(line, TITLE_FONT) for line in lines)
        if title_w > x_max - x_min:
            grow = (title_w - (x_max - x_min)) / 2
            x_min, x_max = x_min - grow, x_max + grow
        y_max = 0.6 * FONT + 1.3 * TITLE_FONT * len(lines)
        ax.text((x_min + x_max) / 2, y_max, "\n".join(lines), fontsize=TITLE_FONT, ha="center", va="top",
                linespacing=1.3, color="#222222")
    margin = 2.0
    ax.set_xlim(x_min - margin, x_max + margin)
    ax.set_ylim(y_min - margin, y_max + margin)
    fig.set_size_inches((x_max - x_min + 2 * margin) / 72, (y_max - y_min + 2 * margin) / 72)


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
