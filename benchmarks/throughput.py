"""Benchmark: training throughput of engine-built models against the same models written by hand (throughput parity).

For each shipped space (``search_spaces/vision.yaml``, ``sequence.yaml``, ``text.yaml``, ``timeseries.yaml``,
unchanged) two fixed architectures written out below (:data:`ARCHITECTURES`, each checked to lie within
its space's vocabulary: stem, width, node count, lookback, in-degree, ops and their settings, fusions)
are built twice:

* engine arm: ``iasf_search.build_model(graph, session.components, sample_shape, num_classes)`` on the
  space's real task, loaded as a search loads it (:func:`iasf_search.search.setup.load_task`), and trained by
  ``iasf_search.train.train(model, data, config, device=..., seed=..., validate=False)`` exactly as a
  trial trains: ``config`` is the space's training settings (every fixed value as written, ``lr`` fixed
  at :data:`LR`, ``augment`` off), with the architecture's own epoch count, sized so that a run takes
  2-3 s on one core of the 2-core CPU machine, and ``min_steps`` 0 (its default, 200 steps, would make
  every run at least 200 steps long; it only adds steps to an epoch and changes nothing in a step).
* hand arm: a plain ``nn.Module`` per architecture whose ``forward`` is straight-line code over a few
  hand-written blocks (:class:`HandGridStem`, :class:`HandTextStem`, :class:`HandAttention`,
  :class:`HandConv`, :class:`HandMLP`): no graph walking, no dict of node outputs, no shape checks;
  trained by :func:`train_hand`, the loop a user would write: AdamW with the engine's two parameter
  groups (decay on ``p.dim() >= 2`` except tables with a leading 1, such as a learned position table,
  as ``make_optimizer`` decides), the same ``LambdaLR`` warm-up + cosine formula, the same batches (a
  CPU ``torch.Generator`` seeded alike, ``torch.randperm(n, generator=g).split(batch)``, as many
  steps per epoch as :func:`~iasf_search.train.steps_per_epoch` gives), cross-entropy with the same
  label smoothing, the same gradient clipping, bf16 autocast and fused AdamW on CUDA only.

The hand-written modules compute what the plugins compute, written as a user would write it. Where
the engine's generic code does more work for the same values, the hand-written code does the plain
thing, and this difference is part of what is measured: the text stem looks ids up directly (the
plugin takes them modulo the table size, a no-op for this dataset's ids), and the loop does not
check the loss for NaN (the engine does). (This benchmark's first profile found two more, since
fixed in the plugins: the ``sum`` fusion stacked its inputs before summing, and the grid stems
called ``F.pad`` when there was nothing to pad.) The stems hold their weights themselves (``F.conv1d``/``F.conv2d``,
``F.embedding``) so that the hand-written model lists its parameters in the engine model's order:
gradient clipping adds the parameters' norms in that order, and another order changes the last bits
of the clipped gradients, which a hundred AdamW steps grow past 1e-4.

The architectures use only attention (``full`` and ``local`` patterns), ``conv``, ``mlp``, the ``sum``
and ``concat`` fusions, the default ``layer`` norm and ``mean`` readout; ``topk`` attention,
``gated``/``beta_softmax`` fusions, ``pool`` and ``identity`` are left out for brevity (none of them is
hard to copy).

Same initialisation and same work, checked before anything is timed: the engine model is built under
``torch.manual_seed(--seed)``, its parameters and buffers are copied into the hand-written one in
order, each pair's shape checked; both must give the same logits in eval mode on a training batch
(max abs difference below 1e-5); after the untimed warm-up run of each arm (same initial weights,
same batches) their trained parameters must agree (max abs difference below 1e-4 on the CPU, where
training is exact; on CUDA, bf16 and other kernels, only reported).

Timing: per architecture, one untimed warm-up run of each arm, then ``--repeats`` rounds with the arms
interleaved (engine, hand; hand, engine; ...), each run timed with ``time.perf_counter`` (after
``torch.cuda.synchronize`` on CUDA) from the call that starts training to its return, optimiser set-up
included in both arms. Reported per architecture: the median samples/s of each arm, engine/hand (the
ratio of the medians), the min-max of the per-round ratios, and the fastest engine round over the
fastest hand-written round (each arm when nothing else interfered: on a shared 2-core machine a
round's ratio moves by up to ±10%); overall the geometric mean of the ratios of medians, against the
target of at least :data:`TARGET` on the CPU, and of the fastest-round ratios. ``--profile`` then runs
``torch.profiler`` on :data:`PROFILE_STEPS` steps of each arm of each architecture and prints the
engine's top ops by self CPU time; then what the engine does more of than the hand-written code:
``nn.Module`` calls per forward pass, the time of a one-sample forward pass (the fixed cost that does
not shrink with the batch), and the ops it calls more often, then those it spends more self CPU time
in (differences of a few percent in time are noise on a shared machine; call counts are exact).

    python benchmarks/throughput.py [--device cpu|cuda] [--threads 1] [--repeats 5] [--seed 0]
                                    [--spaces vision sequence text timeseries] [--quick] [--profile]
                                    [--json runs/throughput.json] [--out-md runs/throughput.md]

``--quick`` (CI smoke run, well under a minute): the first architecture of each space, 1 epoch
(one pass over the training split), 1 round. ``--threads`` defaults to 1, the thread count of a
search's worker process (``IASF_SEARCH_THREADS``, :mod:`iasf_search.search.workers`).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

import iasf_search
from iasf_search import graph as arch
from iasf_search.components import TaskData
from iasf_search.graph import INPUT, OUTPUT
from iasf_search.search.setup import load_task
from iasf_search.session import Session, open_session
from iasf_search.space import SearchSpace
from iasf_search.train import resolve_device, steps_per_epoch, train

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.97
"""The issue's target for engine / hand-written samples/s on the CPU."""
LR = 2.0e-3
"""The fixed learning rate (inside every shipped space's range)."""
LOGITS_TOLERANCE = 1e-5
"""Max abs difference of the two models' eval-mode logits before training."""
TRAINED_TOLERANCE = 1e-4
"""Max abs difference of the trained parameters after the warm-up runs (CPU; only reported on CUDA)."""
PROFILE_STEPS = 8
"""Optimiser steps profiled per arm with ``--profile``."""
PROFILE_ROWS = 15
"""Ops listed per table with ``--profile``."""


