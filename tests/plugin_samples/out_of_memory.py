"""An op that runs out of memory in training (as a too-large model does on a GPU)."""

from __future__ import annotations

import torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import NodeOp


class _Exhausts(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x):
        if self.training and torch.is_grad_enabled():  # training, not the shape check when the model is built
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.linear(x)


class OutOfMemory(NodeOp):
    name = "oom"

    def build(self, config, ctx):
        return _Exhausts(ctx.width)


@hookimpl
def iasf_register_ops(registry) -> None:
    registry.register(OutOfMemory())
