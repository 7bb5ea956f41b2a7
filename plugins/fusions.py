"""Built-in fusion (cross-domain synthesis) operators for nodes that read several inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import BuildContext, Fusion
from iasf_search.params import Param, Range
from iasf_search.plugins.ops import heads_fit_widths


class SumFusion(nn.Module):
    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = inputs[0]  # chained adds: no stacked copy of the inputs (half the time of stack + sum)
        for x in inputs[1:]:
            out = out + x
        return out


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


class CrossAttentionFusion(nn.Module):
    """The first input attends to the others (seed 001 §3.2.2: scores Z_i Z_j^T / sqrt(d)), plus a residual.

    ``x_1 + proj(softmax(q(x_1) k(X)^T / sqrt(d)) v(X))`` where ``X`` concatenates inputs 2..k along
    the token axis; ``heads`` split the width as in self-attention. Order matters: slot 0 is the query.
    With a padding ``mask`` (``(B, T)``), the query attends to the other inputs' real tokens only.
    """

    def __init__(self, n: int, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"{heads} heads do not divide width {width}")
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, inputs: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        query, others = inputs[0], torch.cat(inputs[1:], dim=1)  # (B, T, D), (B, (k-1)T, D)
        B, T, D = query.shape
        H = self.heads
        q = self.q(query).view(B, T, H, D // H).transpose(1, 2)  # (B, H, T, hd)
        k, v = self.kv(others).view(B, -1, 2, H, D // H).permute(2, 0, 3, 1, 4)  # (B, H, S, hd) each
        keys = None if mask is None else mask.repeat(1, len(inputs) - 1)[:, None, None, :]  # (B, 1, 1, S)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)  # (B, H, T, hd)
        return query + self.proj(y.transpose(1, 2).reshape(B, T, D))


class AlphaProductFusion(nn.Module):
    """Seed 001 §2.2's alpha-gated product: ``a * prod_i x_i + (1 - a) * mean_i x_i``, ``a = sigmoid(alpha)``.

    ``alpha`` is learned per channel and starts at -2 (a ~ 0.12), so training starts close to the mean
    and the multiplicative interaction grows only where it helps.
    """

    def __init__(self, n: int, width: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((width,), -2.0))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        a = torch.sigmoid(self.alpha)
        stacked = torch.stack(inputs)  # (k, B, T, D)
        return a * stacked.prod(0) + (1 - a) * stacked.mean(0)


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


class AlphaProduct(_Simple):
    name, module, description = "alpha_product", AlphaProductFusion, "alpha-gated element-wise product (seed 001 §2.2)"


class CrossAttention(Fusion):
    name = "cross_attention"
    description = "the first input attends to the others (seed 001 §3.2.2), with a residual"
    params = {"heads": Param([1, 2], int, low=1, help="attention heads (must divide the width)")}

    def check_ranges(self, ranges: Mapping[str, Range], *, widths: tuple[int, ...] | None) -> tuple[str, str] | None:
        return heads_fit_widths(ranges, widths)

    def build(self, config: Mapping[str, Any], n_inputs: int, ctx: BuildContext) -> nn.Module:
        return CrossAttentionFusion(n_inputs, ctx.width, config["heads"])


@hookimpl
def iasf_register_fusions(registry) -> None:
    for fusion in (Sum(), Concat(), Gated(), BetaSoftmax(), CrossAttention(), AlphaProduct()):
        registry.register(fusion)
