"""Reading YAML files: the document, or one line naming the file (and the line and column of a syntax error)."""

from __future__ import annotations

import pytest

from iasf_search.errors import BadInput, SpaceError
from iasf_search.yaml_io import read_yaml_document


def test_a_valid_file_gives_its_document(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("name: x\nlist: [1, 2]\n", encoding="utf-8")
    assert read_yaml_document(path, "profile", "fix it") == {"name": "x", "list": [1, 2]}


def test_a_missing_file_names_the_file_what_it_is_and_the_fix(tmp_path):
    with pytest.raises(BadInput) as info:
        read_yaml_document(tmp_path / "nope.yaml", "hardware profile", "give a built-in name or a path")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such hardware profile; give a built-in name or a path"
    assert not isinstance(info.value, SpaceError)


def test_invalid_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nops: [attention\n", encoding="utf-8")
    with pytest.raises(SpaceError) as info:
        read_yaml_document(path, "space file", "fix it")
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML: line ") and "column" in message and "\n" not in message


def test_a_folder_is_unreadable_not_a_traceback(tmp_path):
    with pytest.raises(BadInput, match="cannot read the space file"):
        read_yaml_document(tmp_path, "space file", "fix it")
