"""Implements a hook without the ``iasf_`` prefix, which the plugin manager must reject."""

from __future__ import annotations

from iasf_search import hookimpl


@hookimpl
def register_ops(registry) -> None:
    pass
