"""The markdown optuna-dashboard renders in notes (a trial's, the study's): numbers and table rows that read well there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SPACER = "\u2003"  # an em space: markdown keeps it (it trims only spaces and tabs), the dashboard shows a gap


def number(value: Any) -> str:
    """``1,234``, ``0.9812``, ``3.2e+06`` shown as ``3,200,000``: an int with thousands separators, a float with 4
    significant digits (whole above 10,000), anything else as ``str``."""
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def table_row(cells: Sequence[str]) -> str:
    """A markdown table row; every cell but the last ends with :data:`SPACER`, since optuna-dashboard
    pads cells by 1 px and columns would otherwise run together."""
    shown = [c.replace("|", "\\|") + (SPACER if c and i < len(cells) - 1 else "") for i, c in enumerate(cells)]
    return "| " + " | ".join(shown) + " |"
