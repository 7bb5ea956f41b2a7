"""Writing a file whole or not at all (:func:`write_atomically`): every file iasf-search writes outside the database
(exports, retrained weights, reports, analyses, hardware profiles, series files) goes through it."""

from __future__ import annotations

import os
from pathlib import Path

from iasf_search.errors import BadInput

PARTIAL_SUFFIX = ".partial"
"""The suffix of a file being written (:func:`write_atomically`); one left by a killed process is no one's data."""


def write_atomically(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` whole or not at all: into a temporary file beside it, flushed to the
    disk, then renamed over ``path``. A reader never sees half a file, and a full disk leaves ``path`` as it was.

    :raises BadInput: the folder cannot take the file (disk full, read-only, no permission), naming the path; the
        temporary file is removed.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    try:
        with open(partial, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BadInput(f"{path}: cannot write it ({exc.strerror or exc}); make room or choose another folder") from None
    return path
