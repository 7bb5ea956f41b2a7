"""Rewrite the generated regions of the pages in docs/ from the code's own declarations.

A generated region sits between two markers in a Markdown page::

    <!-- generated: settings.training -->
    ...written by this script...
    <!-- end generated -->

The prose around the markers is written by hand and left alone. The regions:

* ``settings.manifold``, ``settings.training``, ``settings.split``, ``settings.metrics``, ``settings.search``,
  ``settings.prescreen``: the tables of :mod:`iasf_search.settings` (``MANIFOLD_PARAMS``, ``TRAINING_PARAMS``, ...);
* ``components.<registry>`` (``components.ops``, ``components.datasets``, ...): one per registry of
  :class:`iasf_search.plugin_manager.Components`, the built-in plugins' components with their
  ``Param(..., help=...)`` declarations. Only the built-in plugins are loaded (``autoload=False``:
  no entry points), so the output is the same on every machine;
* ``records``: the trial records named in :mod:`iasf_search.results.records`, with their docstrings.

Every region this script knows must appear in exactly one page, and every marker in a page must name
a region it knows.

Usage::

    python scripts/generate_docs.py           # rewrite the stale pages
    python scripts/generate_docs.py --check   # write nothing; exit 1 naming each stale page
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from iasf_search import settings
from iasf_search.params import Param
from iasf_search.plugin_manager import Components, load_components
from iasf_search.registry import Registry
from iasf_search.results import records

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
START = re.compile(r"^<!-- generated: (?P<name>[\w.-]+) -->\n", re.MULTILINE)
END = "<!-- end generated -->\n"


# -- formatting --------------------------------------------------------------------------------------


def yaml_value(value: Any) -> str:
    """``value`` as a space file writes it: ``null``, ``true``, ``[1, 2]``, ``{low: 1, high: 4}``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def code(value: Any) -> str:
    return f"`{yaml_value(value)}`"


def param_type(param: Param) -> str:
    kind = param.kind.__name__
    return f"{kind} or null" if param.nullable else kind


def param_allowed(param: Param) -> str:
    """The values a declaration accepts: its choices or its bounds ("—" when it states none)."""
    if param.choices is not None:
        return ", ".join(code(c) for c in param.choices)
    if param.kind is bool:
        return "`true`, `false`"
    low, high = (yaml_value(b) for b in (param.low, param.high))
    if param.low is not None and param.high is not None:
        return f"{low} to {high}"
    if param.low is not None:
        return f"≥ {low}"
    if param.high is not None:
        return f"≤ {high}"
    return "—"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


PARAM_COLUMNS = ("key", "type", "default", "allowed", "help")


def param_row(key: str, param: Param) -> list[str]:
    return [f"`{key}`", param_type(param), code(param.default), param_allowed(param), param.help or "—"]


def params_table(params: dict[str, Param]) -> list[str]:
    """One row per parameter, in declaration order: key, type, default, allowed, help."""
    return table(PARAM_COLUMNS, [param_row(key, p) for key, p in params.items()])


# -- the regions -------------------------------------------------------------------------------------


def settings_region(name: str) -> Callable[[], list[str]]:
    def render() -> list[str]:
        return [f"<!-- from iasf_search.settings.{name} by scripts/generate_docs.py; do not edit -->", "",
                *params_table(getattr(settings, name))]
    return render


EXTRA_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "datasets": [("modality", "modality")],
    "metrics": [("direction", "default direction"), ("default", "recorded by default")],
    "pruners": [("multi_objective", "several objectives")],
}
"""Class attributes that some kinds of component declare beside ``description``: (attribute, column)."""


def extra_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return code(value)


def registries(components: Components) -> dict[str, Registry]:
    """Every registry of ``components`` by attribute name, in the order :class:`Components` declares them."""
    return {f.name: getattr(components, f.name) for f in dataclasses.fields(components)
            if isinstance(getattr(components, f.name), Registry)}


def components_region(attr: str, components: Components) -> Callable[[], list[str]]:
    def render() -> list[str]:
        registry = registries(components)[attr]
        items = [registry.get(name) for name in sorted(registry)]
        extra = EXTRA_COLUMNS.get(attr, [])
        lines = [f"<!-- from the built-in plugins' registrations (Components.{attr}) by scripts/generate_docs.py; "
                 f"do not edit -->", ""]
        rows = [[f"`{item.name}`", *(extra_value(getattr(item, a)) for a, _ in extra), item.description or "—",
                 ", ".join(f"`{k}`" for k in item.params) or "none"] for item in items]
        lines += table([registry.kind, *(c for _, c in extra), "description", "parameters"], rows)
        with_params = [item for item in items if item.params]
        if with_params:
            rows = [[f"`{item.name}`", *param_row(key, p)] for item in with_params for key, p in item.params.items()]
            lines += ["", f"Parameters of each {registry.kind}:", "", *table([registry.kind, *PARAM_COLUMNS], rows)]
        return lines
    return render


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def plain_docstring(text: str) -> str:
    """A records.py docstring as Markdown: Sphinx roles and double backticks become code spans."""
    return _ROLE.sub(r"`\1`", text).replace("``", "`")


