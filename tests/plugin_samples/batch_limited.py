"""An op that runs out of memory when it trains on more than 32 samples at once (as a model too large
for its GPU at the configured batch does); smaller micro-batches fit."""

from __future__ import annotations

import torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import NodeOp

LIMIT = 32


class _BatchLimited(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x):
        if self.training and x.shape[0] > LIMIT:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.shape[0]} samples' worth")
        return self.linear(x)


class BatchLimited(NodeOp):
    name = "batch_limited"

    def build(self, config, ctx):
        return _BatchLimited(ctx.width)


@hookimpl
def iasf_register_ops(registry) -> None:
    registry.register(BatchLimited())
