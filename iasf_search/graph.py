"""Architecture graphs: sampling through Optuna, validation, canonical hashing and JSON.

An architecture is a networkx ``DiGraph`` with three kinds of node (attribute ``role``):

* ``input`` — the stem; attributes ``op`` (the modality), ``config`` (sampled stem parameters);
* ``node`` — a token-mixing node ``n0, n1, ...``; ``op`` and ``config``, and when it reads
  several inputs ``fusion`` and ``fusion_config``; ``norm`` and ``norm_config`` when the space offers
  norms other than the default (absent: ``layer``);
* ``output`` — reads every node that no other node reads (fusing them if several), then the head;
  ``readout`` and ``readout_config`` when the space offers readouts other than the default (absent: ``mean``).

Edges carry ``slot``: the position of the source among the destination's inputs (order matters
to non-commutative fusions). The graph attribute ``width`` is the token width ``D``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx
import optuna

from iasf_search.components import Component
from iasf_search.params import Range

if TYPE_CHECKING:
    from iasf_search.plugin_manager import Components
    from iasf_search.space.spec import SearchSpace

INPUT = "input"
OUTPUT = "output"
DEFAULT_READOUT = "mean"
"""The readout of a graph whose output node names none (every graph before readouts were a choice)."""
DEFAULT_NORM = "layer"
"""The norm of a node that names none."""


class GraphError(ValueError):
    """An architecture graph breaks a structural rule (cycle, unreachable node, missing fusion)."""


def node_name(i: int) -> str:
    return f"n{i}"


def inputs_of(graph: nx.DiGraph, node: str) -> list[str]:
    """The sources feeding ``node``, ordered by edge ``slot``."""
    return sorted(graph.predecessors(node), key=lambda p: graph.edges[p, node]["slot"])


def hidden_nodes(graph: nx.DiGraph) -> list[str]:
    """The token-mixing nodes in a deterministic topological order."""
    order = nx.lexicographical_topological_sort(graph, key=_node_sort_key)
    return [n for n in order if graph.nodes[n]["role"] == "node"]


def _node_sort_key(n: str) -> tuple[int, int]:
    return (0, -1) if n == INPUT else (2, 0) if n == OUTPUT else (1, int(n[1:]))


def validate(graph: nx.DiGraph) -> None:
    """Raise :class:`GraphError` unless ``graph`` is a well-formed architecture.

    Rules: a DAG with exactly one input and one output; every node is reachable from the input and
    reaches the output; in-edge slots are ``0..k-1``; a node with several inputs has a fusion.
    """
    if not nx.is_directed_acyclic_graph(graph):
        raise GraphError(f"not acyclic: cycle {nx.find_cycle(graph)}")
    for required in (INPUT, OUTPUT):
        if required not in graph:
            raise GraphError(f"no '{required}' node")
    reachable = nx.descendants(graph, INPUT) | {INPUT}
    reaching = nx.ancestors(graph, OUTPUT) | {OUTPUT}
    for n, attrs in graph.nodes(data=True):
        if n not in reachable:
            raise GraphError(f"node {n} is not reachable from the input")
        if n not in reaching:
            raise GraphError(f"node {n} does not reach the output")
        if n == INPUT:
            continue
        slots = sorted(graph.edges[p, n]["slot"] for p in graph.predecessors(n))
        if slots != list(range(len(slots))):
            raise GraphError(f"node {n} has input slots {slots}, expected 0..{len(slots) - 1}")
        if len(slots) > 1 and not attrs.get("fusion"):
            raise GraphError(f"node {n} reads {len(slots)} inputs but has no fusion")


def sample_graph(trial: optuna.Trial, space: SearchSpace, components: Components) -> nx.DiGraph:
    """Sample one architecture from ``space`` (its ops and fusions looked up in ``components``) with
    Optuna's define-by-run API.

    Parameter names are stable so that samplers can learn across trials: ``arch.nodes``,
    ``arch.width``, ``stem.<param>``, ``n<i>.op``, ``n<i>.<op>.<param>``, ``n<i>.in0`` (the first
    input), ``n<i>.in.<src>`` (whether ``src`` is an extra input), ``n<i>.fusion``, ``n<i>.norm``
    (residual ops only), ``output.fusion`` and ``output.readout``. An op's own parameters are sampled
    only when that op is chosen; a choice among one option is not a parameter. Norms and readouts are
    sampled (and stored on the graph) only when the space offers more than the default ``[layer]`` and
    ``[mean]``, so graphs of such spaces are exactly what they were before these were choices.
    """
    comps = components
    graph = nx.DiGraph(width=space.width.suggest(trial, "arch.width"))
    stem = comps.stems.get(space.modality)
    graph.add_node(INPUT, role="input", op=space.modality, config=sample_config(trial, stem, space.stem, "stem"))
    n_nodes = space.nodes.suggest(trial, "arch.nodes")
    op_choice = _choice(sorted(space.ops))
    for i in range(n_nodes):
        name = node_name(i)
        earlier = [INPUT] + [node_name(j) for j in range(i)]
        candidates = earlier[-space.lookback:] if space.lookback else earlier
        first = trial.suggest_categorical(f"{name}.in0", candidates) if len(candidates) > 1 else candidates[0]
        sources = [first]
        for src in reversed(candidates):  # most recent first
            if len(sources) >= space.max_in_degree:
                break
            if src != first and trial.suggest_categorical(f"{name}.in.{src}", [False, True]):
                sources.append(src)
        op_name = op_choice.suggest(trial, f"{name}.op")
        op = comps.ops.get(op_name)
        attrs: dict[str, Any] = {"role": "node", "op": op_name,
                                 "config": sample_config(trial, op, space.ops[op_name], f"{name}.{op_name}")}
        if len(sources) > 1:
            attrs.update(_sample_fusion(trial, space, comps, name))
        if op.residual and not _is_default(space.norms, DEFAULT_NORM):
            attrs.update(_sample_kind(trial, space.norms, comps.norms, name, "norm"))
        graph.add_node(name, **attrs)
        for slot, src in enumerate(sources):
            graph.add_edge(src, name, slot=slot)
    sinks = [n for n in graph if graph.out_degree(n) == 0 and n != INPUT] or [INPUT]
    out_attrs: dict[str, Any] = {"role": "output"}
    if len(sinks) > 1:
        out_attrs.update(_sample_fusion(trial, space, comps, OUTPUT))
    if not _is_default(space.readouts, DEFAULT_READOUT):
        out_attrs.update(_sample_kind(trial, space.readouts, comps.readouts, OUTPUT, "readout"))
    graph.add_node(OUTPUT, **out_attrs)
    for slot, src in enumerate(sinks):
        graph.add_edge(src, OUTPUT, slot=slot)
    validate(graph)
    return graph


def _choice(options: list[str]) -> Range:
    return Range(fixed=options[0]) if len(options) == 1 else Range(choices=tuple(options))


def _sample_fusion(trial: optuna.Trial, space: SearchSpace, components: Components, name: str) -> dict[str, Any]:
    fusion_name = _choice(sorted(space.fusions)).suggest(trial, f"{name}.fusion")
    fusion = components.fusions.get(fusion_name)
    return {"fusion": fusion_name,
            "fusion_config": sample_config(trial, fusion, space.fusions[fusion_name], f"{name}.{fusion_name}")}


def _is_default(offered: Mapping[str, Mapping[str, Range]], default: str) -> bool:
    return list(offered) == [default] and not offered[default]


def _sample_kind(trial: optuna.Trial, offered: Mapping[str, Mapping[str, Range]], registry: Any, name: str,
                 kind: str) -> dict[str, Any]:
    """``{kind: chosen, kind_config: its parameters}``: one of ``offered`` as ``<name>.<kind>``, its
    parameters as ``<name>.<chosen>.<param>``."""
    chosen = _choice(sorted(offered)).suggest(trial, f"{name}.{kind}")
    return {kind: chosen, f"{kind}_config": sample_config(trial, registry.get(chosen), offered[chosen], f"{name}.{chosen}")}


def sample_config(trial: optuna.Trial, component: Component, ranges: Mapping[str, Range], prefix: str) -> dict[str, Any]:
    """``component.sample()`` in ``trial``, each parameter named ``<prefix>.<param>`` in Optuna."""
    return component.sample(ranges, lambda param: ranges[param].suggest(trial, f"{prefix}.{param}"))


# -- identity -------------------------------------------------------------------------------------


def _label(attrs: Mapping[str, Any]) -> str:
    parts = {k: attrs.get(k) for k in ("role", "op", "config", "fusion", "fusion_config")}
    for kind, default in (("norm", DEFAULT_NORM), ("readout", DEFAULT_READOUT)):
        if not is_default(attrs, kind, default):  # the default is left out: hashes from before these choices hold
            parts[kind], parts[f"{kind}_config"] = attrs.get(kind) or default, attrs.get(f"{kind}_config") or {}
    return json.dumps(parts, sort_keys=True, default=str)


def is_default(attrs: Mapping[str, Any], kind: str, default: str) -> bool:
    """Whether a node's ``kind`` (``norm`` or ``readout``) is ``default`` without parameters, or absent."""
    return (attrs.get(kind) or default) == default and not attrs.get(f"{kind}_config")


