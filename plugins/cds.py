"""The cross-domain synthesis (CDS) score (seed 000 §2.1: O_CDS(f1, f2) = ∫ ∇f1 · ∇f2 dμ).

For every node that fuses several inputs, the gradients of the classification loss that flow
into the fusion through each input branch are compared: their inner product and cosine,
averaged over pairs of branches and over the batch. ``measure`` records them per fusion node
after training (``aux.cds`` on the trial: ``<node>.cosine``, ``<node>.inner`` and the mean
``cosine``). With ``weight > 0`` the term ``1 - mean cosine`` is also a regulariser that pushes
the branches' gradients into alignment; it needs a second backward pass, so it costs time.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import AuxObjective
from iasf_search.params import Param


def branch_alignment(forward: Any, targets: torch.Tensor, *, create_graph: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{fusion node: (mean cosine, mean inner product)}`` of the per-branch loss gradients."""
    nodes = list(forward.fusion_inputs)
    if not nodes:
        return {}
    loss = F.cross_entropy(forward.logits.float(), targets)
    inputs = [t for n in nodes for t in forward.fusion_inputs[n]]
    grads = torch.autograd.grad(loss, inputs, create_graph=create_graph, allow_unused=True)
    out, i = {}, 0
    for n in nodes:
        k = len(forward.fusion_inputs[n])
        flat = [(g if g is not None else torch.zeros_like(t)).reshape(len(t), -1).float()
                for g, t in zip(grads[i:i + k], inputs[i:i + k], strict=True)]  # (B, T*D) per branch
        i += k
        pairs = list(itertools.combinations(flat, 2))
        cos = torch.stack([F.cosine_similarity(a, b, dim=-1).mean() for a, b in pairs]).mean()
        inner = torch.stack([(a * b).sum(-1).mean() for a, b in pairs]).mean()
        out[n] = (cos, inner)
    return out


class CDS(AuxObjective):
    name = "cds"
    description = "gradient alignment of the branches entering each fusion node (measured; a regulariser when weight > 0)"
    needs_fusion_inputs = True
    needs_double_backward = True
    params = {"weight": Param(0.0, float, low=0.0, help="weight of 1 - mean cosine in the training loss (0: measured only)")}

    def loss(self, module: nn.Module, config: Mapping[str, Any], forward: Any, targets: torch.Tensor) -> torch.Tensor:
        aligned = branch_alignment(forward, targets, create_graph=True)
        if not aligned:
            return forward.logits.new_zeros(())
        return 1 - torch.stack([cos for cos, _ in aligned.values()]).mean()

    def measure(self, module: nn.Module, config: Mapping[str, Any], forward: Any, targets: torch.Tensor) -> dict[str, float]:
        aligned = branch_alignment(forward, targets, create_graph=False)
        out = {}
        for n, (cos, inner) in aligned.items():
            out[f"{n}.cosine"] = float(cos)
            out[f"{n}.inner"] = float(inner)
        if aligned:
            out["cosine"] = sum(float(c) for c, _ in aligned.values()) / len(aligned)
        return out


@hookimpl
def iasf_register_aux_objectives(registry) -> None:
    registry.register(CDS())
