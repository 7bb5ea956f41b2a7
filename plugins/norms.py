"""Built-in norms: what a residual node applies to its input before its op, ``x + op(norm(x))``.

* ``layer`` — ``nn.LayerNorm(D)``, each token normalised over its channels; what a node that names no norm gets;
* ``batch`` — ``BatchNorm1d(D)`` over ``(B, T, D)`` tokens: each channel normalised with statistics over the
  batch and the tokens (running statistics in eval mode); with padded series, over the real tokens only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import BuildContext, Norm


class TokenBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` for tokens ``(B, T, D)``: per channel, over the batch and the tokens (the real ones,
    ``mask`` True, when training on padded series; padded tokens then come out as zeros)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None or not self.training:  # running statistics are per token: padding changes nothing
            return super().forward(x.reshape(-1, x.shape[-1])).view_as(x)
        normed = super().forward(x[mask])  # (real tokens, D); under autocast its dtype may differ from x's
        out = normed.new_zeros(x.shape)
        out[mask] = normed
        return out


class Layer(Norm):
    name = "layer"
    description = "LayerNorm over each token's channels (the default)"

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        return nn.LayerNorm(ctx.width)


class Batch(Norm):
    name = "batch"
    description = "BatchNorm over each channel, statistics over the batch and the tokens"

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        return TokenBatchNorm(ctx.width)

    def describe(self, config: Mapping[str, Any]) -> str:
        return "bn"


@hookimpl
def iasf_register_norms(registry) -> None:
    registry.register(Layer())
    registry.register(Batch())
