"""Built-in cost models: trainable parameters and forward FLOPs per sample.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` while attention runs on the
math kernel: the fused CPU kernel of ``F.scaled_dot_product_attention`` has no FLOP formula and
would count as zero. Multiply-adds count as 2 FLOPs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from iasf_search import hookimpl
from iasf_search.components import CostModel


class Params(CostModel):
    name = "params"
    unit = "parameters"
    description = "trainable parameters of the deployable model"

    def measure(self, model: nn.Module, example: torch.Tensor, device: torch.device, options: Mapping[str, Any]) -> float:
        return float(sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("aux_modules.")))


class Flops(CostModel):
    name = "flops"
    unit = "FLOP per sample"
    description = "forward FLOPs per sample (torch FlopCounterMode, attention counted on the math kernel)"

    def measure(self, model: nn.Module, example: torch.Tensor, device: torch.device, options: Mapping[str, Any]) -> float:
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
            model(example)
        return float(counter.get_total_flops()) / len(example)


@hookimpl
def iasf_register_cost_models(registry) -> None:
    registry.register(Params())
    registry.register(Flops())