def labelled(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy whose nodes carry one string ``label`` holding everything that defines them.

    Each edge is subdivided by a node labelled ``primary`` (slot 0) or ``other``: Weisfeiler-Lehman
    then sees direction and which input a node treats as its first (the query of
    ``cross_attention``), which ``edge_attr`` hashing in networkx loses. The width goes into the
    input's label.
    """
    out = nx.DiGraph()
    for n, attrs in graph.nodes(data=True):
        label = _label(attrs)
        if n == INPUT:
            label += f"|width={graph.graph['width']}"
        out.add_node(n, label=label)
    for src, dst, attrs in graph.edges(data=True):
        edge = f"{src}->{dst}"
        out.add_node(edge, label="primary" if attrs["slot"] == 0 else "other")
        out.add_edge(src, edge)
        out.add_edge(edge, dst)
    return out


def canonical_hash(graph: nx.DiGraph) -> str:
    """Weisfeiler-Lehman hash over node labels; equal for isomorphic architectures.

    WL is incomplete in general: confirm a match with :func:`same_architecture` when it must be exact.
    """
    import warnings

    g = labelled(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # networkx warns that directed hashes changed in 3.5
        return nx.weisfeiler_lehman_graph_hash(g, node_attr="label", iterations=max(3, len(g)), digest_size=16)


def same_architecture(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    """Exact check: the two labelled graphs are isomorphic."""
    return nx.is_isomorphic(labelled(a), labelled(b), node_match=lambda x, y: x["label"] == y["label"])


def to_json(graph: nx.DiGraph) -> str:
    """Serialise an architecture (networkx node-link form, sorted keys)."""
    return json.dumps(nx.node_link_data(graph, edges="edges"), sort_keys=True)


def from_json(text: str) -> nx.DiGraph:
    """Inverse of :func:`to_json`; validates the result.

    :raises GraphError: ``text`` is not an architecture (not JSON, not a node-link graph, or one that breaks a rule).
    """
    try:
        doc = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise GraphError(f"not JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    try:
        graph = nx.node_link_graph(doc, directed=True, edges="edges")
    except Exception as exc:  # networkx on a document of another shape: KeyError, TypeError, AttributeError, ...
        raise GraphError(f"not an architecture graph ({type(exc).__name__}: {str(exc)[:200]})") from None
    validate(graph)
    return graph


def summary(graph: nx.DiGraph, describe: Any = None, *, describe_norm: Any = None, describe_readout: Any = None) -> str:
    """A one-line description: width, then each node's op, with ``<-`` inputs where not a chain; a
    node's norm other than ``layer`` in brackets after it (``mlp[batch]``), a readout other than
    ``mean`` at the end (`` head=max``).

    :param describe: optional ``(op_name, config) -> str`` giving short op labels.
    :param describe_norm: the same for norms.
    :param describe_readout: the same for readouts.
    """
    parts = []
    previous = INPUT
    for n in hidden_nodes(graph):
        attrs = graph.nodes[n]
        text = describe(attrs["op"], attrs["config"]) if describe else attrs["op"]
        if not is_default(attrs, "norm", DEFAULT_NORM):
            norm, config = attrs.get("norm") or DEFAULT_NORM, attrs.get("norm_config") or {}
            text += f"[{describe_norm(norm, config) if describe_norm else norm}]"
        ins = inputs_of(graph, n)
        if ins != [previous]:
            text += "<" + ",".join("in" if i == INPUT else i[1:] for i in ins)
            if len(ins) > 1:
                text += f"|{attrs['fusion']}"
        parts.append(text)
        previous = n
    outs = inputs_of(graph, OUTPUT)
    tail = "" if outs == [previous] else " out<" + ",".join("in" if i == INPUT else i[1:] for i in outs)
    out = graph.nodes[OUTPUT]
    if not is_default(out, "readout", DEFAULT_READOUT):
        readout, config = out.get("readout") or DEFAULT_READOUT, out.get("readout_config") or {}
        tail += f" head={describe_readout(readout, config) if describe_readout else readout}"
    return f"w{graph.graph['width']} " + " > ".join(parts) + tail
