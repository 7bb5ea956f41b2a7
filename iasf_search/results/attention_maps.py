"""Attention heat maps of a built model (seed 002 §4.2: ``H = A / max A``).

An op's module takes part by defining ``attention_weights(x) -> (B, heads, T, T)``: the
attention probabilities its ``forward`` applies to ``x`` (the built-in ``attention`` op does).
"""

from __future__ import annotations

import torch

from iasf_search.build import ArchNet
from iasf_search.trial.representations import node_attention


def normalised(a: torch.Tensor) -> torch.Tensor:
    """``h_ij = a_ij / max(a)`` where ``a_ij > 0``, else 0 (an all-zero map stays zero)."""
    a = a.clamp(min=0)
    top = a.max()
    return a / top if top > 0 else torch.zeros_like(a)


@torch.no_grad()
def attention_maps(model: ArchNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{node: H}`` for every node whose op exposes ``attention_weights``, in graph order.

    ``H`` is the ``(T, T)`` attention matrix averaged over the batch ``x`` and the heads, then
    divided by its maximum; rows are queries, columns keys, in token order. ``model`` is put in
    eval mode; the maps are float32 on the CPU.
    """
    model.eval()
    return {node: normalised(a.float().mean(dim=(0, 1))).cpu() for node, a in node_attention(model, model.run(x)).items()}
