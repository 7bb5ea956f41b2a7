"""Built-in fusion (cross-domain synthesis) operators for nodes that read several inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import BuildContext, Fusion


class SumFusion(nn.Module):
    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs).sum(0)


class ConcatFusion(nn.Module):
    """Concatenate along channels, project back: (B, T, k*D) -> (B, T, D)."""

    def __init__(self, n: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(n * width, width)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.proj(torch.cat(inputs, dim=-1))


class GatedFusion(nn.Module):
    """sum_i sigmoid(W_i x_i) * x_i: each input decides, per token and channel, how much passes."""

    def __init__(self, n: int, width: int) -> None:
        super().__init__()
        self.gates = nn.ModuleList(nn.Linear(width, width) for _ in range(n))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return sum(torch.sigmoid(g(x)) * x for g, x in zip(self.gates, inputs, strict=True))


class BetaSoftmaxFusion(nn.Module):
    """sum_i softmax(beta)_i x_i with learned logits beta (seed 001 §3.2.3), one per input and channel."""

    def __init__(self, n: int, width: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(n, width))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        weights = torch.softmax(self.beta, dim=0)  # (n, D)
        return sum(w * x for w, x in zip(weights, inputs, strict=True))


class _Simple(Fusion):
    module: type

    def build(self, config: Mapping[str, Any], n_inputs: int, ctx: BuildContext) -> nn.Module:
        return self.module() if self.module is SumFusion else self.module(n_inputs, ctx.width)


class Sum(_Simple):
    name, module, description = "sum", SumFusion, "element-wise sum"


class Concat(_Simple):
    name, module, description = "concat", ConcatFusion, "concatenation + linear projection"


class Gated(_Simple):
    name, module, description = "gated", GatedFusion, "per-input sigmoid gates, summed"


class BetaSoftmax(_Simple):
    name, module, description = "beta_softmax", BetaSoftmaxFusion, "softmax(beta)-weighted sum, beta learned"


@hookimpl
def iasf_register_fusions(registry) -> None:
    for fusion in (Sum(), Concat(), Gated(), BetaSoftmax()):
        registry.register(fusion)
