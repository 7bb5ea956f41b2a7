"""Reading a YAML file with one-line errors: used by space files and hardware profiles alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from iasf_search.errors import BadInput, SpaceError


def read_yaml_document(path: str | Path, what: str, missing_fix: str) -> Any:
    """The YAML document in ``path`` (safe loading), or a one-line error naming the file:
    :class:`BadInput` when it is missing (``"<file>: no such <what>; <missing_fix>"``) or unreadable,
    :class:`SpaceError` when it is not valid YAML (with line and column)."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{file}: no such {what}; {missing_fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{file}: cannot read the {what}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(file, "", f"not valid YAML: {where}{problem}") from None
