"""Optuna storages by URL: SQL databases through SQLAlchemy (SQLite by default, PostgreSQL to scale
out) and Optuna's journal file for local multi-process runs.

* ``sqlite:///runs/vision.db`` — the default. Opened in WAL mode (readers never block the writer;
  several local workers share it safely) with a 60 s busy timeout, and ``synchronous=NORMAL`` on
  every connection: a commit no longer waits for the disk (a trial makes dozens of writes), and in
  WAL mode the database still cannot be corrupted; a power loss or an operating-system crash may
  undo the last commits (a killed process loses nothing), which costs
  at most the trials then running, retried like any lost trial. Keep it on a local disk: WAL
  does not work over network file systems.
* ``postgresql://user:password@host/db`` (or any SQLAlchemy URL Optuna supports) — for workers
  on several machines.
* ``journal:PATH`` — ``optuna.storages.JournalStorage`` on an append-only log file: the fastest
  local storage, but without heartbeats, so a killed worker's trial stays RUNNING.

SQL storages get heartbeats: a running trial whose worker stops beating for ``grace_period``
seconds is failed by the next worker and retried once (``RetryHeartbeatStaleTrialCallback``). A search's
SQL storage rides out database outages (:mod:`iasf_search.search.retrying_storage`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sqlite3
import warnings
from collections.abc import Sequence
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from iasf_search.errors import BadInput
from iasf_search.search.retrying_storage import RetryingStorage

JOURNAL_PREFIX = "journal:"
MAX_RETRY = 1
"""How often a trial whose worker died is run again."""


def default_storage_url(name: str) -> str:
    """``sqlite:///runs/<name>.db``, relative to the current directory."""
    return f"sqlite:///runs/{name}.db"


def journal_path(url: str) -> Path | None:
    """The log file of a ``journal:PATH`` URL, else None."""
    return Path(url[len(JOURNAL_PREFIX):]) if url.startswith(JOURNAL_PREFIX) else None


SECRET_QUERY = re.compile(r"([?&][^=&#\s]*(?:password|passwd|pwd|secret|token)[^=&#\s]*=)[^&#\s]*", re.IGNORECASE)
"""A query parameter that carries a secret (``?password=``, ``&sslpassword=``, ``&token=``, ...), any case."""


ENV_PREFIX = "env:"
"""``--storage env:NAME`` reads the storage URL from the environment variable ``NAME`` (a password stays out of ``ps``)."""


def storage_from_env(value: str) -> str:
    """``value`` itself, or for ``env:NAME`` the URL in the environment variable ``NAME``.

    :raises BadInput: ``NAME`` is not set or empty.
    """
    if not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX):]
    url = os.environ.get(name, "")
    if not url:
        raise BadInput(f"--storage {value}: the environment variable {name or '(no name)'} is not set; set it to the "
                       f"storage URL, or give the URL itself")
    return url


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs), even when malformed: the one after the
    user name, and the value of every query parameter named like a password or token (``?password=...``)."""
    if journal_path(url) is not None:
        return url
    try:
        shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        shown = re.sub(r"(//[^:/@\s]*:)[^@\s]*@", r"\1***@", url)
    return SECRET_QUERY.sub(r"\1***", shown)


def masked_command(argv: Sequence[str]) -> str:
    """The command line as typed (program name shortened), with storage-URL passwords hidden."""
    words = [Path(argv[0]).name if argv else "iasf-search", *argv[1:]]
    return " ".join(shlex.quote(safe_url(w) if "://" in w else w) for w in words)


def absolute_url(url: str) -> str:
    """``url`` with a relative SQLite or journal path made absolute (works from any directory), password hidden."""
    journal = journal_path(url)
    if journal is not None:
        return f"{JOURNAL_PREFIX}{journal.resolve()}"
    path = sqlite_path(url)
    if path is not None and not path.is_absolute():
        return f"sqlite:///{path.resolve()}"
    return safe_url(url)


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other URLs and in-memory SQLite)."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:
        return None
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def storage_file(url: str) -> Path | None:
    """The file holding a SQLite or journal storage (None for server databases)."""
    return journal_path(url) or sqlite_path(url)


def open_storage(url: str, *, create: bool = True, heartbeat: tuple[int, int] | None = None,
                 outage_limit: float | None = None) -> optuna.storages.BaseStorage:
    """Open the storage ``url`` names; for a file storage, create its folder (``create``) or require the file.

    :param heartbeat: ``(interval, grace_period)`` seconds for SQL storages: running trials beat, and
        a stale one is failed and retried :data:`MAX_RETRY` time(s). None: no heartbeats (reading).
    :param outage_limit: for SQL storages, ride out database outages for up to this many seconds each
        (:class:`~iasf_search.search.retrying_storage.RetryingStorage`); None: a failed call raises at once (reading).
    :raises BadInput: malformed or unreachable URL, unwritable folder, or (``create=False``) no such file.
    """
    journal = journal_path(url)
    if journal is None:
        try:
            sqlalchemy.engine.make_url(url)
        except Exception:
            raise BadInput(f"storage URL {safe_url(url)!r} is malformed; use sqlite:///runs/NAME.db, "
                           f"postgresql://USER@HOST/DB or journal:PATH") from None
    path = storage_file(url)
    if path is not None:
        _check_file(path, create)
    try:
        if journal is not None:
            return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
        # a server database: check a pooled connection before use, so that one a server, PgBouncer or a load balancer
        # dropped while idle (a restart, an idle timeout) is replaced instead of failing the next call
        engine_kwargs = {"connect_args": {"timeout": 60}} if path is not None else {"pool_pre_ping": True}
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5, and work
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs = {}
            if heartbeat is not None:
                kwargs = {"heartbeat_interval": heartbeat[0], "grace_period": heartbeat[1],
                          "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)}
            if outage_limit is None:
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
            else:
                storage = RetryingStorage(url, outage_limit=outage_limit, where=safe_url(url), engine_kwargs=engine_kwargs,
                                          **kwargs)
        if path is not None:
            sqlalchemy.event.listen(storage.engine, "connect", _sqlite_connection)
            storage.engine.dispose()  # connections opened while the schema was checked get the setting too
        if path is not None and create:
            with storage.engine.connect() as connection:  # persistent in the file: set once
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        return storage
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"cannot open storage {safe_url(url)}: {safe_url(first)}") from None


def _sqlite_connection(connection: sqlite3.Connection, _record: object) -> None:
    """Every new connection to a SQLite study: commits do not wait for the disk (see the module docstring)."""
    connection.execute("PRAGMA synchronous=NORMAL")


def checkpoint(url: str) -> None:
    """Fold a SQLite database's write-ahead log back into the file, so that the ``.db`` file alone
    holds the study (to copy or archive it). Best effort: skipped while others write."""
    path = sqlite_path(url)
    if path is None or not path.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass


def _check_file(path: Path, create: bool) -> None:
    if not create and not path.exists():
        raise BadInput(f"{path}: no such study database; run the search first or pass --storage")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot create {path.parent} for the study database: {exc.strerror}; pass --storage elsewhere") from None
    if create and not os.access(path if path.exists() else path.parent, os.W_OK):
        raise BadInput(f"{path}: not writable; pass --storage with a writable location")
