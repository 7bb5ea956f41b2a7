"""Writing a file whole or not at all."""

from __future__ import annotations

import errno
import io
import os

import pytest

from iasf_search.errors import BadInput, DiskFull
from iasf_search.files import PARTIAL_SUFFIX, write_atomically, write_search_file


def test_text_and_bytes_land_whole(tmp_path):
    assert write_atomically(tmp_path / "a.txt", "héllo\n").read_text(encoding="utf-8") == "héllo\n"
    assert write_atomically(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


def test_a_full_disk_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    target = write_atomically(tmp_path / "model.json", "old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(BadInput) as err:
        write_atomically(target, "new" * 1000)
    assert str(err.value) == f"{target}: cannot write it (No space left on device); make room or choose another folder"
    assert target.read_text() == "old"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]


def test_an_unwritable_folder_is_one_line(tmp_path):
    with pytest.raises(BadInput, match=r"nowhere/x.txt: cannot write it \(No such file or directory\)"):
        write_atomically(tmp_path / "nowhere" / "x.txt", "x")


def test_a_search_file_from_a_stream_and_a_full_disk_that_stops_the_search(tmp_path, monkeypatch):
    write_search_file(tmp_path / "ckpt", io.BytesIO(b"weights" * 1000))
    assert (tmp_path / "ckpt").read_bytes() == b"weights" * 1000

    def full(fd):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFull) as err:
        write_search_file(tmp_path / "next", io.BytesIO(b"x" * 1000))
    assert str(err.value).startswith(f"{tmp_path}: the disk is full (Disk quota exceeded); the search stopped")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    with pytest.raises(FileNotFoundError):  # any other failure is the trial's
        write_search_file(tmp_path / "nowhere" / "x", b"x")
