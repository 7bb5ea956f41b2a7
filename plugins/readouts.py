"""Built-in readouts: how the head turns the output node's normalised tokens ``(B, T, D)`` into features.

The head is ``Linear(F, classes)`` over what the readout returns, ``(B, F)``:

* ``mean`` — the mean over tokens (``F = D``); what a graph that names no readout gets;
* ``max`` — the maximum over tokens, per channel (``F = D``);
* ``mean_max`` — both, concatenated (``F = 2D``);
* ``class_token`` — a learned query token attends over the tokens, one class-attention layer as in
  CaiT (attention then a feed-forward block, each residual) (``F = D``); ``heads`` must divide the width;
* ``flatten`` — every token's features side by side (``F = T * D``): the head is then a linear map over
  all positions. ``T`` comes from the stem's layout, so the model serves inputs of the size it was built for.

With padded series (:mod:`iasf_search.build`), ``mean``, ``max``, ``mean_max`` and ``class_token`` read
the real tokens only: a short series is not diluted by its padding. ``flatten`` sees the padded tokens
as zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import BuildContext, Readout
from iasf_search.params import Param, Range
from iasf_search.plugins.ops import heads_fit_widths


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mean over tokens ``(B, T, D) -> (B, D)`` of the real ones (``mask`` True; all without a mask)."""
    if mask is None:
        return x.mean(dim=1)
    weight = mask[..., None].to(x.dtype)
    return (x * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The maximum over tokens ``(B, T, D) -> (B, D)`` of the real ones (``mask`` True; all without a mask)."""
    if mask is None:
        return x.amax(dim=1)
    return x.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)


class MeanTokens(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return masked_mean(x, mask)


class MaxTokens(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return masked_max(x, mask)


class MeanMaxTokens(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([masked_mean(x, mask), masked_max(x, mask)], dim=-1)  # (B, 2D)


class FlattenTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)  # (B, T * D)


class ClassAttention(nn.Module):
    """CaiT's class attention (Touvron et al. 2021), one layer: a learned class token ``c`` reads the tokens.

    ``u = LN([c; x])``, ``c = c + proj(softmax(q(u_0) k(u)^T / sqrt(d)) v(u))``, then ``c = c + mlp(LN(c))``;
    returns ``LN(c)``, ``(B, D)``. Only the class token is updated, so the cost is linear in ``T``.
    With a padding ``mask``, the class token attends to itself and the real tokens only.
    """

    def __init__(self, width: int, heads: int, expansion: int = 2) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"{heads} heads do not divide width {width}")
        self.heads = heads
        self.token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.trunc_normal_(self.token, std=0.02)
        self.norm1 = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, expansion * width), nn.GELU(), nn.Linear(expansion * width, width))
        self.out_norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = x.shape
        H = self.heads
        c = self.token.expand(B, -1, -1).to(x.dtype)  # (B, 1, D)
        u = self.norm1(torch.cat([c, x], dim=1))  # (B, 1 + T, D)
        q = self.q(u[:, :1]).view(B, 1, H, D // H).transpose(1, 2)  # (B, H, 1, hd)
        k, v = self.kv(u).view(B, T + 1, 2, H, D // H).permute(2, 0, 3, 1, 4)  # (B, H, 1 + T, hd) each
        keys = None if mask is None else torch.cat([mask.new_ones(B, 1), mask], dim=1)[:, None, None, :]  # (B, 1, 1, 1 + T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)  # (B, H, 1, hd)
        c = c + self.proj(y.transpose(1, 2).reshape(B, 1, D))
        c = c + self.mlp(self.norm2(c))
        return self.out_norm(c[:, 0])  # (B, D)


class _Pooling(Readout):
    module: type

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        return self.module()


class Mean(_Pooling):
    name, module, description = "mean", MeanTokens, "mean over tokens (the default)"


class Max(_Pooling):
    name, module, description = "max", MaxTokens, "maximum over tokens, per channel"


class MeanMax(_Pooling):
    name, module, description = "mean_max", MeanMaxTokens, "mean and maximum over tokens, concatenated (2D features)"

    def features(self, config: Mapping[str, Any], ctx: BuildContext) -> int:
        return 2 * ctx.width


class Flatten(_Pooling):
    name, module, description = "flatten", FlattenTokens, "every token's features side by side: a linear head over all positions"

    def features(self, config: Mapping[str, Any], ctx: BuildContext) -> int:
        return ctx.layout.length * ctx.width


class ClassToken(Readout):
    name = "class_token"
    description = "a learned query token attends over the tokens (one CaiT class-attention layer)"
    params = {"heads": Param([1, 2], int, low=1, help="attention heads (must divide the width)")}

    def check_ranges(self, ranges: Mapping[str, Range], *, widths: tuple[int, ...] | None) -> tuple[str, str] | None:
        return heads_fit_widths(ranges, widths)

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        return ClassAttention(ctx.width, config["heads"])

    def describe(self, config: Mapping[str, Any]) -> str:
        return f"cls/h{config['heads']}"


@hookimpl
def iasf_register_readouts(registry) -> None:
    for readout in (Mean(), Max(), MeanMax(), ClassToken(), Flatten()):
        registry.register(readout)