# -- the architectures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A hidden node: ``op`` with ``config`` reading ``inputs`` (slot order), fused by ``fusion`` when several."""

    name: str
    op: str
    config: Mapping[str, Any]
    inputs: tuple[str, ...]
    fusion: str | None = None


@dataclass(frozen=True)
class Architecture:
    """A fixed architecture of a shipped space and its hand-written twin."""

    name: str
    space: str
    width: int
    stem: Mapping[str, Any]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    """The nodes the output reads (every node no other node reads)."""
    hand: Callable[[int], nn.Module]
    """``hand(num_classes)``: the hand-written module."""
    epochs: int
    """Training epochs of a timed run (sized for 2-3 s on one CPU core)."""
    out_fusion: str | None = None

    def graph(self, modality: str) -> nx.DiGraph:
        """The architecture graph, through the engine's JSON form (validated as a stored trial's is)."""
        g = nx.DiGraph(width=self.width)
        g.add_node(INPUT, role="input", op=modality, config=dict(self.stem))
        for node in self.nodes:
            attrs: dict[str, Any] = {"role": "node", "op": node.op, "config": dict(node.config)}
            if len(node.inputs) > 1:
                attrs.update(fusion=node.fusion, fusion_config={})
            g.add_node(node.name, **attrs)
            for slot, src in enumerate(node.inputs):
                g.add_edge(src, node.name, slot=slot)
        out: dict[str, Any] = {"role": "output"}
        if len(self.outputs) > 1:
            out.update(fusion=self.out_fusion, fusion_config={})
        g.add_node(OUTPUT, **out)
        for slot, src in enumerate(self.outputs):
            g.add_edge(src, OUTPUT, slot=slot)
        return arch.from_json(arch.to_json(g))


def check_in_space(a: Architecture, graph: nx.DiGraph, space: SearchSpace) -> None:
    """Raise ``ValueError`` unless ``graph`` is one that ``space`` can sample (its vocabulary and wiring rules)."""
    problems = []

    def allowed(rng: Any, value: Any, what: str) -> None:
        values = rng.values()
        if values is not None and value not in values:
            problems.append(f"{what}={value!r} not in {values}")

    allowed(space.width, a.width, "width")
    allowed(space.nodes, len(a.nodes), "nodes")
    for key, value in a.stem.items():
        allowed(space.stem[key], value, f"stem.{key}")
    earlier = [INPUT]
    for node in a.nodes:
        if node.op not in space.ops:
            problems.append(f"{node.name}: op {node.op} not in {sorted(space.ops)}")
        else:
            for key, value in node.config.items():
                allowed(space.ops[node.op][key], value, f"{node.name}.{node.op}.{key}")
        reachable = earlier[-space.lookback:] if space.lookback else earlier
        if not set(node.inputs) <= set(reachable) or len(node.inputs) > space.max_in_degree:
            problems.append(f"{node.name}: inputs {node.inputs} outside lookback {reachable} or over in-degree {space.max_in_degree}")
        if len(node.inputs) > 1 and node.fusion not in space.fusions:
            problems.append(f"{node.name}: fusion {node.fusion} not in {sorted(space.fusions)}")
        earlier.append(node.name)
    sinks = [n for n in graph if n not in (INPUT, OUTPUT) and set(graph.successors(n)) <= {OUTPUT}]
    if sorted(sinks) != sorted(a.outputs):
        problems.append(f"the output reads {a.outputs}, the sinks are {sinks}")
    if len(a.outputs) > 1 and a.out_fusion not in space.fusions:
        problems.append(f"output fusion {a.out_fusion} not in {sorted(space.fusions)}")
    if "layer" not in space.norms or "mean" not in space.readouts:  # the hand-written models use both
        problems.append("the space offers no layer norm or no mean readout")
    if problems:
        raise ValueError(f"{a.name} is not in {space.name}'s space: " + "; ".join(problems))


# -- hand-written blocks ---------------------------------------------------------------------------


