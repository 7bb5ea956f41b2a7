"""An op that breaks the (B, T, D) -> (B, T, D) contract: it drops one channel."""

from __future__ import annotations

from torch import nn

from iasf_search import hookimpl
from iasf_search.components import NodeOp


class DropChannel(nn.Module):
    def forward(self, x):
        return x[..., :-1]


class BrokenOp(NodeOp):
    name = "broken_shape"

    def build(self, config, ctx) -> nn.Module:
        return DropChannel()


@hookimpl
def iasf_register_ops(registry) -> None:
    registry.register(BrokenOp())
