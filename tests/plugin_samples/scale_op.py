"""A well-behaved third-party op: ``scaled_linear`` = factor * Linear(x)."""

from __future__ import annotations

from torch import nn

from iasf_search import hookimpl
from iasf_search.components import BuildContext, NodeOp
from iasf_search.params import Param


class ScaledLinear(nn.Module):
    def __init__(self, width: int, factor: float) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.factor = factor

    def forward(self, x):
        return self.factor * self.linear(x)


class ScaledLinearOp(NodeOp):
    name = "scaled_linear"
    description = "factor * Linear(x)"
    params = {"factor": Param([0.5, 1.0], float, low=0.0)}

    def build(self, config, ctx: BuildContext) -> nn.Module:
        return ScaledLinear(ctx.width, config["factor"])


@hookimpl
def iasf_register_ops(registry) -> None:
    registry.register(ScaledLinearOp())
