"""Writing a file whole or not at all (:func:`write_atomically`): every file iasf-search writes outside the database
(exports, retrained weights, reports, analyses, hardware profiles, series files) goes through it, and a search's trial
files (checkpoints, diagrams, heat maps) through :func:`write_search_file`, which stops the search on a full disk."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from iasf_search.errors import BadInput, DiskFull

PARTIAL_SUFFIX = ".partial"
"""The suffix of a file being written (:func:`write_atomically`); one left by a killed process is no one's data."""
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
"""The errors of a write that found no room: the disk is full, or the user's quota is."""


def write_atomically(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` whole or not at all: into a temporary file beside it, flushed to the
    disk, then renamed over ``path``. A reader never sees half a file, and a full disk leaves ``path`` as it was.

    :raises BadInput: the folder cannot take the file (disk full, read-only, no permission), naming the path; the
        temporary file is removed.
    """
    path = Path(path)
    try:
        write_whole(path, data)
    except OSError as exc:
        raise BadInput(f"{path}: cannot write it ({exc.strerror or exc}); make room or choose another folder") from None
    return path


def write_whole(path: Path, data: bytes | str | BinaryIO) -> None:
    """:func:`write_atomically`'s work, from bytes, text or a binary stream, raising ``OSError`` (the temporary file
    removed)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    try:
        with open(partial, "wb") as f:
            if isinstance(data, (bytes, str)):
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            else:
                shutil.copyfileobj(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise


def write_search_file(path: Path, data: bytes | str | BinaryIO) -> None:
    """Write a file a running search needs (a trial's checkpoint, diagram or heat map) whole or not at all.

    :raises DiskFull: no room for it (the search stops; the message names the folder and how to go on).
    :raises OSError: any other failure (the trial fails with it as its reason).
    """
    try:
        write_whole(path, data)
    except OSError as exc:
        if exc.errno in FULL_DISK:
            raise DiskFull(f"{path.parent}: the disk is full ({exc.strerror}); the search stopped; make room and run the "
                           f"same command to resume the study") from None
        raise
