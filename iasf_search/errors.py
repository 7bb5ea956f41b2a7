"""Errors that the CLI turns into a one-line message: exit status 2 for bad input, 1 for a search that failed."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

_BREAKS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with control characters and line breaks written as escapes (``\\n``): an error stays one line, whatever
    a key or value it quotes holds."""
    return _BREAKS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class BadInput(Exception):
    """User input is wrong (space file, flags, dataset, plugin); the message says what and how to fix it.

    The CLI prints ``iasf-search: error: <message>`` and exits with status 2, without a traceback.
    """


class SearchFailed(Exception):
    """A search stopped because every trial it ran failed; the message names the first failure's reason.

    The CLI prints ``iasf-search: error: <message>`` and exits with status 1, without a traceback: the input was
    valid, but nothing could be trained (a broken plugin, data the ops cannot take, too little memory).
    """

    kind = "search_failed"
    """The ``kind`` of the JSON ``error`` event (``--log-format json``)."""


class DiskFull(SearchFailed):
    """A search could not write a file because its disk is full (the message names the path). The search stops, exit
    status 1; the same command resumes it once there is room."""

    kind = "disk_full"


MAX_PROBLEM = 1000
"""The longest problem a :class:`SpaceError` states; a longer one is cut, saying how long it was."""


class SpaceError(BadInput):
    """A search-space file is invalid at ``key`` (a dotted path such as ``manifold.ops.attention``)."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        key, problem = one_line(str(key)), one_line(problem)
        if len(problem) > MAX_PROBLEM:  # a long value quoted in full (a list of thousands) would bury the line
            tail = f" ... ({len(problem):,} characters in all)"
            problem = problem[:MAX_PROBLEM - len(tail)] + tail
        self.file, self.key, self.problem = file, key, problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def allowed(options: Iterable[str]) -> str:
    """``"allowed: a, b, c"`` for an error message."""
    return "allowed: " + ", ".join(sorted(str(o) for o in options))