def record_rows() -> list[list[str]]:
    """Name, constant, where it is stored and what it is, for every record constant of records.py.

    Where: the section comment above it (``# -- study user attributes ...``, ``# -- system attributes ...``,
    ``# -- user attributes ...``; the last two are the trial's).
    What: the string right after it (its attribute docstring), or "—".
    """
    source = inspect.getsource(records)
    lines = source.splitlines()
    body = ast.parse(source).body
    rows = []
    for i, node in enumerate(body):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.isupper() and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            continue
        constant, value = node.targets[0].id, node.value.value
        where = next((m.group(1) for line in reversed(lines[:node.lineno - 1])
                      if (m := re.match(r"# -- ([\w ]*?attribute)s?\b", line))), None)
        if where is None:
            raise DocsError(f"records.py: {constant} stands above every '# -- ... attributes' section comment")
        if not where.startswith("study"):
            where = f"trial {where}"
        after = body[i + 1] if i + 1 < len(body) else None
        doc = (after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
               and isinstance(after.value.value, str) else "")
        what = plain_docstring(" ".join(doc.split()))
        shown = value
        if value.endswith("."):  # a prefix: its docstring starts with the full form, ``cost.<name>``: ...
            named = re.match(rf"`({re.escape(value)}<\w+>)`:? ?", what)
            shown, what = (named.group(1), what[named.end():]) if named else (f"{value}<name>", what)
        rows.append([f"`{shown}`", f"`{constant}`", where, what[:1].upper() + what[1:] if what else "—"])
    return rows


def records_region() -> list[str]:
    rows = record_rows()  # in records.py's order, which groups them
    return ["<!-- from iasf_search/results/records.py by scripts/generate_docs.py; do not edit -->", "",
            *table(["record", "constant", "stored as", "what"], rows)]


def regions() -> dict[str, Callable[[], list[str]]]:
    """Every region this script writes, by the name its markers carry."""
    components = load_components(autoload=False)
    out: dict[str, Callable[[], list[str]]] = {
        "settings.manifold": settings_region("MANIFOLD_PARAMS"),
        "settings.training": settings_region("TRAINING_PARAMS"),
        "settings.split": settings_region("SPLIT_PARAMS"),
        "settings.metrics": settings_region("METRICS_PARAMS"),
        "settings.search": settings_region("SEARCH_PARAMS"),
        "settings.prescreen": settings_region("PRESCREEN_PARAMS"),
    }
    for attr in registries(components):
        out[f"components.{attr}"] = components_region(attr, components)
    out["records"] = records_region
    return out


# -- pages -------------------------------------------------------------------------------------------


class DocsError(Exception):
    """A marker that names no region, a region in no page or in two, or a region without its end marker."""


def render_page(text: str, page: str, known: dict[str, Callable[[], list[str]]], seen: dict[str, str]) -> str:
    """``text`` with each generated region rewritten; ``seen`` collects region name -> page."""
    out, pos = [], 0
    for match in START.finditer(text):
        if match.start() < pos:
            continue
        name = match.group("name")
        if name not in known:
            raise DocsError(f"{page}: unknown generated region '{name}'; known: {', '.join(sorted(known))}")
        if name in seen:
            raise DocsError(f"{page}: region '{name}' is also in {seen[name]}; keep one")
        seen[name] = page
        end = text.find(END, match.end())
        if end < 0:
            raise DocsError(f"{page}: region '{name}' has no '{END.strip()}' line")
        out += [text[pos:match.end()], "\n".join(known[name]()) + "\n", END]
        pos = end + len(END)
    out.append(text[pos:])
    return "".join(out)


def stale_pages(*, write: bool, docs: Path = DOCS) -> list[Path]:
    """The pages whose generated regions differ from what the code says; rewritten when ``write``."""
    known = regions()
    seen: dict[str, str] = {}
    rendered = {}
    for path in sorted(docs.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        new = render_page(text, path.relative_to(ROOT).as_posix(), known, seen)
        if new != text:
            rendered[path] = new
    missing = sorted(set(known) - set(seen))
    if missing:
        raise DocsError(f"generated regions in no page of {docs.relative_to(ROOT)}/: {', '.join(missing)}; "
                        f"add '<!-- generated: NAME -->' and '{END.strip()}' lines where each belongs")
    if write:
        for path, new in rendered.items():
            path.write_text(new, encoding="utf-8")
    return list(rendered)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each stale page")
    args = parser.parse_args(argv)
    try:
        stale = stale_pages(write=not args.check)
    except DocsError as exc:
        print(f"generate_docs: error: {exc}", file=sys.stderr)
        return 2
    for path in stale:
        name = path.relative_to(ROOT).as_posix()
        if args.check:
            print(f"{name} is stale: run python scripts/generate_docs.py", file=sys.stderr)
        else:
            print(f"rewrote {name}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