class HandGridStem(nn.Module):
    """Patch embedding by a strided, overlapping convolution (kernel ``patch + 2``, padding 1) plus a position
    table: images (B, C, H, W) or sequences (B, T, F) -> (B, T, D). ``position``: ``learned`` (a parameter)
    or ``sinusoidal`` (a fixed buffer, copied from the engine model)."""

    def __init__(self, axes: int, channels: int, width: int, patch: int, tokens: int, position: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(width, channels, *(patch + 2,) * axes))
        self.bias = nn.Parameter(torch.empty(width))
        if position == "learned":
            self.pos = nn.Parameter(torch.zeros(1, tokens, width))
        else:
            self.register_buffer("pos", torch.zeros(1, tokens, width), persistent=False)
        self.conv, self.patch, self.channels_last = (F.conv1d if axes == 1 else F.conv2d), patch, axes == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:  # (B, T, F) -> (B, F, T)
            x = x.transpose(1, 2)
        return self.conv(x, self.weight, self.bias, stride=self.patch, padding=1).flatten(2).transpose(1, 2) + self.pos


class HandTextStem(nn.Module):
    """Token embedding (id 0 pads) plus an optional learned position table: (B, T) ids -> (B, T, D)."""

    def __init__(self, vocabulary: int, width: int, tokens: int, learned_position: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocabulary, width))
        self.pos = nn.Parameter(torch.zeros(1, tokens, width)) if learned_position else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = F.embedding(x, self.weight, padding_idx=0)
        return tokens if self.pos is None else tokens + self.pos


