"""Implements a misspelt hook name, which the plugin manager must reject."""

from __future__ import annotations

from iasf_search import hookimpl


@hookimpl
def iasf_register_opz(registry) -> None:
    pass
