"""Registers an op called 'mlp', which the built-in ops plugin already registers."""

from __future__ import annotations

from torch import nn

from iasf_search import hookimpl
from iasf_search.components import NodeOp


class AnotherMLP(NodeOp):
    name = "mlp"

    def build(self, config, ctx) -> nn.Module:
        return nn.Identity()


@hookimpl
def iasf_register_ops(registry) -> None:
    registry.register(AnotherMLP())
