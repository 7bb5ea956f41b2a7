"""An installable iasf-search plugin, written from docs/plugins.md.

It adds one node operation, ``fourier`` (FNet-style token mixing: the real part of a 2-D FFT over
tokens and channels, optionally followed by a learned channel projection), and one fusion,
``maximum`` (element-wise maximum of the inputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import BuildContext, Fusion, NodeOp
from iasf_search.params import Param


class FourierMix(nn.Module):
    """(B, T, D) -> (B, T, D): Re(FFT_tokens(FFT_channels(x))), then an optional linear projection."""

    def __init__(self, width: int, project: bool) -> None:
        super().__init__()
        self.proj = nn.Linear(width, width) if project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.fft.fft2(x.float(), dim=(-2, -1)).real.to(x.dtype)  # FFT has no bf16 kernel
        return self.proj(mixed)


class Fourier(NodeOp):
    name = "fourier"
    description = "FNet token mixing: real part of a 2-D FFT over tokens and channels"
    params = {"project": Param([True, False], bool, help="follow the FFT with a learned D x D projection")}

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        return FourierMix(ctx.width, config["project"])

    def describe(self, config: Mapping[str, Any]) -> str:
        return "fft" + ("+proj" if config["project"] else "")


class MaxFusion(nn.Module):
    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs).amax(dim=0)


class Maximum(Fusion):
    name = "maximum"
    description = "element-wise maximum of the inputs"

    def build(self, config: Mapping[str, Any], n_inputs: int, ctx: BuildContext) -> nn.Module:
        return MaxFusion()


@hookimpl
def iasf_register_ops(registry) -> None:
    registry.register(Fourier())


@hookimpl
def iasf_register_fusions(registry) -> None:
    registry.register(Maximum())
