"""The README and docs/ cannot drift: the generated tables are current, every relative link and anchor
resolves, the README stays short and keeps the two commands CI runs word for word."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import yaml

from iasf_search import hookspecs

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

INSTALL_AND_SEARCH = ("```bash\npython3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e . "
                      "&& iasf-search --space search_spaces/vision.yaml\n```")
INSTALL_AND_TEST = "```bash\npip install -e '.[test]' ./examples/iasf-example-plugin && python -m pytest -q\n```"

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
CODE_SPAN = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of the lines outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append((number, line))
    return out


def github_slug(heading: str) -> str:
    """The anchor a code host gives a heading: link markup and code ticks dropped, lower case,
    punctuation other than ``-`` and ``_`` removed, each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page; a repeated heading gets ``-1``, ``-2``, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(1))
            out.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of ``page`` whose file does not exist in the repository ``root``, or whose
    ``#anchor`` names no heading of the Markdown file it points into. External links are not checked."""
    broken = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        for match in LINK.finditer(CODE_SPAN.sub("code", line)):
            target = match["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(root)}:{number}: {target}"
            if not file.is_relative_to(root) or not file.exists():
                broken.append(f"{where}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{where}: no heading '#{anchor}' in {file.relative_to(root)}")
    return broken


def _generate_docs():
    spec = importlib.util.spec_from_file_location("generate_docs", ROOT / "scripts" / "generate_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_tables_are_current():
    stale = [p.relative_to(ROOT).as_posix() for p in _generate_docs().stale_pages(write=False)]
    assert not stale, f"stale generated docs: {stale}; run python scripts/generate_docs.py"


def test_every_relative_link_and_anchor_resolves():
    broken = [problem for page in PAGES for problem in broken_links(page)]
    assert not broken, "\n".join(broken)


def test_the_link_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## `task` (the data)\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#task-the-data) [ok](#a-heading) [bad](missing.md) [bad](other.md#nope) "
                    "`[not a link](missing.md)` [web](https://example.com/x)\n\n# A heading\n"
                    "```\n[in code](missing.md)\n```\n")
    assert broken_links(page, root=tmp_path) == ["page.md:1: missing.md: no such file",
                                  "page.md:1: other.md#nope: no heading '#nope' in other.md"]


def test_the_readme_is_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= 260, f"README.md has {lines} lines; move the detail into a page of docs/"


def test_the_readme_keeps_the_two_commands_and_ci_runs_the_second_word_for_word():
    text = README.read_text(encoding="utf-8")
    assert INSTALL_AND_SEARCH in text
    assert INSTALL_AND_TEST in text
    last_line = (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip("\n").splitlines()[-1]
    assert f"```bash\n{last_line}\n```" == INSTALL_AND_TEST


def test_every_page_is_one_click_from_the_readme_and_in_the_site_nav():
    readme_links = {m["target"].partition("#")[0] for _, line in prose_lines(README.read_text(encoding="utf-8"))
                    for m in LINK.finditer(CODE_SPAN.sub("code", line))}
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    in_nav = {page for entry in nav for page in entry.values()}
    for page in sorted(DOCS.glob("*.md")):
        assert f"docs/{page.name}" in readme_links, f"README.md does not link docs/{page.name}"
        assert page.name in in_nav, f"mkdocs.yml's nav leaves out {page.name}"


def test_every_hook_is_in_the_plugin_guide_with_its_signature():
    guide = (DOCS / "plugins.md").read_text(encoding="utf-8")
    hooks = {name: fn for name, fn in vars(hookspecs).items() if hasattr(fn, "iasf_search_spec")}
    assert hooks
    missing = [name for name, fn in hooks.items() if f"`{name}({', '.join(inspect.signature(fn).parameters)})`" not in guide]
    assert not missing, f"hooks missing from docs/plugins.md's table: {missing}"
