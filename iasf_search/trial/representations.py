"""A trained model's representations on a fixed validation batch, and the space's representation metrics of them.

:func:`capture` runs the model once in eval mode and keeps what :class:`~iasf_search.components.RepresentationMetric`s
read (every node's tokens, their levels, the pooled embedding, each attention node's probabilities);
:func:`measure_metrics` hands that to each metric the space records. The batch is the first
``metrics.batch`` validation samples, so every trial of a study is measured on the same samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from iasf_search.build import ArchNet, ForwardPass, takes_mask
from iasf_search.components import Measurement, Representations
from iasf_search.graph import INPUT, OUTPUT
from iasf_search.plugin_manager import Components


def node_attention(model: ArchNet, forward: ForwardPass) -> dict[str, torch.Tensor]:
    """``{node: (B, heads, T, T)}`` attention probabilities of every node whose op defines
    ``attention_weights(x)``, recomputed from the node's own (fused, normalised) input in ``forward`` (and given
    the padding mask, for a padded model whose op's ``attention_weights`` takes a ``mask``)."""
    out = {}
    for node in forward.order:
        block = model.blocks[node]
        weights = getattr(block.op, "attention_weights", None)
        if weights is not None:
            _, normed = block.op_input([forward.values[s] for s in forward.sources[node]], forward.mask)
            masked = forward.mask is not None and takes_mask(block.op, "attention_weights")
            out[node] = weights(normed, mask=forward.mask) if masked else weights(normed)
    return out


def levels(order: list[str], sources: Mapping[str, list[str]]) -> dict[str, int]:
    """Each node's level: ``input`` 0, a hidden node 1 + the deepest node it reads, ``output`` the deepest node it reads."""
    level = {INPUT: 0}
    for node in order:
        level[node] = 1 + max(level[s] for s in sources[node])
    level[OUTPUT] = max(level[s] for s in sources[OUTPUT])
    return level


@torch.no_grad()
def capture(model: ArchNet, x: torch.Tensor, y: torch.Tensor) -> Representations:
    """Run ``model`` once on ``(x, y)`` in eval mode (its mode is restored) and keep its representations, on the CPU in float32."""
    was_training = model.training
    model.eval()
    try:
        forward = model.run(x)
        pooled = model.pool(forward.values[OUTPUT], forward.mask)
        attention = node_attention(model, forward)
    finally:
        model.train(was_training)
    cpu = {name: t.detach().float().cpu() for name, t in forward.values.items()}
    return Representations(
        tokens={name: cpu[name] for name in [INPUT, *forward.order, OUTPUT]},
        levels=levels(forward.order, forward.sources),
        ops={node: model.blocks[node].op_name for node in forward.order},
        pooled=pooled.detach().float().cpu(),
        attention={node: a.detach().float().cpu() for node, a in attention.items()},
        layout=model.layout,
        labels=y.detach().cpu(),
        mask=None if forward.mask is None else forward.mask.cpu(),
    )


def measure_metrics(model: ArchNet, x: torch.Tensor, y: torch.Tensor, wanted: Mapping[str, Mapping[str, Any]],
                    components: Components) -> dict[str, Measurement | None]:
    """``{name: Measurement or None}`` for each metric in ``wanted`` (name -> options), in that order;
    None where the metric does not apply to the architecture. Nothing is measured for an empty ``wanted``."""
    if not wanted:
        return {}
    reps = capture(model, x, y)
    return {name: components.metrics.get(name).measure(reps, options) for name, options in wanted.items()}
