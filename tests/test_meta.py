"""Meta-tests of the test suite itself: its layout mirrors the code's, one test file per module.

The rooms are read from the package tree: every package under ``iasf_search/`` (a folder with an
``__init__.py``) is mirrored by the same folder under ``tests/`` (``iasf_search/search/`` by
``tests/search/``), and the built-in plugins (``plugins/``) by ``tests/plugins/``. A new sub-package is
checked without editing this file.

(The hooks are checked as a whole in tests/test_hookspecs.py, the import graph in tests/test_import_graph.py.)
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
PACKAGE = ROOT / "iasf_search"
NOT_MODULES = {"__init__", "__main__"}


def rooms() -> dict[Path, Path]:
    """Code folder -> the tests folder that mirrors it: every package of ``iasf_search`` and ``plugins/``."""
    packages = sorted(init.parent for init in PACKAGE.rglob("__init__.py") if "__pycache__" not in init.parts)
    mirrored = {package: TESTS / package.relative_to(PACKAGE) for package in packages}
    return {**mirrored, ROOT / "plugins": TESTS / "plugins"}


def expected_test_files() -> dict[Path, Path]:
    """``tests/.../test_<m>.py`` -> the module ``<m>.py`` it must test, for every module of every room."""
    return {tests / f"test_{module.stem}.py": module
            for code, tests in rooms().items() for module in sorted(code.glob("*.py")) if module.stem not in NOT_MODULES}


def collected_tests(path: Path) -> list[str]:
    """The names of the tests pytest would collect from a test file: ``test_*`` functions, also in ``Test*`` classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef) and node.name.startswith("Test")):
        names += [node.name for node in cls.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    return names


def test_every_module_has_its_test_file_in_the_mirrored_folder():
    missing = {test: module for test, module in expected_test_files().items() if not test.is_file()}
    lines = [f"{test.relative_to(ROOT)} (for {module.relative_to(ROOT)})" for test, module in missing.items()]
    assert not missing, "missing test files:\n" + "\n".join(lines)


def test_no_mirrored_test_file_is_empty():
    empty = [test.relative_to(ROOT) for test in expected_test_files() if test.is_file() and not collected_tests(test)]
    assert not empty, f"test files without a test function: {empty}"


def test_the_rooms_come_from_the_package_tree():
    found = {code.relative_to(ROOT).as_posix(): tests.relative_to(ROOT).as_posix() for code, tests in rooms().items()}
    assert {"iasf_search": "tests", "iasf_search/search": "tests/search", "iasf_search/trial": "tests/trial",
            "iasf_search/results": "tests/results", "plugins": "tests/plugins"}.items() <= found.items()
    assert all(tests.is_dir() for tests in rooms().values())
    assert len(expected_test_files()) > 30


def test_the_empty_file_check_counts_tests(tmp_path):
    (tmp_path / "test_a.py").write_text('"""Only a docstring."""\n\ndef helper():\n    pass\n', encoding="utf-8")
    (tmp_path / "test_b.py").write_text("class TestB:\n    def test_one(self):\n        pass\n", encoding="utf-8")
    assert collected_tests(tmp_path / "test_a.py") == []
    assert collected_tests(tmp_path / "test_b.py") == ["test_one"]


def test_test_file_names_are_unique_across_the_tree():
    """pytest runs without __init__.py files: two test files of the same name cannot both be imported."""
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
