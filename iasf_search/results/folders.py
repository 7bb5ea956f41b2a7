"""The output folder a command writes into (``report --out``, ``analyze --out``)."""

from __future__ import annotations

from pathlib import Path

from iasf_search.errors import BadInput


def output_folder(out_dir: str | Path) -> Path:
    """``out_dir``, created (with its parents) when missing.

    :raises BadInput: it is a file or cannot be created.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot create it: {exc.strerror}") from None
    return out
