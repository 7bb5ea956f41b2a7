"""Registers something that is not a NodeOp instance."""

from __future__ import annotations

from iasf_search import hookimpl


@hookimpl
def iasf_register_ops(registry) -> None:
    registry.register("attention2")
