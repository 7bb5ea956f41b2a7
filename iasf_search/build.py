"""Architecture graph -> ``torch.nn.Module``: stem, the graph's nodes in topological order, readout and head.

**Padded inputs.** A model built with ``padded=True`` takes samples whose unequal lengths were padded
to one length with NaN at their end (the UCR archive's own convention; see
:attr:`~iasf_search.components.TaskData.padded`). Its stem turns the NaN into a token mask ``(B, T)``
(True at tokens that cover real values) and the NaN into zeros. The mask then travels with the batch:

* every op, fusion, norm and readout module whose ``forward`` takes a ``mask`` keyword gets it
  (:func:`takes_mask`); the built-in ``attention`` and ``pool`` ops, the ``cross_attention`` fusion, the
  ``batch`` norm and the ``mean``, ``max``, ``mean_max`` and ``class_token`` readouts use it, so that
  padded tokens change nothing they compute;
* the stem's tokens, every node's output, the output's fusion and the head's normalised tokens are
  set to zero at padded tokens, so a module that takes no mask (a convolution, a token MLP, the
  ``flatten`` readout, a third party's op) sees zeros there, as a convolution sees the zero padding
  beyond a sequence's end: a model of convolutions, attention and pooling gives a series the logits
  it would give it unpadded (a test holds it to that).

A model built without ``padded`` (every dataset of equal-length samples) computes no mask and pays nothing.
"""

from __future__ import annotations

import inspect
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
    mask: torch.Tensor | None = None
    """``(B, T)`` bool, True at tokens of real values, for a padded model (see the module's docstring); else None."""


class OpContractError(BadInput):
    """A node op or fusion returned a tensor of the wrong shape."""


def takes_mask(module: nn.Module | None, method: str = "forward") -> bool:
    """Whether ``module.<method>`` accepts a ``mask`` keyword: the padding mask ``(B, T)`` (True at real
    tokens), or None when the batch has none. Modules that do not are called without it."""
    function = getattr(module, method, None)
    if function is None:
        return False
    try:
        return "mask" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def call(module: nn.Module, x: torch.Tensor | list[torch.Tensor], mask: torch.Tensor | None,
         passes_mask: bool | None = None) -> torch.Tensor:
    """``module(x, mask=mask)`` when there is a mask and the module takes one (``passes_mask``, else
    :func:`takes_mask`), else ``module(x)``."""
    if mask is not None and (takes_mask(module) if passes_mask is None else passes_mask):
        return module(x, mask=mask)
    return module(x)


