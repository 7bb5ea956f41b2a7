"""Where trial files go, and that a bad artifact folder is bad input that writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from iasf_search.cli import main
from iasf_search.errors import BadInput
from iasf_search.results.artifacts import check_artifact_dir, default_artifact_dir, open_artifact_store


def test_default_folder_is_beside_a_sqlite_database_else_runs():
    assert default_artifact_dir("sqlite:///runs/vision.db") == Path("runs/artifacts")
    assert default_artifact_dir("sqlite:////data/nas/x.db") == Path("/data/nas/artifacts")
    assert default_artifact_dir("postgresql://u:p@host/db") == Path("runs/artifacts")
    assert default_artifact_dir("sqlite:///:memory:") == Path("runs/artifacts")


def test_a_folder_under_a_file_is_refused_without_creating_anything(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match="--artifacts DIR"):
        check_artifact_dir(tmp_path / "file" / "artifacts")
    check_artifact_dir(tmp_path / "new" / "deeper")  # creatable: accepted, not created
    assert not (tmp_path / "new").exists()
    with pytest.raises(BadInput, match="no artifact folder there"):
        open_artifact_store(tmp_path / "missing", create=False)


def test_search_with_an_unusable_artifact_folder_exits_2_and_writes_nothing(tmp_path, write_space, capsys):
    write_space()
    (tmp_path / "file").write_text("x")
    rc = main(["--space", "tiny.yaml", "--artifacts", str(tmp_path / "file" / "a"), "--trials", "1"])
    assert rc == 2 and "artifact folder cannot be created" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_search_with_no_artifacts_attaches_no_files(tmp_path, write_space, capsys):
    write_space()
    assert main(["--space", "tiny.yaml", "--no-artifacts", "--trials", "1", "-q"]) == 0
    assert (tmp_path / "runs" / "tiny.db").is_file() and not (tmp_path / "runs" / "artifacts").exists()
    assert "--artifacts" not in capsys.readouterr().out


def test_custom_artifact_folder_is_named_in_the_dashboard_command(tmp_path, write_space, capsys):
    write_space()
    assert main(["--space", "tiny.yaml", "--artifacts", str(tmp_path / "files"), "--trials", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"--artifacts {tmp_path / 'files'}" in out and any((tmp_path / "files").iterdir())


def test_the_store_writes_files_whole_and_refuses_ids_that_are_paths(tmp_path):
    import io

    from iasf_search.files import PARTIAL_SUFFIX
    from iasf_search.results.artifacts import FolderArtifactStore

    store = open_artifact_store(tmp_path / "artifacts")
    assert isinstance(store, FolderArtifactStore)
    store.write("abc", io.BytesIO(b"weights"))
    with store.open_reader("abc") as reader:
        assert reader.read() == b"weights"
    for bad in ("../x", "a/b", ""):
        with pytest.raises(ValueError, match="not a plain file name"):
            store.write(bad, io.BytesIO(b"x"))
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == ["abc"]
    assert not [p for p in (tmp_path / "artifacts").iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
