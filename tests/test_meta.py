"""Meta-tests of the test suite itself: its layout mirrors the code's, one test file per module.

(The hooks are checked as a whole in tests/test_hookspecs.py.)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
ROOMS = {
    ROOT / "iasf_search": TESTS,
    ROOT / "iasf_search" / "hardware": TESTS / "hardware",
    ROOT / "iasf_search" / "results": TESTS / "results",
    ROOT / "plugins": TESTS / "plugins",
}
"""Code folder -> the tests folder that mirrors it."""
NOT_MODULES = {"__init__", "__main__"}


def expected_test_files() -> dict[Path, Path]:
    """``tests/.../test_<m>.py`` -> the module ``<m>.py`` it must test, for every module of every room."""
    return {tests / f"test_{module.stem}.py": module
            for code, tests in ROOMS.items() for module in sorted(code.glob("*.py")) if module.stem not in NOT_MODULES}


def test_every_module_has_its_test_file_in_the_mirrored_folder():
    missing = {test: module for test, module in expected_test_files().items() if not test.is_file()}
    lines = [f"{test.relative_to(ROOT)} (for {module.relative_to(ROOT)})" for test, module in missing.items()]
    print("missing test files:\n" + "\n".join(lines))
    assert not missing, "missing test files:\n" + "\n".join(lines)


def test_the_rooms_exist():
    assert all(code.is_dir() and tests.is_dir() for code, tests in ROOMS.items())
    assert len(expected_test_files()) > 30


def test_test_file_names_are_unique_across_the_tree():
    """pytest runs without __init__.py files: two test files of the same name cannot both be imported."""
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
