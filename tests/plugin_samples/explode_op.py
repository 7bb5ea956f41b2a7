"""An op that raises RuntimeError in forward when its ``explode`` parameter is true."""

from __future__ import annotations

from torch import nn

from iasf_search import hookimpl
from iasf_search.components import NodeOp
from iasf_search.params import Param


class MaybeExplode(nn.Module):
    def __init__(self, width: int, explode: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.explode = explode

    def forward(self, x):
        if self.explode:
            raise RuntimeError("boom: this op explodes")
        return self.linear(x)


class ExplodeOp(NodeOp):
    name = "explode"
    params = {"explode": Param([True, False], bool)}

    def build(self, config, ctx) -> nn.Module:
        return MaybeExplode(ctx.width, config["explode"])


@hookimpl
def iasf_register_ops(registry) -> None:
    registry.register(ExplodeOp())
