"""Reading a YAML file with one-line errors: used by space files and hardware profiles alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from iasf_search.errors import BadInput, SpaceError

MAX_VALUES = 100_000
"""The most values (scalars, lists and mappings, each alias counted as what it expands to) a YAML document may hold:
far more than any space file or hardware profile, far fewer than an alias bomb expands to."""


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
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            if (problem := _expansion_problem(node)) is not None:
                raise SpaceError(file, "", problem)
            return loader.construct_document(node)
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(file, "", f"not valid YAML: {where}{problem}") from None
    finally:
        loader.dispose()


def _expansion_problem(node: yaml.Node) -> str | None:
    """Why the document ``node`` roots must not be built, or None: it refers to itself through an alias, or its
    aliases expand it to more than :data:`MAX_VALUES` values (a "billion laughs" file of a few hundred bytes)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:  # depth first, children before their parent, each node once (aliases share nodes)
        current, children_done = stack.pop()
        key = id(current)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(current))
            if sizes[key] > MAX_VALUES:
                return (f"the document expands to over {MAX_VALUES:,} values through YAML aliases (anchors used many "
                        f"times over); a space file needs no aliases that deep: write the values out")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            return "a YAML alias refers to the value that holds it (a recursive document); remove the alias"
        open_nodes.add(key)
        stack.append((current, True))
        stack.extend((child, False) for child in _children(current) if id(child) not in sizes)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
