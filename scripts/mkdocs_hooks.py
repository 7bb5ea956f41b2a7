"""MkDocs hook (``hooks:`` in mkdocs.yml): links from a page in docs/ to a file outside docs/.

The pages link to files of the repository outside docs/ (``../benchmarks/RESULTS.md``,
``../README.md``, ``../search_spaces/vision.yaml``) with plain relative links, which work on a code
host and in a checkout. MkDocs resolves relative links among the files in docs/ only, so it would
report each of them as not found, and ``mkdocs build --strict`` would fail; lowering that check
would also let broken links between pages pass. This hook runs on each page's Markdown before MkDocs
reads its links and handles only the links that leave docs/:

* a target that does not exist in the repository is a warning (so ``--strict`` fails, naming it);
* a target that exists becomes a link to that file on the code host when mkdocs.yml sets
  ``repo_url`` (``<repo_url>/blob/<extra.source_branch, default main>/<path>``), else plain text
  naming the file, since the site itself does not serve files outside docs/.

Links between pages, and their anchors, are left to MkDocs's own validation.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger("mkdocs.hooks.outside_links")

LINK = re.compile(r"(?P<image>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def outside_target(target: str, page_dir: Path, docs_dir: Path) -> Path | None:
    """The file ``target`` names when it is a relative link that leaves ``docs_dir``, else None."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path or target.startswith("/"):
        return None
    resolved = (page_dir / parts.path).resolve()
    return None if resolved.is_relative_to(docs_dir) else resolved


def rewrite(markdown: str, page_path: Path, docs_dir: Path, repo_root: Path, repo_url: str | None,
            branch: str) -> str:
    """``markdown`` with every link that leaves ``docs_dir`` checked and rewritten (fenced code left alone)."""

    def replace(match: re.Match) -> str:
        path = outside_target(match["target"], page_path.parent, docs_dir)
        if path is None:
            return match[0]
        where = f"{page_path.relative_to(docs_dir).as_posix()}: link '{match['target']}'"
        if not path.exists():
            log.warning(f"{where}: no such file in the repository")
            return match[0]
        if not path.is_relative_to(repo_root):
            log.warning(f"{where}: points outside the repository")
            return match[0]
        name = path.relative_to(repo_root).as_posix() + ("/" if path.is_dir() else "")
        anchor = urlsplit(match["target"]).fragment
        if repo_url:
            url = f"{repo_url.rstrip('/')}/blob/{branch}/{name}" + (f"#{anchor}" if anchor else "")
            return f"{match['image']}[{match['text']}]({url})"
        if match["image"]:
            log.warning(f"{where}: an image outside docs/ cannot be shown without repo_url")
            return match[0]
        text = match["text"]
        if text.strip("`").rstrip("/") == name.rstrip("/"):
            return f"`{name}`"
        return f"{text} (`{name}`)"

    lines, fenced = [], False
    for line in markdown.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        lines.append(line if fenced else LINK.sub(replace, line))
    return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):  # MkDocs passes these four by name
    docs_dir = Path(config["docs_dir"]).resolve()
    repo_root = Path(config["config_file_path"]).resolve().parent
    return rewrite(markdown, Path(page.file.abs_src_path).resolve(), docs_dir, repo_root,
                   config.get("repo_url"), (config.get("extra") or {}).get("source_branch", "main"))
