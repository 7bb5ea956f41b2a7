"""The core's imports run one way: no circle among the modules of ``iasf_search/`` at run time.

Read from the source (AST), not from ``sys.modules``: every ``import`` and ``from ... import`` counts,
also inside functions (a function-local import that dodges a circle is a circle), except those under
``if TYPE_CHECKING:`` (names for typing only). ``from package import name`` is an import of the module
``package.name`` when there is one, else of ``package``. Importing ``a.b.c`` also runs the ``__init__`` of
``a`` and ``a.b``; those implicit imports are not edges, so every package ``__init__`` stays light (the top
one re-exports the public API and no module imports names from it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "iasf_search"
EDGE_MODULES = {"iasf_search.cli"}
"""Modules at the edge that may import built-in plugins directly (the CLI registers the progress display and
the JSON event log as observers of its session); the rest of the core names plugins only as strings."""


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return inside


def imported(path: Path, known: set[str], *, runtime: bool = True, root: Path = ROOT) -> set[str]:
    """The modules of ``known`` that the file at ``path`` imports (``runtime``: leaving out ``TYPE_CHECKING`` blocks)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree) if runtime else set()
    this = module_name(path, root)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = this.split(".") if path.name == "__init__.py" else this.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            names = [f"{base}.{alias.name}" for alias in node.names]
            out.update(name for name in names if name in known)
            if any(name not in known for name in names):
                out.add(base)
    return {m for m in out if m in known and m != this}


def import_graph(*, runtime: bool = True) -> nx.DiGraph:
    found = modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(found)
    for name, path in found.items():
        graph.add_edges_from((name, target) for target in imported(path, set(found), runtime=runtime))
    return graph


def circles(graph: nx.DiGraph) -> list[list[str]]:
    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def test_the_core_has_no_import_circle_at_run_time():
    found = circles(import_graph())
    assert found == [], "runtime import circles in iasf_search/ (move the name, or import it for typing only):\n" + \
        "\n".join(" <-> ".join(c) for c in found)


CONTRACT = {"iasf_search.components", "iasf_search.hookspecs", "iasf_search.plugin_manager", "iasf_search.space.spec"}
"""The plugin contract: the hooks name the components, the loaded plugins and the space in their signatures, and
a component's methods take the loaded plugins and the space. These name each other's types (for typing only)."""


def test_type_only_imports_close_no_circle_beyond_the_plugin_contract():
    found = circles(import_graph(runtime=False))
    assert all(set(c) <= CONTRACT for c in found), f"import circles counting typing-only imports: {found}"


def test_no_module_imports_names_from_the_top_package():
    """``iasf_search/__init__.py`` imports the public API from every room: a module importing it back would close a circle."""
    graph = import_graph()
    assert sorted(m for m in graph.predecessors("iasf_search")) == []


def test_only_the_edge_imports_plugins():
    plugin_imports = sorted(m for m, target in import_graph().edges if target.startswith("iasf_search.plugins"))
    assert set(plugin_imports) <= EDGE_MODULES, plugin_imports


@pytest.mark.parametrize(("source", "expected"), [
    ("import iasf_search.search.study\n", {"iasf_search.search.study"}),
    ("from iasf_search import graph as arch\n", {"iasf_search.graph"}),
    ("from iasf_search import hookimpl\n", {"iasf_search"}),
    ("from .study import run_search\n", {"iasf_search.search.study"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from iasf_search.session import Session\n", set()),
    ("def f():\n    from iasf_search.session import Session\n", {"iasf_search.session"}),
])
def test_imports_are_read_as_python_runs_them(tmp_path, source, expected):
    path = tmp_path / "iasf_search" / "search" / "loop.py"
    path.parent.mkdir(parents=True)
    path.write_text(source, encoding="utf-8")
    known = {"iasf_search", "iasf_search.graph", "iasf_search.session", "iasf_search.search", "iasf_search.search.study"}
    assert imported(path, known, root=tmp_path) == expected


def test_a_circle_is_found():
    graph = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])
    assert circles(graph) == [["a", "b", "c"]]
