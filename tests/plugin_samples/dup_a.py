"""Registers op 'twin'; loading dup_a and dup_b together is a name clash."""

from __future__ import annotations

from torch import nn

from iasf_search import hookimpl
from iasf_search.components import NodeOp


class Twin(NodeOp):
    name = "twin"

    def build(self, config, ctx) -> nn.Module:
        return nn.Identity()


@hookimpl
def iasf_register_ops(registry) -> None:
    registry.register(Twin())
