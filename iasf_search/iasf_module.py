"""``IASF``: a found (or default) attention-graph architecture as a drop-in ``torch.nn.Module`` (seed 000 §4.1).

Tokens ``(B, T, input_dim)`` go through a linear projection to ``hidden_dim``, the graph's node
blocks (pre-norm residual ``x + op(norm(x))``, fusions where a node reads several inputs, see
:mod:`iasf_search.build`), the output node's fused value, a LayerNorm and a projection back to
``input_dim``: the shape is kept.
"""

from __future__ import annotations

import copy
import operator
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from torch import nn

from iasf_search.build import build_blocks, run_nodes
from iasf_search.components import BuildContext, TokenLayout
from iasf_search.graph import INPUT, OUTPUT, from_json, hidden_nodes, inputs_of, summary, validate
from iasf_search.plugin_manager import Components, load_components
from iasf_search.registry import Registry

LEVEL_PATTERNS = ("full", "local", "dilated", "topk")
"""Topological level ``L`` -> the attention pattern of the default architecture's attention node."""
DEFAULT_WINDOW = 5
DEFAULT_DILATION = 2
DEFAULT_TOPK = 8
DEFAULT_EXPANSION = 4
ARCH_FILE = "arch.json"
MAX_CACHED_LENGTHS = 16
"""How many per-length shells (masks for a sequence length other than ``seq_len``) are kept."""


def level_attention(topological_level: int, num_heads: int) -> dict[str, Any]:
    """The ``attention`` op's configuration at ``topological_level``: 0 full, 1 local (window 5),
    2 dilated (window 5, dilation 2), 3 top-k (8 keys per query)."""
    pattern = LEVEL_PATTERNS[topological_level]
    attention: dict[str, Any] = {"heads": num_heads, "pattern": pattern}
    if pattern in ("local", "dilated"):
        attention["window"] = DEFAULT_WINDOW
    if pattern == "dilated":
        attention["dilation"] = DEFAULT_DILATION
    if pattern == "topk":
        attention["topk"] = DEFAULT_TOPK
    return attention


def default_architecture(hidden_dim: int, num_heads: int, topological_level: int) -> nx.DiGraph:
    """The transformer-like block pair used when no ``arch`` is given.

    ``n0``: self-attention with ``num_heads`` heads and the pattern of ``topological_level``
    (0 full, 1 local window 5, 2 dilated window 5 x dilation 2, 3 top-8 keys per query);
    ``n1``: an MLP of expansion 4 reading ``n0``; the output reads ``n1``.
    """
    attention = level_attention(topological_level, num_heads)
    graph = nx.DiGraph(width=hidden_dim)
    # The stem is informational only: IASF replaces it by its input projection (no position encoding).
    graph.add_node(INPUT, role="input", op="sequence", config={"patch": 1, "overlap": False, "position": "none"})
    graph.add_node("n0", role="node", op="attention", config=attention)
    graph.add_node("n1", role="node", op="mlp", config={"expansion": DEFAULT_EXPANSION})
    graph.add_node(OUTPUT, role="output")
    graph.add_edge(INPUT, "n0", slot=0)
    graph.add_edge("n0", "n1", slot=0)
    graph.add_edge("n1", OUTPUT, slot=0)
    validate(graph)
    return graph


def load_architecture(arch: nx.DiGraph | str | os.PathLike) -> nx.DiGraph:
    """A validated copy of ``arch``: a graph, an ``arch.json`` file, or a directory holding one.

    :raises ValueError: the path does not exist, or the file is not a valid architecture.
    :raises TypeError: ``arch`` is none of these.
    """
    if isinstance(arch, nx.DiGraph):
        graph = copy.deepcopy(arch)
        try:
            validate(graph)
        except ValueError as exc:
            raise ValueError(f"arch: not a valid architecture graph: {exc}") from None
        return graph
    if not isinstance(arch, (str, os.PathLike)):
        raise TypeError(f"arch must be a networkx.DiGraph, a path to an {ARCH_FILE} file or an exported model directory "
                        f"holding one, or None for the default architecture; got {type(arch).__name__}")
    path = Path(arch)
    if path.is_dir():
        if not (path / ARCH_FILE).is_file():
            raise ValueError(f"arch: directory {path} has no {ARCH_FILE}; give an exported model directory "
                             f"('iasf-search export') or the path of an {ARCH_FILE} file")
        path = path / ARCH_FILE
    elif not path.is_file():
        raise ValueError(f"arch: no such file or directory: {path}")
    try:
        return from_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # GraphError: not JSON, not a node-link graph, or one that breaks a rule
        kind = "not JSON" if str(exc).startswith("not JSON") else "not an architecture graph"
        raise ValueError(f"arch: {path} is {kind} (expected the JSON that iasf_search.graph.to_json writes): {exc}") from None