def zero_padded(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``tokens`` ``(B, T, D)`` with the padded tokens (``mask`` False) set to zero; as they are without a mask."""
    return tokens if mask is None else tokens.masked_fill(~mask[..., None], 0.0)


def fuse(fusion: nn.Module | None, inputs: list[torch.Tensor], node: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Apply ``fusion`` to ``inputs`` (or pass a single input through), checking the shape contract;
    ``mask``: the padding mask, for a fusion that takes one."""
    if fusion is None:
        return inputs[0]
    out = call(fusion, inputs, mask, getattr(fusion, "fusion_takes_mask", None))
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
        self.op_takes_mask, self.norm_takes_mask = takes_mask(op), takes_mask(self.norm)

    def op_input(self, inputs: list[torch.Tensor], mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, norm(x))``: the fused inputs and what the op reads (``mask``: the padding mask or None)."""
        x = fuse(self.fusion, inputs, self.name, mask)  # (B, T, D)
        return x, call(self.norm, x, mask, self.norm_takes_mask)

    def forward(self, inputs: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        x, normed = self.op_input(inputs, mask)
        y = call(self.op, normed, mask, self.op_takes_mask)
        if y.shape != x.shape:
            raise OpContractError(f"op '{self.op_name}' at node {self.name} returned shape {tuple(y.shape)}, "
                                  f"expected {tuple(x.shape)} (ops must map (B, T, D) to the same shape)")
        return zero_padded(x + y if self.residual else y, mask)


def make_fusion(components: Components, attrs: dict, n_inputs: int, ctx: BuildContext) -> nn.Module | None:
    """The fusion module of a node (or the output) reading ``n_inputs`` inputs; None for a single input."""
    if n_inputs < 2:
        return None
    module = components.fusions.get(attrs["fusion"]).build(attrs.get("fusion_config", {}), n_inputs, ctx)
    module.fusion_name = attrs["fusion"]  # for error messages
    module.fusion_takes_mask = takes_mask(module)  # looked up once, not on every forward pass
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
              values: dict[str, torch.Tensor], fusion_inputs: dict[str, list[torch.Tensor]] | None = None,
              mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Run the nodes in ``order``, then the output's fusion, on ``values[INPUT]`` (tokens ``(B, T, D)``).

    Every node's output is stored in ``values`` (``values[OUTPUT]``: the fused input of the head),
    which is returned. When ``fusion_inputs`` is a dict, each input of a multi-input node gets its
    own autograd node and is stored there (see :meth:`ArchNet.run`). ``mask``: the padding mask
    ``(B, T)`` of a padded model (see the module's docstring), or None.
    """
    for n in [*order, OUTPUT]:
        inputs = [values[s] for s in sources[n]]
        if fusion_inputs is not None and len(inputs) > 1:
            inputs = fusion_inputs[n] = [t.view_as(t) for t in inputs]
        values[n] = zero_padded(fuse(out_fusion, inputs, OUTPUT, mask), mask) if n == OUTPUT else blocks[n](inputs, mask)
    return values


class ArchNet(nn.Module):
    """The model an architecture graph describes: ``(B, *sample_shape) -> (B, num_classes)`` logits.

    :param padded: the inputs may end in NaN padding (see the module's docstring); the stem's module must
        then define ``padding_mask`` (:class:`~iasf_search.components.Stem`).
    :raises BadInput: ``padded`` with a stem that cannot mask padding.
    """

    def __init__(self, graph: nx.DiGraph, components: Components, sample_shape: tuple[int, ...], num_classes: int,
                 *, padded: bool = False) -> None:
        super().__init__()
        width = graph.graph["width"]
        stem_attrs = graph.nodes[INPUT]
        stem = components.stems.get(stem_attrs["op"])
        self.layout = stem.layout(stem_attrs["config"], sample_shape)
        ctx = BuildContext(width=width, layout=self.layout)
        self.stem = stem.build(stem_attrs["config"], sample_shape, width)
        self.padded = padded
        if padded and not callable(getattr(self.stem, "padding_mask", None)):
            raise BadInput(f"stem '{stem_attrs['op']}' cannot mask padding, but the samples are padded to one length; "
                           f"set task.options.lengths to resample or truncate, or use a stem with padding_mask")
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
        self.readout_takes_mask = takes_mask(self.readout)
        self.head = nn.Linear(readout.features(readout_config, ctx), num_classes)

    def padding_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(x, mask)``: for a padded model, ``x`` with its NaN padding set to zero and the stem's token mask
        ``(B, T)``; else ``x`` as it is and None."""
        if not self.padded:
            return x, None
        return x.masked_fill(torch.isnan(x), 0.0), self.stem.padding_mask(x)

    def run(self, x: torch.Tensor, *, capture_fusion_inputs: bool = False) -> ForwardPass:
        """Forward pass keeping every node's representation (for auxiliary objectives).

        :param capture_fusion_inputs: give each fused input its own autograd node, so that the
            gradient flowing into one fusion through one branch can be measured (the CDS score).
        """
        x, mask = self.padding_mask(x)
        values = {INPUT: zero_padded(self.stem(x), mask)}  # (B, T, D)
        fusion_inputs: dict[str, list[torch.Tensor]] = {}
        run_nodes(self.blocks, self.out_fusion, self.order, self.sources, values,
                  fusion_inputs if capture_fusion_inputs else None, mask)
        pooled = self.pool(values[OUTPUT], mask)  # (B, F)
        if pooled.shape != (x.shape[0], self.head.in_features):
            raise OpContractError(f"readout '{self.readout_name}' returned shape {tuple(pooled.shape)}, expected "
                                  f"{(x.shape[0], self.head.in_features)} (readouts map (B, T, D) to the (B, F) they declare)")
        logits = self.head(pooled)  # (B, classes)
        return ForwardPass(logits, values, fusion_inputs, self.order, self.sources, mask)

    def pool(self, output: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The readout's features ``(B, F)`` of the output node's tokens ``output`` (normalised first; ``mask``:
        the padding mask of a padded model, else None)."""
        return call(self.readout, zero_padded(self.norm(output), mask), mask, self.readout_takes_mask)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Token representations at the output node: ``(B, T, D)``."""
        return self.run(x).values[OUTPUT]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x).logits


def build_model(graph: nx.DiGraph, components: Components, sample_shape: tuple[int, ...], num_classes: int,
                *, padded: bool = False) -> ArchNet:
    """Build the module for ``graph`` and check every op's shape contract on a 2-sample batch (for a
    ``padded`` model, the second sample is padded over its second half).

    :raises OpContractError: an op or fusion returns the wrong shape (the message names it).
    :raises ValueError: a component rejects its configuration.
    :raises BadInput: ``padded`` with a stem that cannot mask padding.
    """
    model = ArchNet(graph, components, sample_shape, num_classes, padded=padded)
    model.eval()  # the check leaves no trace (a batch norm's running statistics)
    with torch.no_grad():
        out = model(example_batch(sample_shape, padded))
    model.train()
    if out.shape != (2, num_classes):
        raise OpContractError(f"model output has shape {tuple(out.shape)}, expected (2, {num_classes})")
    return model


def example_batch(sample_shape: tuple[int, ...], padded: bool = False) -> torch.Tensor:
    """Two zero samples of ``sample_shape``; for a ``padded`` model the second is NaN padding after its first half."""
    example = torch.zeros(2, *sample_shape)
    if padded:
        example[1, sample_shape[0] // 2 + 1:] = float("nan")
    return example


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
