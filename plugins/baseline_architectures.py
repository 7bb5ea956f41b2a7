"""Built-in baseline architectures for ``search.enqueue``: what a user would try by hand, sized to the space.

* ``transformer``: a pre-norm transformer encoder: attention (full, when the space offers it) and MLP
  nodes alternating in a chain, two blocks (four nodes) or as many as ``manifold.nodes`` allows;
* ``cnn``: a chain of three convolution nodes (or as many as ``manifold.nodes`` allows), like the
  small CNNs of the MNIST-1D paper.

Both use the space's largest width and, for every other setting, its first choice (the low end of
a range), except the attention pattern ``full``, the position ``learned`` and the dilation 1 where
the space offers them. Where the space offers norms and readouts, each baseline takes the ones a
hand-written model of its kind has: the transformer layer norm and the mean over tokens; the CNN
batch norm and global average plus max pooling (``mean_max``), as in NNI's MNIST-1D DAG space, else
``max`` or ``mean``. A space offering none of a baseline's choices gives it its first listed one.
A space without the ops a baseline needs cannot enqueue it (a load-time error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx

from iasf_search import hookimpl
from iasf_search.components import BaselineArchitecture
from iasf_search.graph import DEFAULT_NORM, DEFAULT_READOUT, INPUT, OUTPUT, node_name
from iasf_search.params import Range
from iasf_search.plugin_manager import Components
from iasf_search.space import SearchSpace

PREFERRED = {"pattern": "full", "position": "learned", "dilation": 1}
"""Setting -> the value a hand-written baseline uses when the space offers it."""


def pick(name: str, rng: Range) -> Any:
    """The value a baseline takes for setting ``name``: the preferred one if offered, else the first choice or the low end."""
    values = rng.values()
    if values is not None and PREFERRED.get(name) in values:
        return PREFERRED[name]
    if rng.is_fixed:
        return rng.fixed
    return rng.choices[0] if rng.choices is not None else (int(rng.low) if rng.is_int else float(rng.low))


def configure(component: Any, ranges: Mapping[str, Range]) -> dict[str, Any]:
    """A component's configuration with :func:`pick`, through its own ``sample`` (so conditional settings stay conditional)."""
    return component.sample(ranges, lambda param: pick(param, ranges[param]))


def node_count(space: SearchSpace, wanted: int) -> int:
    """``wanted`` nodes, moved inside the space's ``manifold.nodes`` bounds."""
    values = space.nodes.values() or (int(space.nodes.low), int(space.nodes.high))
    return max(min(values), min(max(values), wanted))


def preferred(offered: Mapping[str, Mapping[str, Range]], wanted: Sequence[str]) -> str:
    """The first of ``wanted`` that ``offered`` holds, else the first offered."""
    return next((name for name in wanted if name in offered), next(iter(offered)))


def kind_attrs(offered: Mapping[str, Mapping[str, Range]], registry: Any, kind: str, default: str,
               wanted: Sequence[str]) -> dict[str, Any]:
    """``{kind: name, kind_config: config}`` for :func:`preferred`'s choice; nothing when the space offers only the default."""
    if list(offered) == [default] and not offered[default]:
        return {}  # not a choice in this space: graphs leave it out (see iasf_search.graph)
    name = preferred(offered, wanted)
    return {kind: name, f"{kind}_config": configure(registry.get(name), offered[name])}


def chain(space: SearchSpace, components: Components, ops: Sequence[str], *, norms: Sequence[str] = (DEFAULT_NORM,),
          readouts: Sequence[str] = (DEFAULT_READOUT,)) -> nx.DiGraph:
    """input -> ops[0] -> ops[1] -> ... -> output, at the space's largest width, each op configured by :func:`configure`;
    the norm of each residual op and the readout are the first of ``norms`` and ``readouts`` that the space offers."""
    missing = sorted(set(ops) - set(space.ops))
    if missing:
        raise ValueError(f"needs the op(s) {', '.join(missing)} in manifold.ops; the space offers {', '.join(sorted(space.ops))}")
    widths = space.width.values() or (int(space.width.high),)
    graph = nx.DiGraph(width=max(widths))
    stem = components.stems.get(space.modality)
    graph.add_node(INPUT, role="input", op=space.modality, config=configure(stem, space.stem))
    previous = INPUT
    for i, op in enumerate(ops):
        component = components.ops.get(op)
        norm = kind_attrs(space.norms, components.norms, "norm", DEFAULT_NORM, norms) if component.residual else {}
        graph.add_node(node_name(i), role="node", op=op, config=configure(component, space.ops[op]), **norm)
        graph.add_edge(previous, node_name(i), slot=0)
        previous = node_name(i)
    graph.add_node(OUTPUT, role="output", **kind_attrs(space.readouts, components.readouts, "readout", DEFAULT_READOUT, readouts))
    graph.add_edge(previous, OUTPUT, slot=0)
    return graph


class Transformer(BaselineArchitecture):
    name = "transformer"
    description = "attention and MLP nodes alternating (two pre-norm encoder blocks, within manifold.nodes)"

    def graph(self, space: SearchSpace, components: Components) -> nx.DiGraph:
        n = node_count(space, 4)
        return chain(space, components, ["attention" if i % 2 == 0 else "mlp" for i in range(n)])


class ConvNet(BaselineArchitecture):
    name = "cnn"
    description = "a chain of three convolution nodes (within manifold.nodes), batch norm and avg+max pooling where offered"

    def graph(self, space: SearchSpace, components: Components) -> nx.DiGraph:
        return chain(space, components, ["conv"] * node_count(space, 3), norms=("batch", "layer"),
                     readouts=("mean_max", "max", "mean"))


@hookimpl
def iasf_register_architectures(registry) -> None:
    registry.register(Transformer())
    registry.register(ConvNet())
