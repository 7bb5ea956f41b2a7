"""A fusion that breaks the list[(B, T, D)] -> (B, T, D) contract: it concatenates without projecting."""

from __future__ import annotations

import torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import Fusion


class RawConcat(nn.Module):
    def forward(self, inputs):
        return torch.cat(inputs, dim=-1)


class BrokenFusion(Fusion):
    name = "raw_concat"

    def build(self, config, n_inputs, ctx) -> nn.Module:
        return RawConcat()


@hookimpl
def iasf_register_fusions(registry) -> None:
    registry.register(BrokenFusion())
