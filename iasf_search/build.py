"""Architecture graph -> ``torch.nn.Module``: stem, the graph's nodes in topological order, readout and head."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import torch
from torch import nn

from iasf_search.components import BuildContext
from iasf_search.errors import BadInput
from iasf_search.graph import DEFAULT_NORM, DEFAULT_READOUT, INPUT, OUTPUT, hidden_nodes, inputs_of
from iasf_search.plugin_manager import Components


@dataclass
class ForwardPass:
    """What :meth:`ArchNet.run` returns: logits, each node's ``(B, T, D)`` output (``input`` is the
    stem's tokens, ``output`` the fused input of the head), the captured fusion inputs, and the
    graph's node order and sources."""

    logits: torch.Tensor
    values: dict[str, torch.Tensor]
    fusion_inputs: dict[str, list[torch.Tensor]]
    order: list[str]
    sources: dict[str, list[str]]


class OpContractError(BadInput):
    """A node op or fusion returned a tensor of the wrong shape."""


def fuse(fusion: nn.Module | None, inputs: list[torch.Tensor], node: str) -> torch.Tensor:
    """Apply ``fusion`` to ``inputs`` (or pass a single input through), checking the shape contract."""
    if fusion is None:
        return inputs[0]
    out = fusion(inputs)
    if out.shape != inputs[0].shape:
        raise OpContractError(f"fusion '{getattr(fusion, 'fusion_name', type(fusion).__name__)}' at node {node} returned shape "
                              f"{tuple(out.shape)}, expected {tuple(inputs[0].shape)} (fusions must keep (B, T, D))")
    return out


class NodeBlock(nn.Module):
    """One graph node: fuse its inputs, then ``x + op(norm(x))`` (or ``op(x)`` for non-residual ops).

    :param norm: the module of the node's norm (see ``manifold.norms``); default ``LayerNorm(width)``.
        Non-residual ops get none.
    """

    def __init__(self, name: str, op_name: str, op: nn.Module, residual: bool, fusion: nn.Module | None, width: int,
                 norm: nn.Module | None = None) -> None:
        super().__init__()
        self.name, self.op_name, self.residual = name, op_name, residual
        self.fusion = fusion
        self.norm = (norm if norm is not None else nn.LayerNorm(width)) if residual else nn.Identity()
        self.op = op

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = fuse(self.fusion, inputs, self.name)  # (B, T, D)
        y = self.op(self.norm(x))
        if y.shape != x.shape:
            raise OpContractError(f"op '{self.op_name}' at node {self.name} returned shape {tuple(y.shape)}, "
                                  f"expected {tuple(x.shape)} (ops must map (B, T, D) to the same shape)")
        return x + y if self.residual else y


def make_fusion(components: Components, attrs: dict, n_inputs: int, ctx: BuildContext) -> nn.Module | None:
    """The fusion module of a node (or the output) reading ``n_inputs`` inputs; None for a single input."""
    if n_inputs < 2:
        return None
    module = components.fusions.get(attrs["fusion"]).build(attrs.get("fusion_config", {}), n_inputs, ctx)
    module.fusion_name = attrs["fusion"]  # for error messages
    return module


def make_norm(components: Components, attrs: dict, ctx: BuildContext) -> nn.Module | None:
    """The norm module of a residual node: its ``norm`` attribute with ``norm_config``; None (the block's
    ``LayerNorm``, what the ``layer`` norm builds) for a node that names none, as every node did before norms were a choice."""
    if not attrs.get("norm") and not attrs.get("norm_config"):
        return None
    return components.norms.get(attrs.get("norm") or DEFAULT_NORM).build(attrs.get("norm_config") or {}, ctx)


def build_blocks(graph: nx.DiGraph, components: Components, ctx: BuildContext) -> tuple[nn.ModuleDict, nn.Module | None]:
    """The :class:`NodeBlock` of every hidden node of ``graph`` (keyed by node name, in topological
    order) and the output's fusion (None when it reads one node), built at ``ctx.width`` for ``ctx.layout``.

    The graph's stem and head are not built: the caller supplies the tokens and reads the output.
    """
    blocks = nn.ModuleDict()
    for n in hidden_nodes(graph):
        attrs = graph.nodes[n]
        op = components.ops.get(attrs["op"])
        blocks[n] = NodeBlock(n, attrs["op"], op.build(attrs["config"], ctx), op.residual,
                              make_fusion(components, attrs, len(inputs_of(graph, n)), ctx), ctx.width,
                              make_norm(components, attrs, ctx) if op.residual else None)
    out_fusion = make_fusion(components, graph.nodes[OUTPUT], len(inputs_of(graph, OUTPUT)), ctx)
    return blocks, out_fusion


