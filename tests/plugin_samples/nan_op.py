"""An op whose output is NaN, so training diverges at the first step."""

from __future__ import annotations

from torch import nn

from iasf_search import hookimpl
from iasf_search.components import NodeOp


class TimesNaN(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x):
        return self.linear(x) * float("nan")


class NaNOp(NodeOp):
    name = "nan_op"

    def build(self, config, ctx) -> nn.Module:
        return TimesNaN(ctx.width)


@hookimpl
def iasf_register_ops(registry) -> None:
    registry.register(NaNOp())