def _integer(value: Any, name: str, what: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {what}, got {value!r}") from None


def _positive_int(value: Any, name: str) -> int:
    value = _integer(value, name, "a positive integer")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


@dataclass(frozen=True)
class _Registries:
    """The registries building blocks needs (a full Components holds the plugin manager, which cannot be copied)."""

    ops: Registry
    fusions: Registry
    norms: Registry


class _GraphBody(nn.Module):
    """Node blocks and output fusion of a graph: tokens ``(B, T, D)`` -> the output node's fused value ``(B, T, D)``."""

    def __init__(self, blocks: nn.ModuleDict, out_fusion: nn.Module | None, order: list[str], sources: dict[str, list[str]]) -> None:
        super().__init__()
        self.blocks, self.out_fusion = blocks, out_fusion
        self.order, self.sources = order, sources
        self.shared_buffers: list[str] = []  # names of the primary buffers substituted at each call

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return run_nodes(self.blocks, self.out_fusion, self.order, self.sources, {INPUT: tokens})[OUTPUT]


class IASF(nn.Module):
    """An attention-graph architecture as a drop-in layer: ``(batch, seq, input_dim) -> (batch, seq, input_dim)``.

    ``nn.Linear(input_dim, hidden_dim)`` makes tokens; the architecture's node blocks run at width
    ``hidden_dim`` over a 1-D token layout of length ``seq``; the output node's (fused) value goes
    through ``LayerNorm(hidden_dim)`` and ``nn.Linear(hidden_dim, input_dim)``, per token. No
    position encoding is added (as in ``nn.TransformerEncoderLayer``): the caller's embeddings carry
    positions; the local and dilated patterns see the token order through their masks.

    :param input_dim: feature size of the input and the output.
    :param hidden_dim: token width inside the architecture (every node reads and writes it).
    :param num_heads: attention heads of the default architecture; with ``arch``, used only for
        nodes (and fusions) whose component declares ``heads`` but whose configuration has none;
        nodes that have their own ``heads`` keep them. Where used, it must divide ``hidden_dim``.
    :param topological_level: 0..3, the attention pattern of the default architecture:
        0 full, 1 local (window 5), 2 dilated (window 5, dilation 2), 3 top-k (8 keys per query).
        It must be in 0..3 but is otherwise ignored when ``arch`` is given (each attention node
        of the architecture carries its own pattern).
    :param arch: None for the default architecture (attention node ``n0``, then an MLP node
        ``n1`` of expansion 4); else a ``networkx.DiGraph`` (e.g. from
        :func:`iasf_search.trial_architecture`), the path of an ``arch.json`` file (the JSON of
        :func:`iasf_search.graph.to_json`), or a directory holding ``arch.json`` (an exported model;
        only ``arch.json`` is read, not its weights). The searched graph's stem and head are
        replaced by the projections (its readout is not used: every token is projected back); every
        hidden node keeps its op, configuration, norm and fusions;
        the width becomes ``hidden_dim`` (the architecture's attention heads must divide it); ops
        that use the token grid (conv, pool, local attention) see a 1-D sequence.
    :param seq_len: the sequence length the registered blocks are built for (keyword-only).
        Any other length works too, with the same parameters: the length-dependent parts (masks)
        are rebuilt for it once and cached. An op whose parameter *shapes* depend on the length
        works at ``seq_len`` only (other lengths raise ValueError naming the op).
    :param components: the loaded plugins (keyword-only); default :func:`load_components`
        (built-ins plus installed plugins), needed when ``arch`` uses a plugin's ops.

    ``parameters()``, ``state_dict()`` and ``.to()`` cover the registered modules only
    (``in_proj``, ``blocks``, ``out_fusion``, ``norm``, ``out_proj``); ``architecture`` is the
    graph that was built (width ``hidden_dim``).

    :raises ValueError: a value is out of range (the message names the argument and the fix).
    :raises TypeError: an argument has the wrong type.
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_heads: int, topological_level: int,
                 arch: nx.DiGraph | str | os.PathLike | None = None, *, seq_len: int = 16,
                 components: Components | None = None) -> None:
        super().__init__()
        input_dim = _positive_int(input_dim, "input_dim")
        hidden_dim = _positive_int(hidden_dim, "hidden_dim")
        num_heads = _positive_int(num_heads, "num_heads")
        seq_len = _positive_int(seq_len, "seq_len")
        topological_level = _integer(topological_level, "topological_level", "an integer in 0..3")
        if not 0 <= topological_level < len(LEVEL_PATTERNS):
            raise ValueError(f"topological_level must be in 0..3 (0 full, 1 local, 2 dilated, 3 top-k attention), "
                             f"got {topological_level}")
        components = components if components is not None else load_components()
        self._registries = _Registries(components.ops, components.fusions, components.norms)
        if arch is None:
            if hidden_dim % num_heads:
                raise ValueError(f"num_heads={num_heads} does not divide hidden_dim={hidden_dim}; "
                                 f"choose num_heads among the divisors of hidden_dim (e.g. {_divisor_near(hidden_dim, num_heads)})")
            graph = default_architecture(hidden_dim, num_heads, topological_level)
        else:
            graph = load_architecture(arch)
            self._adapt(graph, hidden_dim, num_heads)
        graph.graph["width"] = hidden_dim
        self.input_dim, self.hidden_dim, self.num_heads = input_dim, hidden_dim, num_heads
        self.topological_level, self.seq_len = topological_level, seq_len
        self.architecture = graph
        self.order = hidden_nodes(graph)
        self.sources = {n: inputs_of(graph, n) for n in [*self.order, OUTPUT]}

        self.in_proj = nn.Linear(input_dim, hidden_dim)
        self.blocks, self.out_fusion = build_blocks(graph, self._registries, self._context(seq_len))  # type: ignore[arg-type]
        self.norm = nn.LayerNorm(hidden_dim)
        self.out_proj = nn.Linear(hidden_dim, input_dim)
        self._shells: OrderedDict[tuple, _GraphBody] = OrderedDict()  # not a Module: never registered

    def _adapt(self, graph: nx.DiGraph, hidden_dim: int, num_heads: int) -> None:
        """Check that every op, norm and fusion of ``graph`` is loaded and that its heads divide ``hidden_dim``;
        give ``num_heads`` to components that declare ``heads`` but were configured without it."""
        for n in [*hidden_nodes(graph), OUTPUT]:
            attrs = graph.nodes[n]
            parts = []
            if n != OUTPUT:
                parts.append(("op", attrs.get("op"), self._registries.ops, "config"))
                if attrs.get("norm"):
                    parts.append(("norm", attrs["norm"], self._registries.norms, "norm_config"))
            if len(inputs_of(graph, n)) > 1:
                parts.append(("fusion", attrs.get("fusion"), self._registries.fusions, "fusion_config"))
            for kind, name, registry, key in parts:
                if name not in registry:
                    raise ValueError(f"arch: node {n} uses {kind} '{name}', which no loaded plugin registers "
                                     f"(loaded: {', '.join(sorted(registry))}); install or load its plugin "
                                     f"(IASF(..., components=load_components([(module, 'arch')])))")
                config = attrs.setdefault(key, {})
                if "heads" not in config and "heads" in registry.get(name).params:
                    if hidden_dim % num_heads:
                        raise ValueError(f"num_heads={num_heads} does not divide hidden_dim={hidden_dim} (used by {kind} "
                                         f"'{name}' at node {n}, configured without heads); choose num_heads among the "
                                         f"divisors of hidden_dim (e.g. {_divisor_near(hidden_dim, num_heads)})")
                    config["heads"] = num_heads
                heads = config.get("heads")
                if isinstance(heads, int) and heads > 0 and hidden_dim % heads:
                    raise ValueError(f"arch: {kind} '{name}' at node {n} has {heads} heads, which do not divide "
                                     f"hidden_dim={hidden_dim}; choose a hidden_dim that is a multiple of {heads}")

    def _context(self, length: int) -> BuildContext:
        return BuildContext(width=self.hidden_dim, layout=TokenLayout((length,)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(f"IASF expects input of shape (batch, seq, {self.input_dim}), got {tuple(x.shape)}")
        tokens = self.in_proj(x)  # (B, T, hidden)
        length = x.shape[1]
        if length == self.seq_len:
            out = run_nodes(self.blocks, self.out_fusion, self.order, self.sources, {INPUT: tokens})[OUTPUT]
        else:
            shell = self._shell(length, tokens)
            shell.train(self.training)
            state = {name: t for name, t in self.named_parameters(remove_duplicate=False)
                     if name.startswith(("blocks.", "out_fusion."))}
            buffers = dict(self.named_buffers(remove_duplicate=False))
            state.update((name, buffers[name]) for name in shell.shared_buffers)
            out = torch.func.functional_call(shell, state, (tokens,))  # (B, T, hidden)
        return self.out_proj(self.norm(out))

    def _shell(self, length: int, like: torch.Tensor) -> _GraphBody:
        """Unregistered node blocks for ``length`` without parameters of their own (the registered
        ones are substituted at each call), with their masks on ``like``'s device; cached."""
        key = (length, like.device, like.dtype)
        shell = self._shells.get(key)
        if shell is not None:
            self._shells.move_to_end(key)
            return shell
        with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG alone
            blocks, out_fusion = build_blocks(self.architecture, self._registries, self._context(length))  # type: ignore[arg-type]
        shell = _GraphBody(blocks, out_fusion, self.order, self.sources)
        primary_params = {n: p for n, p in self.named_parameters(remove_duplicate=False) if n.startswith(("blocks.", "out_fusion."))}
        shell_params = dict(shell.named_parameters(remove_duplicate=False))
        for name in sorted(set(primary_params) | set(shell_params)):
            mine, theirs = primary_params.get(name), shell_params.get(name)
            if mine is None or theirs is None or mine.shape != theirs.shape:
                raise ValueError(self._length_error(name, length, mine, theirs))
        primary_buffers = dict(self.named_buffers(remove_duplicate=False))
        persistent = set(self.state_dict(keep_vars=True))
        for prefix, module in shell.named_modules():
            for name, p in module._parameters.items():
                if p is not None:  # free the shell's own weights
                    module._parameters[name] = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)
            for name, b in module._buffers.items():
                if b is None:
                    continue
                full = f"{prefix}.{name}" if prefix else name
                mine = primary_buffers.get(full)
                if mine is not None and full in persistent and mine.shape == b.shape:
                    shell.shared_buffers.append(full)  # state (running statistics): share the registered one
                dtype = mine.dtype if mine is not None and b.is_floating_point() else b.dtype
                module._buffers[name] = b.to(device=like.device, dtype=dtype)
        self._shells[key] = shell
        while len(self._shells) > MAX_CACHED_LENGTHS:
            self._shells.popitem(last=False)
        return shell

    def _length_error(self, name: str, length: int, mine: torch.Tensor | None, theirs: torch.Tensor | None) -> str:
        parts = name.split(".")
        node = parts[1] if parts[0] == "blocks" else OUTPUT
        attrs = self.architecture.nodes[node]
        what = f"op '{attrs['op']}'" if parts[0] == "blocks" and parts[2] == "op" else f"fusion '{attrs.get('fusion')}'"

        def shape(t: torch.Tensor | None) -> str:
            return "absent" if t is None else str(tuple(t.shape))

        return (f"{what} at node {node} has parameters that depend on the sequence length ({name}: {shape(mine)} at "
                f"seq_len={self.seq_len}, {shape(theirs)} at {length}); IASF shares one set of weights across lengths, so "
                f"call it with sequences of length {self.seq_len} (or build it with seq_len={length}), or use an "
                f"architecture without this {what.split()[0]}")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_shells"] = OrderedDict()  # rebuilt on demand
        return state

    def extra_repr(self) -> str:
        return (f"input_dim={self.input_dim}, hidden_dim={self.hidden_dim}, seq_len={self.seq_len}, "
                f"architecture='{summary(self.architecture)}'")


def _divisor_near(n: int, k: int) -> int:
    """The divisor of ``n`` closest to ``k`` (for error messages)."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), d))
