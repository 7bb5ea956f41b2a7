"""The output folder of ``report --out`` and ``analyze --out``."""

from __future__ import annotations

from pathlib import Path

import pytest

from iasf_search.errors import BadInput
from iasf_search.results.folders import output_folder


def test_output_folder_is_created_with_its_parents_or_reused(tmp_path: Path):
    out = output_folder(tmp_path / "a" / "b")
    assert out == tmp_path / "a" / "b" and out.is_dir()
    (out / "kept").write_text("x")
    assert output_folder(str(out)) == out and (out / "kept").is_file()


def test_output_folder_refuses_a_file_or_a_path_through_one(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match=r"--out .*file: is a file; give a folder"):
        output_folder(tmp_path / "file")
    with pytest.raises(BadInput, match=r"--out .*file.sub: cannot create it: "):
        output_folder(tmp_path / "file" / "sub")