def run_nodes(blocks: nn.ModuleDict, out_fusion: nn.Module | None, order: list[str], sources: dict[str, list[str]],
              values: dict[str, torch.Tensor], fusion_inputs: dict[str, list[torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
    """Run the nodes in ``order``, then the output's fusion, on ``values[INPUT]`` (tokens ``(B, T, D)``).

    Every node's output is stored in ``values`` (``values[OUTPUT]``: the fused input of the head),
    which is returned. When ``fusion_inputs`` is a dict, each input of a multi-input node gets its
    own autograd node and is stored there (see :meth:`ArchNet.run`).
    """
    for n in [*order, OUTPUT]:
        inputs = [values[s] for s in sources[n]]
        if fusion_inputs is not None and len(inputs) > 1:
            inputs = fusion_inputs[n] = [t.view_as(t) for t in inputs]
        values[n] = fuse(out_fusion, inputs, OUTPUT) if n == OUTPUT else blocks[n](inputs)
    return values


class ArchNet(nn.Module):
    """The model an architecture graph describes: ``(B, *sample_shape) -> (B, num_classes)`` logits."""

    def __init__(self, graph: nx.DiGraph, components: Components, sample_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        width = graph.graph["width"]
        stem_attrs = graph.nodes[INPUT]
        stem = components.stems.get(stem_attrs["op"])
        self.layout = stem.layout(stem_attrs["config"], sample_shape)
        ctx = BuildContext(width=width, layout=self.layout)
        self.stem = stem.build(stem_attrs["config"], sample_shape, width)
        self.order = hidden_nodes(graph)
        self.sources = {n: inputs_of(graph, n) for n in [*self.order, OUTPUT]}
        self.blocks, self.out_fusion = build_blocks(graph, components, ctx)
        self.width = width
        """The token width ``D`` every node reads and writes (the head reads ``head.in_features``, the readout's ``F``)."""
        self.norm = nn.LayerNorm(width)
        out_attrs = graph.nodes[OUTPUT]
        self.readout_name = out_attrs.get("readout") or DEFAULT_READOUT
        readout = components.readouts.get(self.readout_name)
        readout_config = out_attrs.get("readout_config") or {}
        self.readout = readout.build(readout_config, ctx)  # (B, T, D) -> (B, F)
        self.head = nn.Linear(readout.features(readout_config, ctx), num_classes)

    def run(self, x: torch.Tensor, *, capture_fusion_inputs: bool = False) -> ForwardPass:
        """Forward pass keeping every node's representation (for auxiliary objectives).

        :param capture_fusion_inputs: give each fused input its own autograd node, so that the
            gradient flowing into one fusion through one branch can be measured (the CDS score).
        """
        values = {INPUT: self.stem(x)}  # (B, T, D)
        fusion_inputs: dict[str, list[torch.Tensor]] = {}
        run_nodes(self.blocks, self.out_fusion, self.order, self.sources, values,
                  fusion_inputs if capture_fusion_inputs else None)
        pooled = self.readout(self.norm(values[OUTPUT]))  # (B, F)
        if pooled.shape != (x.shape[0], self.head.in_features):
            raise OpContractError(f"readout '{self.readout_name}' returned shape {tuple(pooled.shape)}, expected "
                                  f"{(x.shape[0], self.head.in_features)} (readouts map (B, T, D) to the (B, F) they declare)")
        logits = self.head(pooled)  # (B, classes)
        return ForwardPass(logits, values, fusion_inputs, self.order, self.sources)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Token representations at the output node: ``(B, T, D)``."""
        return self.run(x).values[OUTPUT]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x).logits


def build_model(graph: nx.DiGraph, components: Components, sample_shape: tuple[int, ...], num_classes: int) -> ArchNet:
    """Build the module for ``graph`` and check every op's shape contract on a 2-sample batch.

    :raises OpContractError: an op or fusion returns the wrong shape (the message names it).
    :raises ValueError: a component rejects its configuration.
    """
    model = ArchNet(graph, components, sample_shape, num_classes)
    model.eval()  # the check leaves no trace (a batch norm's running statistics)
    with torch.no_grad():
        out = model(torch.zeros(2, *sample_shape))
    model.train()
    if out.shape != (2, num_classes):
        raise OpContractError(f"model output has shape {tuple(out.shape)}, expected (2, {num_classes})")
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
