"""Storages by URL (iasf_search.search.storage): passwords hidden wherever a URL is shown (:func:`~iasf_search.search.storage.safe_url`,
:func:`~iasf_search.search.storage.masked_command`), the file behind a URL, opening (WAL mode, folders, errors) and checkpoints."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest

from iasf_search.errors import BadInput
from iasf_search.search.storage import (
    absolute_url,
    checkpoint,
    default_storage_url,
    journal_path,
    masked_command,
    open_storage,
    safe_url,
    sqlite_path,
    storage_file,
)


def test_masked_command_hides_passwords():
    command = masked_command(["/usr/bin/iasf-search", "--storage", "postgresql://me:s3cret@db/nas", "--space", "a b.yaml"])
    assert "s3cret" not in command and command.startswith("iasf-search --storage 'postgresql://me:***@db/nas'")
    assert "'a b.yaml'" in command


def test_masked_command_without_arguments_is_the_program_name():
    assert masked_command([]) == "iasf-search"
    assert masked_command(["./venv/bin/iasf-search", "best", "--study", "vision"]) == "iasf-search best --study vision"


def test_safe_url_hides_the_password_of_any_url_even_a_malformed_one():
    assert safe_url("postgresql://me:s3cret@db:5432/nas") == "postgresql://me:***@db:5432/nas"
    assert safe_url("sqlite:///runs/vision.db") == "sqlite:///runs/vision.db"
    assert safe_url("journal:runs/a:b@c.log") == "journal:runs/a:b@c.log"  # a file path, not a URL: left as it is
    assert "s3cret" not in safe_url("post gres://me:s3cret@db/x")


def test_safe_url_hides_passwords_and_tokens_in_the_query_string():
    assert safe_url("postgresql://me@db/nas?password=s3cret&sslmode=require") == \
        "postgresql://me@db/nas?password=***&sslmode=require"
    assert safe_url("postgresql://me:a@db/nas?sslpassword=b&PASSWORD=c&token=d") == \
        "postgresql://me:***@db/nas?PASSWORD=***&sslpassword=***&token=***"
    assert safe_url("postgresql://me@db/nas?application_name=pwdless") == "postgresql://me@db/nas?application_name=pwdless"
    assert masked_command(["iasf-search", "--storage", "postgresql://me@db/x?password=s3cret"]) == \
        "iasf-search --storage 'postgresql://me@db/x?password=***'"


# -- URLs and the files behind them ---------------------------------------------------------------------


def test_default_storage_and_the_file_of_each_kind_of_url(tmp_path):
    assert default_storage_url("vision") == "sqlite:///runs/vision.db"
    assert sqlite_path("sqlite:///runs/vision.db") == Path("runs/vision.db")
    assert sqlite_path(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db"
    assert sqlite_path("sqlite://") is None and sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://me@db/nas") is None and sqlite_path("not a url") is None
    assert journal_path("journal:runs/j.log") == Path("runs/j.log") and journal_path("sqlite:///x.db") is None
    assert storage_file("journal:runs/j.log") == Path("runs/j.log") and storage_file("sqlite:///x.db") == Path("x.db")
    assert storage_file("postgresql://me@db/nas") is None


def test_absolute_url_works_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = tmp_path.resolve()
    assert absolute_url("sqlite:///runs/a.db") == f"sqlite:///{here}/runs/a.db"
    assert absolute_url("journal:runs/j.log") == f"journal:{here}/runs/j.log"
    assert absolute_url(f"sqlite:///{here}/b.db") == f"sqlite:///{here}/b.db"
    assert absolute_url("postgresql://me:s3cret@db/nas") == "postgresql://me:***@db/nas"


# -- opening a storage ------------------------------------------------------------------------------------


def test_open_sqlite_creates_its_folder_in_wal_mode(tmp_path):
    url = f"sqlite:///{tmp_path}/sub/s.db"
    storage = open_storage(url)
    assert isinstance(storage, optuna.storages.RDBStorage) and (tmp_path / "sub" / "s.db").is_file()
    with sqlite3.connect(tmp_path / "sub" / "s.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    optuna.create_study(study_name="s", storage=storage)
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(url, create=False))] == ["s"]


@pytest.mark.parametrize("create", [True, False])
def test_sqlite_connections_commit_without_waiting_for_the_disk(tmp_path, create):
    """``synchronous=NORMAL`` (1) on every connection the storage opens, new database or existing one."""
    url = f"sqlite:///{tmp_path}/s.db"
    if not create:
        open_storage(url)
    storage = open_storage(url, create=create)
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").fetchone() == (1,)
        assert connection.exec_driver_sql("PRAGMA journal_mode").fetchone() == ("wal",)


def test_opening_for_reading_needs_the_file_and_creates_nothing(tmp_path):
    with pytest.raises(BadInput, match="no such study database; run the search first or pass --storage"):
        open_storage(f"sqlite:///{tmp_path}/none/s.db", create=False)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("url", ["notaurl", "not a url at all", "postgresql://me:s3cret@db:port/nas"])
def test_a_malformed_url_is_bad_input_without_its_password(url):
    with pytest.raises(BadInput, match="is malformed; use sqlite:///runs/NAME.db") as info:
        open_storage(url)
    assert "s3cret" not in str(info.value)


def test_an_unreachable_server_is_bad_input_without_its_password():
    with pytest.raises(BadInput, match=r"cannot open storage postgresql://me:\*\*\*@127.0.0.1:1/nas") as info:
        open_storage("postgresql://me:s3cret@127.0.0.1:1/nas")
    assert "s3cret" not in str(info.value)


def test_a_folder_under_a_file_cannot_be_created(tmp_path):
    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(BadInput, match="cannot create .*blocker/sub for the study database"):
        open_storage(f"sqlite:///{tmp_path}/blocker/sub/s.db")


def test_journal_storage_and_heartbeats(tmp_path):
    journal = open_storage(f"journal:{tmp_path}/logs/j.log")
    assert isinstance(journal, optuna.storages.JournalStorage)
    optuna.create_study(study_name="j", storage=journal).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert (tmp_path / "logs" / "j.log").stat().st_size > 0
    beating = open_storage(f"sqlite:///{tmp_path}/h.db", heartbeat=(5, 20))
    assert beating.get_heartbeat_interval() == 5 and open_storage(f"sqlite:///{tmp_path}/h.db").get_heartbeat_interval() is None


def test_checkpoint_folds_the_write_ahead_log_into_the_database(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    storage = open_storage(url)
    study = optuna.create_study(study_name="c", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    wal = tmp_path / "c.db-wal"
    assert wal.exists() and wal.stat().st_size > 0
    checkpoint(url)
    assert not wal.exists() or wal.stat().st_size == 0
    storage.engine.dispose()
    with sqlite3.connect(tmp_path / "c.db") as connection:  # the .db file alone holds the study
        assert connection.execute("select count(*) from trials").fetchone() == (3,)
    checkpoint(f"sqlite:///{tmp_path}/missing.db")  # nothing to do: no error, no file
    checkpoint("postgresql://me@db/nas")
    assert not (tmp_path / "missing.db").exists()


def test_storage_from_the_environment(monkeypatch, capsys):
    from conftest import run

    from iasf_search.search.storage import storage_from_env

    monkeypatch.setenv("MY_DB", "sqlite:///runs/x.db")
    assert storage_from_env("env:MY_DB") == "sqlite:///runs/x.db"
    assert storage_from_env("sqlite:///y.db") == "sqlite:///y.db"
    monkeypatch.delenv("MY_DB")
    rc, out, err = run(capsys, "best", "--storage", "env:MY_DB", "--study", "x")
    assert rc == 2 and err.strip() == ("iasf-search: error: --storage env:MY_DB: the environment variable MY_DB is not set; "
                                       "set it to the storage URL, or give the URL itself")


def test_a_server_connection_dropped_while_idle_is_replaced(postgres_db_url):
    """A PostgreSQL restart, PgBouncer or a load balancer drops idle connections: the pool checks one before use
    (``pool_pre_ping``) instead of failing the next storage call with it."""
    import sqlalchemy

    storage = open_storage(postgres_db_url)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "idle")
    admin = sqlalchemy.create_engine(postgres_db_url)
    with admin.connect() as connection:
        dropped = connection.execute(sqlalchemy.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    admin.dispose()
    assert dropped >= 1  # the storage's pooled connection
    assert storage.get_study_id_from_name("idle") == study_id