class HandAttention(nn.Module):
    """Multi-head self-attention; ``masked``: a fixed boolean (T, T) mask (a local window, copied from the engine model)."""

    def __init__(self, width: int, heads: int, tokens: int, masked: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        if masked:
            self.register_buffer("mask", torch.zeros(tokens, tokens, dtype=torch.bool), persistent=False)
        else:
            self.mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class HandConv(nn.Module):
    """Depthwise convolution over the token grid, GELU, pointwise linear."""

    def __init__(self, width: int, grid: tuple[int, ...], kernel: int, dilation: int = 1) -> None:
        super().__init__()
        conv = nn.Conv1d if len(grid) == 1 else nn.Conv2d
        self.grid = grid
        self.depthwise = conv(width, width, kernel, padding="same", dilation=dilation, groups=width)
        self.pointwise = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        y = self.depthwise(x.transpose(1, 2).reshape(B, D, *self.grid)).reshape(B, D, T).transpose(1, 2)
        return self.pointwise(F.gelu(y))


class HandMLP(nn.Module):
    """Per-token feed-forward D -> expansion * D -> D."""

    def __init__(self, width: int, expansion: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, expansion * width)
        self.fc2 = nn.Linear(expansion * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Head(nn.Module):
    """Final LayerNorm, mean over tokens, linear classifier."""

    def __init__(self, width: int, classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x).mean(dim=1))


# -- hand-written architectures (attributes in the engine's parameter order: stem, then per node its
# -- fusion, norm and op, then the output's fusion, the final norm and the head) ----------------------


class SumSkipChain(nn.Module):
    """stem > op0 > op1 > mlp, the mlp reading op1's and op0's outputs summed (every node residual)."""

    def __init__(self, stem: nn.Module, op0: nn.Module, op1: nn.Module, mlp: nn.Module, width: int, classes: int) -> None:
        super().__init__()
        self.stem = stem
        self.norm0, self.op0 = nn.LayerNorm(width), op0
        self.norm1, self.op1 = nn.LayerNorm(width), op1
        self.norm2, self.mlp = nn.LayerNorm(width), mlp
        self.head = Head(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.stem(x)
        x1 = x0 + self.op0(self.norm0(x0))
        x2 = x1 + self.op1(self.norm1(x1))
        x3 = x2 + x1
        x3 = x3 + self.mlp(self.norm2(x3))
        return self.head(x3)


class ConcatSkipChain(nn.Module):
    """stem > op0 > op1 > op2, op2 reading op1's output and the stem's tokens concatenated and projected."""

    def __init__(self, stem: nn.Module, op0: nn.Module, op1: nn.Module, op2: nn.Module, width: int, classes: int) -> None:
        super().__init__()
        self.stem = stem
        self.norm0, self.op0 = nn.LayerNorm(width), op0
        self.norm1, self.op1 = nn.LayerNorm(width), op1
        self.cat2, self.norm2, self.op2 = nn.Linear(2 * width, width), nn.LayerNorm(width), op2
        self.head = Head(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.stem(x)
        x1 = x0 + self.op0(self.norm0(x0))
        x2 = x1 + self.op1(self.norm1(x1))
        x3 = self.cat2(torch.cat([x2, x0], dim=-1))
        x3 = x3 + self.op2(self.norm2(x3))
        return self.head(x3)


def vision_a(classes: int) -> nn.Module:
    """8x8 digits, width 32, learned positions: conv3 > attn-full/h4 > mlp2 <- (attn, conv) summed."""
    return SumSkipChain(HandGridStem(2, 1, 32, 1, 64, "learned"), HandConv(32, (8, 8), 3), HandAttention(32, 4, 64),
                        HandMLP(32, 2), 32, classes)


def vision_b(classes: int) -> nn.Module:
    """8x8 digits, width 32, sinusoidal positions: attn-local3/h2 > mlp3 > conv5 <- (mlp, stem) concatenated."""
    return ConcatSkipChain(HandGridStem(2, 1, 32, 1, 64, "sinusoidal"), HandAttention(32, 2, 64, masked=True),
                           HandMLP(32, 3), HandConv(32, (8, 8), 5), 32, classes)


def sequence_a(classes: int) -> nn.Module:
    """MNIST-1D (40 steps), patch 2 (20 tokens), width 64, learned positions:
    attn-local5/h4 > conv5d2 > mlp4 <- (conv, attn) summed."""
    return SumSkipChain(HandGridStem(1, 1, 64, 2, 20, "learned"), HandAttention(64, 4, 20, masked=True),
                        HandConv(64, (20,), 5, dilation=2), HandMLP(64, 4), 64, classes)


def sequence_b(classes: int) -> nn.Module:
    """MNIST-1D (40 steps), patch 1, width 32, sinusoidal positions: conv7 > attn-full/h2 > mlp2 <- (attn, stem) concatenated."""
    return ConcatSkipChain(HandGridStem(1, 1, 32, 1, 40, "sinusoidal"), HandConv(32, (40,), 7), HandAttention(32, 2, 40),
                           HandMLP(32, 2), 32, classes)


def timeseries_a(classes: int) -> nn.Module:
    """64-step series, patch 2 (32 tokens), width 32, learned positions: conv5d2 > attn-local5/h2 > mlp2 <- (attn, conv) summed."""
    return SumSkipChain(HandGridStem(1, 1, 32, 2, 32, "learned"), HandConv(32, (32,), 5, dilation=2),
                        HandAttention(32, 2, 32, masked=True), HandMLP(32, 2), 32, classes)


class TextA(nn.Module):
    """Word ids (24 tokens), width 64, learned positions: attn-full/h4 > mlp2 <- (attn, stem) summed."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        D, T = 64, 24
        self.stem = HandTextStem(2048, D, T, learned_position=True)
        self.norm0, self.attn0 = nn.LayerNorm(D), HandAttention(D, 4, T)
        self.norm1, self.mlp1 = nn.LayerNorm(D), HandMLP(D, 2)
        self.head = Head(D, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.stem(x)
        x1 = x0 + self.attn0(self.norm0(x0))
        x2 = x1 + x0
        x2 = x2 + self.mlp1(self.norm1(x2))
        return self.head(x2)


class TextB(nn.Module):
    """Word ids (24 tokens), width 32, no positions: conv3 > attn-local5/h2 <- (conv, stem) concatenated > mlp2."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        D, T = 32, 24
        self.stem = HandTextStem(2048, D, T, learned_position=False)
        self.norm0, self.conv0 = nn.LayerNorm(D), HandConv(D, (T,), 3)
        self.cat1, self.norm1, self.attn1 = nn.Linear(2 * D, D), nn.LayerNorm(D), HandAttention(D, 2, T, masked=True)
        self.norm2, self.mlp2 = nn.LayerNorm(D), HandMLP(D, 2)
        self.head = Head(D, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.stem(x)
        x1 = x0 + self.conv0(self.norm0(x0))
        x2 = self.cat1(torch.cat([x1, x0], dim=-1))
        x2 = x2 + self.attn1(self.norm1(x2))
        x3 = x2 + self.mlp2(self.norm2(x2))
        return self.head(x3)


class TimeseriesB(nn.Module):
    """64-step series, patch 4 (16 tokens), width 64, sinusoidal positions: two branches from the stem,
    conv3 and attn-full/h4 > mlp2, concatenated at the output."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        D, T = 64, 16
        self.stem = HandGridStem(1, 1, D, 4, T, "sinusoidal")
        self.norm0, self.conv0 = nn.LayerNorm(D), HandConv(D, (T,), 3)
        self.norm1, self.attn1 = nn.LayerNorm(D), HandAttention(D, 4, T)
        self.norm2, self.mlp2 = nn.LayerNorm(D), HandMLP(D, 2)
        self.cat_out = nn.Linear(2 * D, D)
        self.head = Head(D, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.stem(x)
        x1 = x0 + self.conv0(self.norm0(x0))
        x2 = x0 + self.attn1(self.norm1(x0))
        x3 = x2 + self.mlp2(self.norm2(x2))
        return self.head(self.cat_out(torch.cat([x1, x3], dim=-1)))


def _attn(heads: int, pattern: str = "full", window: int | None = None) -> dict[str, Any]:
    return {"heads": heads, "pattern": pattern, **({"window": window} if window is not None else {})}


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("vision-a", "vision", 32, {"patch": 1, "overlap": True, "position": "learned"},
                 (Node("n0", "conv", {"kernel": 3, "dilation": 1}, (INPUT,)),
                  Node("n1", "attention", _attn(4), ("n0",)),
                  Node("n2", "mlp", {"expansion": 2}, ("n1", "n0"), "sum")),
                 ("n2",), vision_a, epochs=6),
    Architecture("vision-b", "vision", 32, {"patch": 1, "overlap": True, "position": "sinusoidal"},
                 (Node("n0", "attention", _attn(2, "local", 3), (INPUT,)),
                  Node("n1", "mlp", {"expansion": 3}, ("n0",)),
                  Node("n2", "conv", {"kernel": 5, "dilation": 1}, ("n1", INPUT), "concat")),
                 ("n2",), vision_b, epochs=6),
    Architecture("sequence-a", "sequence", 64, {"patch": 2, "overlap": True, "position": "learned"},
                 (Node("n0", "attention", _attn(4, "local", 5), (INPUT,)),
                  Node("n1", "conv", {"kernel": 5, "dilation": 2}, ("n0",)),
                  Node("n2", "mlp", {"expansion": 4}, ("n1", "n0"), "sum")),
                 ("n2",), sequence_a, epochs=3),
    Architecture("sequence-b", "sequence", 32, {"patch": 1, "overlap": True, "position": "sinusoidal"},
                 (Node("n0", "conv", {"kernel": 7, "dilation": 1}, (INPUT,)),
                  Node("n1", "attention", _attn(2), ("n0",)),
                  Node("n2", "mlp", {"expansion": 2}, ("n1", INPUT), "concat")),
                 ("n2",), sequence_b, epochs=4),
    Architecture("text-a", "text", 64, {"vocabulary": 2048, "position": "learned"},
                 (Node("n0", "attention", _attn(4), (INPUT,)),
                  Node("n1", "mlp", {"expansion": 2}, ("n0", INPUT), "sum")),
                 ("n1",), TextA, epochs=8),
    Architecture("text-b", "text", 32, {"vocabulary": 2048, "position": "none"},
                 (Node("n0", "conv", {"kernel": 3, "dilation": 1}, (INPUT,)),
                  Node("n1", "attention", _attn(2, "local", 5), ("n0", INPUT), "concat"),
                  Node("n2", "mlp", {"expansion": 2}, ("n1",))),
                 ("n2",), TextB, epochs=8),
    Architecture("timeseries-a", "timeseries", 32, {"patch": 2, "overlap": True, "position": "learned"},
                 (Node("n0", "conv", {"kernel": 5, "dilation": 2}, (INPUT,)),
                  Node("n1", "attention", _attn(2, "local", 5), ("n0",)),
                  Node("n2", "mlp", {"expansion": 2}, ("n1", "n0"), "sum")),
                 ("n2",), timeseries_a, epochs=8),
    Architecture("timeseries-b", "timeseries", 64, {"patch": 4, "overlap": True, "position": "sinusoidal"},
                 (Node("n0", "conv", {"kernel": 3, "dilation": 1}, (INPUT,)),
                  Node("n1", "attention", _attn(4), (INPUT,)),
                  Node("n2", "mlp", {"expansion": 2}, ("n1",))),
                 ("n0", "n2"), TimeseriesB, epochs=8, out_fusion="concat"),
)
SPACES = ("vision", "sequence", "text", "timeseries")


# -- weights -------------------------------------------------------------------------------------------


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy ``src``'s parameters, then its buffers, into ``dst``'s, paired in registration order (each pair
    must have the same shape and dtype)."""
    for kind in ("parameters", "buffers"):
        a, b = list(getattr(src, f"named_{kind}")()), list(getattr(dst, f"named_{kind}")())
        if len(a) != len(b):
            raise AssertionError(f"{len(a)} engine {kind} but {len(b)} hand-written ones:\n  {[n for n, _ in a]}\n  {[n for n, _ in b]}")
        with torch.no_grad():
            for (na, ta), (nb, tb) in zip(a, b, strict=True):
                if ta.shape != tb.shape or ta.dtype != tb.dtype:
                    raise AssertionError(f"engine {na} {tuple(ta.shape)} {ta.dtype} vs hand-written {nb} {tuple(tb.shape)} {tb.dtype}")
                tb.copy_(ta)


def max_difference(a: nn.Module, b: nn.Module) -> float:
    """Max abs difference between the two modules' parameters, paired in order."""
    with torch.no_grad():
        return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True))


# -- the two training loops ------------------------------------------------------------------------------


def train_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: Mapping[str, Any], device: torch.device,
               seed: int) -> int:
    """A plain training loop with the engine's settings (see the module docstring); returns the samples seen."""
    cuda = device.type == "cuda"
    model.to(device)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2 and p.shape[0] != 1]
    no_decay = [p for p in model.parameters() if not (p.dim() >= 2 and p.shape[0] != 1)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config["lr"], fused=True if cuda else None)
    n, epochs = len(x), config["epochs"]
    bs, steps = steps_per_epoch(n, config)
    total, warm = epochs * steps, max(1, int(config["warmup"] * epochs * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    generator = torch.Generator().manual_seed(seed)
    smoothing, clip = config["label_smoothing"], config["grad_clip"]
    seen = 0
    for _ in range(epochs):
        batches: list[torch.Tensor] = []
        while len(batches) < steps:
            batches += torch.randperm(n, generator=generator).to(device).split(bs)
        for idx in batches[:steps]:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext():
                loss = F.cross_entropy(model(x[idx]), y[idx], label_smoothing=smoothing)
            loss.backward()
            if clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            schedule.step()
            seen += len(idx)
    return seen


def samples_per_run(n: int, config: Mapping[str, Any]) -> int:
    """Samples one run trains on: ``epochs`` times the first ``steps`` batches of shuffled passes."""
    bs, steps = steps_per_epoch(n, config)
    per_pass = [min(bs, n - i) for i in range(0, n, bs)]
    passes = -(-steps // len(per_pass))
    return config["epochs"] * sum((per_pass * passes)[:steps])


def training_config(space: SearchSpace, epochs: int, quick: bool) -> dict[str, Any]:
    """The space's training settings: fixed values as written, the first of any list, ``lr`` = :data:`LR`,
    ``augment`` off, ``epochs`` given (``--quick``: 1), ``min_steps`` 0 (so that ``epochs`` alone sizes a run)."""
    config: dict[str, Any] = {}
    for key, rng in space.training.items():
        values = rng.values()
        config[key] = values[0] if values else rng.low
    config.update(lr=LR, augment=False, epochs=1 if quick else epochs, min_steps=0)
    if config["optimizer"] != "adamw" or config.get("schedule", "cosine") != "cosine" or config.get("compile"):
        raise SystemExit(f"{space.name}: the hand-written loop is AdamW + warm-up/cosine without compile; "
                         f"the space trains with {config['optimizer']}/{config.get('schedule')}")
    return config


# -- one architecture ----------------------------------------------------------------------------------------


@dataclass
class Measured:
    name: str
    space: str
    summary: str
    params: int
    steps: int
    samples: int
    logits_difference: float
    trained_difference: float
    engine: list[float] = field(default_factory=list)
    """samples/s of each timed engine run, by round."""
    hand: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [e / h for e, h in zip(self.engine, self.hand, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.engine) / statistics.median(self.hand)

    @property
    def best_ratio(self) -> float:
        """Fastest engine round over fastest hand-written round: each arm when nothing else interfered."""
        return max(self.engine) / max(self.hand)

    def row(self) -> dict[str, Any]:
        return {"architecture": self.name, "space": self.space, "summary": self.summary, "params": self.params,
                "steps": self.steps, "samples_per_run": self.samples, "logits_max_abs_difference": self.logits_difference,
                "trained_max_abs_difference": self.trained_difference, "engine_samples_per_s": self.engine,
                "hand_samples_per_s": self.hand,
                **({"engine_median": statistics.median(self.engine), "hand_median": statistics.median(self.hand),
                    "ratio": self.ratio, "ratio_min": min(self.ratios), "ratio_max": max(self.ratios),
                    "best_ratio": self.best_ratio} if self.engine else {})}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Pair:
    """An architecture's engine model and hand-written twin, same initial weights, on ``device``."""

    def __init__(self, a: Architecture, session: Session, data: TaskData, device: torch.device, seed: int) -> None:
        graph = a.graph(session.space.modality)
        check_in_space(a, graph, session.space)
        self.summary = arch.summary(graph, lambda op, cfg: session.components.ops.get(op).describe(cfg))
        torch.manual_seed(seed)  # the initial weights of a search's trial
        self.engine = iasf_search.build_model(graph, session.components, data.sample_shape, data.num_classes).to(device)
        self.hand = a.hand(data.num_classes)
        copy_weights(self.engine, self.hand)
        self.hand.to(device)
        self.engine_init = copy.deepcopy(self.engine.state_dict())
        self.hand_init = copy.deepcopy(self.hand.state_dict())
        self.data, self.device, self.seed = data, device, seed
        self.seen = 0
        """Samples the last hand-written run trained on."""

    def logits_difference(self) -> float:
        """Max abs difference of the two models' eval-mode logits on a training batch (float32, no autocast)."""
        self.engine.eval()
        self.hand.eval()
        precision, cudnn_tf32 = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
        torch.set_float32_matmul_precision("highest")  # no TF32 on CUDA (train() may have allowed it)
        torch.backends.cudnn.allow_tf32 = False
        try:
            with torch.no_grad():
                xb = self.data.x_train[:256]
                difference = float((self.engine(xb) - self.hand(xb)).abs().max())
        finally:
            torch.set_float32_matmul_precision(precision)
            torch.backends.cudnn.allow_tf32 = cudnn_tf32
        self.engine.train()
        self.hand.train()
        return difference

    def run_engine(self, config: Mapping[str, Any], data: TaskData | None = None) -> float:
        """Seconds for one engine run from the initial weights."""
        self.engine.load_state_dict(self.engine_init)
        sync(self.device)
        start = time.perf_counter()
        train(self.engine, data or self.data, config, device=self.device, seed=self.seed, validate=False)
        sync(self.device)
        return time.perf_counter() - start

    def run_hand(self, config: Mapping[str, Any], data: TaskData | None = None) -> float:
        """Seconds for one hand-written run from the initial weights."""
        data = data or self.data
        self.hand.load_state_dict(self.hand_init)
        sync(self.device)
        start = time.perf_counter()
        self.seen = train_hand(self.hand, data.x_train, data.y_train, config, self.device, self.seed)
        sync(self.device)
        return time.perf_counter() - start


def measure(a: Architecture, session: Session, data: TaskData, args: argparse.Namespace, device: torch.device,
            profiles: list[str]) -> Measured:
    pair = Pair(a, session, data, device, args.seed)
    config = training_config(session.space, a.epochs, args.quick)
    n = len(data.x_train)
    samples = samples_per_run(n, config)
    m = Measured(a.name, a.space, pair.summary, sum(p.numel() for p in pair.engine.parameters()),
                 config["epochs"] * steps_per_epoch(n, config)[1], samples, pair.logits_difference(), math.nan)
    if not m.logits_difference < LOGITS_TOLERANCE:
        raise SystemExit(f"{a.name}: engine and hand-written logits differ by {m.logits_difference:.2e} (> {LOGITS_TOLERANCE})")
    pair.run_engine(config)  # warm-up, untimed; both from the same weights on the same batches
    pair.run_hand(config)
    if pair.seen != samples:
        raise AssertionError(f"{a.name}: the hand loop trained on {pair.seen} samples, {samples} expected")
    m.trained_difference = max_difference(pair.engine, pair.hand)
    if device.type == "cpu" and not m.trained_difference < TRAINED_TOLERANCE:
        raise SystemExit(f"{a.name}: after training, engine and hand-written parameters differ by {m.trained_difference:.2e} "
                         f"(> {TRAINED_TOLERANCE}): the arms did not do the same work")
    for r in range(args.repeats):
        order = ("engine", "hand") if r % 2 == 0 else ("hand", "engine")
        seconds = {arm: (pair.run_engine if arm == "engine" else pair.run_hand)(config) for arm in order}
        m.engine.append(samples / seconds["engine"])
        m.hand.append(samples / seconds["hand"])
    if args.profile:
        profiles.append(profile(pair, a.name, config, device))
    return m


# -- profile -------------------------------------------------------------------------------------------------


def module_calls(model: nn.Module, x: torch.Tensor) -> int:
    """How many ``nn.Module`` calls one forward pass of ``model`` on ``x`` makes (each costs Python time)."""
    count = 0

    def hook(module: nn.Module, args: Any) -> None:
        nonlocal count
        count += 1

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return count


def forward_microseconds(models: Mapping[str, nn.Module], x: torch.Tensor, device: torch.device, calls: int = 100,
                         rounds: int = 7) -> dict[str, float]:
    """Median microseconds of one no-grad forward pass of each model on ``x`` (interleaved rounds): on one
    sample, the fixed cost of a forward pass (Python and op dispatch), which does not shrink with the batch."""
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for r in range(rounds + 1):
            for k, model in (list(models.items()) if r % 2 else list(models.items())[::-1]):
                sync(device)
                start = time.perf_counter()
                for _ in range(calls):
                    model(x)
                sync(device)
                if r:  # round 0 warms up
                    times[k].append((time.perf_counter() - start) / calls * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def profile(pair: Pair, name: str, config: Mapping[str, Any], device: torch.device) -> str:
    """Both arms under ``torch.profiler`` for :data:`PROFILE_STEPS` steps (1 epoch of a training split cut to
    that many batches): the engine's top ops by self CPU time, then what the engine does more of: module
    calls per forward pass, the fixed cost of a forward pass, and the ops it calls more often or spends
    more self CPU time in than the hand loop (time differences of a few percent are noise on a shared machine)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    bs = steps_per_epoch(len(pair.data.x_train), config)[0]
    cut = replace(pair.data, x_train=pair.data.x_train[: bs * PROFILE_STEPS], y_train=pair.data.y_train[: bs * PROFILE_STEPS])
    short = {**config, "epochs": 1, "min_steps": 0}
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    totals: dict[str, dict[str, tuple[float, int]]] = {}
    wall: dict[str, float] = {}
    table = ""
    for arm, run in (("engine", pair.run_engine), ("hand", pair.run_hand)):
        run(short, cut)  # warm-up
        with torch_profile(activities=activities) as prof:
            wall[arm] = run(short, cut)
        events = prof.key_averages()
        totals[arm] = {e.key: (e.self_cpu_time_total, e.count) for e in events}
        if arm == "engine":
            table = events.table(sort_by="self_cpu_time_total", row_limit=PROFILE_ROWS)
    engine, hand = totals["engine"], totals["hand"]
    one = pair.data.x_train[:1]
    calls = {arm: module_calls(model, one) for arm, model in (("engine", pair.engine), ("hand", pair.hand))}
    micro = forward_microseconds({"engine": pair.engine, "hand": pair.hand}, one, device)

    def extra(key: str) -> tuple[int, float]:
        (te, ce), (th, ch) = engine.get(key, (0, 0)), hand.get(key, (0, 0))
        return ce - ch, te - th

    keys = [k for k in set(engine) | set(hand) if extra(k)[0] > 0 or extra(k)[1] > 0]
    keys.sort(key=lambda k: (extra(k)[0] <= 0, -extra(k)[1]))  # ops called more often first, then by extra time
    lines = [f"## {name}: engine arm, {PROFILE_STEPS} steps of {bs}, top {PROFILE_ROWS} ops by self CPU time "
             f"(wall under the profiler: engine {wall['engine'] * 1e3:.0f} ms, hand {wall['hand'] * 1e3:.0f} ms)", table,
             f"{name}: module calls per forward pass: engine {calls['engine']}, hand {calls['hand']}; one-sample forward "
             f"pass (no grad): engine {micro['engine']:.0f} us, hand {micro['hand']:.0f} us "
             f"(engine {micro['engine'] - micro['hand']:+.0f} us per forward pass)",
             f"{name}: ops the engine arm calls more often, then ops it spends more self CPU time in ({PROFILE_STEPS} steps)",
             f"{'op':<52} {'engine us':>10} {'hand us':>10} {'extra us':>9} {'engine calls':>13} {'hand calls':>11}"]
    for key in keys[:PROFILE_ROWS]:
        (te, ce), (th, ch) = engine.get(key, (0, 0)), hand.get(key, (0, 0))
        lines.append(f"{key[:52]:<52} {te:>10.0f} {th:>10.0f} {te - th:>9.0f} {ce:>13} {ch:>11}")
    return "\n".join(lines)


# -- report -------------------------------------------------------------------------------------------------------


def geometric_mean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def table(rows: Sequence[Measured], device: torch.device) -> str:
    """Markdown table, one row per architecture, then the overall geometric mean."""
    lines = ["| architecture | summary | params | steps (samples) per run | s per run | engine samples/s | hand samples/s | "
             "engine/hand | min-max of rounds | fastest / fastest | max abs diff: logits, trained |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in rows:
        summary = m.summary.replace("|", "\\|")  # a fusion in the summary (mlp2<1,0|sum) would split the cell
        lines.append(f"| {m.name} | {summary} | {m.params:,} | {m.steps} ({m.samples:,}) | "
                     f"{m.samples / statistics.median(m.engine):.2f} | "
                     f"{statistics.median(m.engine):,.0f} | {statistics.median(m.hand):,.0f} | {m.ratio:.3f} | "
                     f"{min(m.ratios):.3f}-{max(m.ratios):.3f} | {m.best_ratio:.3f} | "
                     f"{m.logits_difference:.1e}, {m.trained_difference:.1e} |")
    if rows:
        overall = geometric_mean([m.ratio for m in rows])
        verdict = ("met" if overall >= TARGET else "not met") if device.type == "cpu" else "CPU target; not judged on CUDA"
        lines += ["", f"Geometric mean of engine/hand over {len(rows)} architectures: {overall:.3f} "
                      f"(target >= {TARGET} on CPU: {verdict}); worst {min(m.ratio for m in rows):.3f}; "
                      f"fastest round over fastest round: {geometric_mean([m.best_ratio for m in rows]):.3f}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1, as a search's worker)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per architecture (each arm once per round)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=SPACES)
    parser.add_argument("--quick", action="store_true", help="CI smoke run: 1 architecture per space, 1 epoch, 1 round")
    parser.add_argument("--profile", action="store_true", help=f"torch.profiler on {PROFILE_STEPS} steps of each arm")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--out-md", type=Path, help="write the Markdown table here")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    header = (f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, {device}"
              + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
              + f", torch {torch.__version__}, {args.repeats} rounds, seed {args.seed}" + (", quick" if args.quick else ""))
    print(f"# throughput: engine vs hand-written, {header}", flush=True)
    start = time.perf_counter()
    rows: list[Measured] = []
    profiles: list[str] = []
    for space in args.spaces:
        session = open_session(REPO / "search_spaces" / f"{space}.yaml")
        data = load_task(session).to(device)
        chosen = [a for a in ARCHITECTURES if a.space == space][: 1 if args.quick else None]
        for a in chosen:
            m = measure(a, session, data, args, device, profiles)
            rows.append(m)
            print(f"{m.name}: engine {statistics.median(m.engine):,.0f} samples/s, hand {statistics.median(m.hand):,.0f} samples/s, "
                  f"engine/hand {m.ratio:.3f} ({min(m.ratios):.3f}-{max(m.ratios):.3f}); {m.steps} steps; "
                  f"logits diff {m.logits_difference:.1e}, trained diff {m.trained_difference:.1e}", flush=True)
    md = table(rows, device)
    print()
    print(md)
    for text in profiles:
        print()
        print(text)
    seconds = time.perf_counter() - start
    print(f"\n{seconds:.0f} s")
    if args.out_md:
        args.out_md.parent.mkdir(parents=True, exist_ok=True)
        args.out_md.write_text(f"{header}\n\n{md}\n", encoding="utf-8")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        overall = geometric_mean([m.ratio for m in rows]) if rows else math.nan
        args.json.write_text(json.dumps({"header": header, "device": str(device), "threads": torch.get_num_threads(),
                                         "repeats": args.repeats, "seed": args.seed, "quick": args.quick, "target": TARGET,
                                         "geometric_mean_ratio": overall, "seconds": round(seconds, 1),
                                         "architectures": [m.row() for m in rows]}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
