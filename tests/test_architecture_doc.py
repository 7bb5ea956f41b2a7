"""docs/architecture.md stays true to the package tree: it names every module of the core in its room, and
every module it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "iasf_search"
DOC = ROOT / "docs" / "architecture.md"
NAMED = re.compile(r"`([\w/]+\.py)`")


def sections(text: str) -> dict[str, str]:
    """``## heading`` -> the text under it (the part before the first heading under ``""``)."""
    out, heading = {"": []}, ""
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:]
            out[heading] = []
        else:
            out[heading].append(line)
    return {h: "\n".join(lines) for h, lines in out.items()}


def rooms() -> dict[str, Path]:
    """Sub-package name (``search``) -> its folder."""
    return {init.parent.name: init.parent for init in PACKAGE.glob("*/__init__.py")}


def room_sections(text: str) -> dict[str, str]:
    """Sub-package name -> the text of the section whose heading names it as `` `name/` ``."""
    found = {}
    for heading, body in sections(text).items():
        for name in rooms():
            if f"`{name}/`" in heading:
                found[name] = body
    return found


def test_every_module_of_the_core_is_named_in_its_room():
    text = DOC.read_text(encoding="utf-8")
    by_room = room_sections(text)
    assert set(by_room) == set(rooms()), f"rooms without a section headed `name/`: {set(rooms()) - set(by_room)}"
    missing = [f"{m.name} (top level)" for m in PACKAGE.glob("*.py") if m.stem != "__init__" and f"`{m.name}`" not in text]
    for name, folder in rooms().items():
        missing += [f"{name}/{m.name}" for m in folder.glob("*.py") if m.stem != "__init__" and f"`{m.name}`" not in by_room[name]]
    assert not missing, f"docs/architecture.md does not name: {sorted(missing)}"


def test_every_module_the_document_names_exists():
    text = DOC.read_text(encoding="utf-8")
    by_room = room_sections(text)
    stale = []
    for name, body in by_room.items():
        stale += [f"{name}/{f}" for f in NAMED.findall(body) if "/" not in f and not (rooms()[name] / f).is_file()]
    for f in NAMED.findall(text):
        if "/" in f:
            if not any((base / f).is_file() for base in (ROOT, PACKAGE)):
                stale.append(f)
        elif not any(path.name == f for path in [*PACKAGE.rglob("*.py"), *(ROOT / "plugins").glob("*.py")]):
            stale.append(f)
    assert not stale, f"docs/architecture.md names modules that do not exist: {sorted(set(stale))}"


def test_the_sections_are_found():
    assert sections("intro\n## A `x/`\nbody\n## B\nmore") == {"": "intro", "A `x/`": "body", "B": "more"}
