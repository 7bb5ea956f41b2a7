"""An installable iasf-search plugin, written from docs/plugins.md.

It adds a node operation, ``fourier`` (FNet-style token mixing: the real part of a 2-D FFT over
tokens and channels, optionally followed by a learned channel projection), a fusion, ``maximum``
(element-wise maximum of the inputs), a cost model, ``activation_kb`` (memory of every node's
output for one sample, float32), and an auxiliary objective, ``token_smoothness`` (neighbouring
tokens of the last node stay close).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import AuxObjective, BuildContext, CostModel, Fusion, NodeOp
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


class ActivationKB(CostModel):
    name = "activation_kb"
    unit = "KiB per sample"
    description = "float32 size of every node's output for one sample"

    def measure(self, model: nn.Module, example: torch.Tensor, device: torch.device, options: Mapping[str, Any]) -> float:
        with torch.no_grad():
            forward = model.run(example[:1])
        return sum(v[0].numel() for v in forward.values.values()) * 4 / 1024


class TokenSmoothness(AuxObjective):
    name = "token_smoothness"
    description = "mean squared difference between neighbouring tokens of the last node"
    params = {"weight": Param([0.0, 0.01], float, low=0.0)}

    def loss(self, module: nn.Module, config: Mapping[str, Any], forward: Any, targets: torch.Tensor) -> torch.Tensor:
        last = forward.values[forward.order[-1]]  # (B, T, D)
        return (last[:, 1:] - last[:, :-1]).float().pow(2).mean()


@hookimpl
def iasf_register_cost_models(registry) -> None:
    registry.register(ActivationKB())


@hookimpl
def iasf_register_aux_objectives(registry) -> None:
    registry.register(TokenSmoothness())


@hookimpl
def iasf_register_ops(registry) -> None:
    registry.register(Fourier())


@hookimpl
def iasf_register_fusions(registry) -> None:
    registry.register(Maximum())
