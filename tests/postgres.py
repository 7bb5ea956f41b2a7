"""A PostgreSQL server for the tests: the one ``IASF_TEST_POSTGRES_URL`` names, or a throwaway cluster on loopback.

How :func:`postgres_server` finds one, in order:

1. ``IASF_TEST_POSTGRES_URL`` (``postgresql://USER[:PASSWORD]@HOST:PORT/DB``; ``.ci/run`` exports it). The user
   must be allowed to create databases and roles. Set but unreachable is an error, not a skip: a server asked for
   by name that does not answer is a broken setup, which a skip would hide.
2. Otherwise a throwaway cluster started here with Debian's ``initdb`` and ``pg_ctl`` (package ``postgresql``),
   found on ``PATH`` or in ``/usr/lib/postgresql/VERSION/bin``: ``initdb --auth=trust`` in a temporary folder,
   listening on 127.0.0.1 on a free port only, run as the ``postgres`` user when we are root (``initdb`` refuses
   root), as ourselves otherwise; stopped and deleted at the end of the session (about a second each way).
3. Otherwise the tests skip, saying how to get a server.

``IASF_TEST_POSTGRES_BIN=DIR`` looks for ``initdb`` and ``pg_ctl`` in ``DIR`` only (``/nonexistent`` shows the
skip path on a machine that has PostgreSQL installed).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

URL_ENV = "IASF_TEST_POSTGRES_URL"
BIN_ENV = "IASF_TEST_POSTGRES_BIN"
NO_SERVER = ("no PostgreSQL server: set IASF_TEST_POSTGRES_URL or install Debian's postgresql (initdb, pg_ctl) "
             "— .ci/run does")
SUPERUSER = "postgres"


def hidden(url: str) -> str:
    """``url`` with its password as ``***`` (for messages)."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<malformed URL>"


def with_database(url: str, database: str, *, username: str | None = None, password: str | None = None) -> str:
    """``url`` pointing at another database (and optionally as another user), password kept in clear."""
    parsed = sqlalchemy.engine.make_url(url).set(database=database)
    if username is not None:
        parsed = parsed.set(username=username, password=password)
    return parsed.render_as_string(hide_password=False)


def execute(url: str, *statements: str) -> None:
    """Run ``statements`` on ``url`` in autocommit mode (CREATE / DROP DATABASE cannot run in a transaction),
    through SQLAlchemy's default driver for the URL (``postgresql://``: psycopg 3 from SQLAlchemy 2.1, psycopg2 before)."""
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool,
                                      connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def missing_driver(url: str) -> str | None:
    """The error importing SQLAlchemy's driver for ``url`` (the one Optuna will use too), or None when it imports."""
    try:
        sqlalchemy.create_engine(url).dispose()
    except ImportError as exc:
        return str(exc)
    return None


def unreachable(url: str) -> str | None:
    """Why ``url`` cannot be connected to, or None when it can."""
    try:
        execute(url, "SELECT 1")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return first
    return None


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def create_database(url: str) -> str:
    """A new empty database on ``url``'s server; returns its URL."""
    name = unique_name("iasf_test")
    execute(url, f'CREATE DATABASE "{name}"')
    return with_database(url, name)


def terminate_connections(url: str, db_url: str) -> int:
    """Close every connection to ``db_url``'s database but ours (``pg_terminate_backend``, as an administrator or a
    connection pooler does); returns how many were closed."""
    name = sqlalchemy.engine.make_url(db_url).database
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return len(conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' "
                                            f"AND pid <> pg_backend_pid()").fetchall())
    finally:
        engine.dispose()


def drop_database(url: str, db_url: str) -> None:
    """Drop the database of ``db_url`` (connected through the server's ``url``), closing its connections still open."""
    name = sqlalchemy.engine.make_url(db_url).database
    try:
        execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # PostgreSQL 13+
    except Exception:
        execute(url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()",
                f'DROP DATABASE IF EXISTS "{name}"')


def create_login_role(db_url: str, password: str) -> tuple[str, str]:
    """A new role that logs in with ``password`` and may create tables in ``db_url``'s database.

    :returns: ``(role name, URL of the database as that role with the password in clear)``; drop the role
        with :func:`drop_role` after dropping the database.
    """
    role = unique_name("iasf_pw")
    database = sqlalchemy.engine.make_url(db_url).database
    execute(db_url, f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'",
            f'GRANT ALL ON DATABASE "{database}" TO "{role}"',
            f'GRANT ALL ON SCHEMA public TO "{role}"')  # PostgreSQL 15 no longer lets everyone create in public
    return role, with_database(db_url, database, username=role, password=password)


def drop_role(url: str, role: str) -> None:
    """Drop a role of :func:`create_login_role` (after its database), connected through the server's ``url``."""
    execute(url, f'DROP ROLE IF EXISTS "{role}"')


# --- a throwaway cluster --------------------------------------------------------------------------------------

def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: ``$IASF_TEST_POSTGRES_BIN``, else ``PATH``, else Debian's."""
    if os.environ.get(BIN_ENV):
        candidates = [Path(os.environ[BIN_ENV])]
    else:
        on_path = shutil.which("initdb")
        debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(n) for n in re.findall(r"\d+", p)], reverse=True)
        candidates = [*([Path(on_path).parent] if on_path else []), *map(Path, debian)]
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return folder
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayCluster:
    """``initdb`` + ``pg_ctl start`` in a temporary folder; :meth:`stop` removes everything."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_postgres: list[str] = []
        self.owner: int | None = None
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            import pwd

            try:
                self.owner = pwd.getpwnam(SUPERUSER).pw_uid
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run the server as") from None
            if not shutil.which("runuser"):
                raise RuntimeError("running as root and runuser (util-linux) is missing")
            self.as_postgres = ["runuser", "-u", SUPERUSER, "--"]
        self.base = Path(tempfile.mkdtemp(prefix="iasf-pg-", dir="/tmp" if self.owner is not None else None))
        if self.owner is not None:
            os.chown(self.base, self.owner, -1)
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.started = False
        atexit.register(self.stop)  # in case the session ends without running the fixture's teardown

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run([*self.as_postgres, *args], cwd=self.base, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stdout.strip()[-2000:]}\n{log}".strip())

    def start(self) -> str:
        """Initialise and start the cluster; returns ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        last: Exception | None = None
        for _ in range(3):  # another process may take the free port between our check and the server's bind
            port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={self.base} "
                       f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                          "-w", "-t", "30", "start")
            except RuntimeError as exc:
                last = exc
                continue
            self.started, self.options = True, options
            return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
        raise last or RuntimeError("pg_ctl start failed")

    def stop_server(self) -> None:
        """``pg_ctl stop -m fast``: the server is away until :meth:`start_again`."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def start_again(self) -> None:
        """Start the server :meth:`stop_server` stopped, on the same port."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", self.options, "-w",
                  "-t", "30", "start")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is closed, the server is away for about a second."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", "30",
                  "restart")

    def stop(self) -> None:
        if self.started:
            self.started = False
            with contextlib.suppress(Exception):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server whose user may create databases and roles (see the module's docstring).

    Skips the calling test when there is none (no driver, or no URL given and no PostgreSQL installed);
    fails when ``IASF_TEST_POSTGRES_URL`` is set but does not answer.
    """
    why = missing_driver(os.environ.get(URL_ENV) or "postgresql://")
    if why is not None:
        pytest.skip(f"no PostgreSQL driver for SQLAlchemy ({why}): pip install -e '.[test]' (or '.[postgres]')")
    given = os.environ.get(URL_ENV)
    if given:
        why = unreachable(given)
        if why is not None:
            pytest.fail(f"{URL_ENV}={hidden(given)} does not answer: {why}", pytrace=False)
        yield given
        return
    bindir = binaries()
    if bindir is None:
        pytest.skip(NO_SERVER + (f" (nothing usable in {BIN_ENV}={os.environ[BIN_ENV]})" if os.environ.get(BIN_ENV) else ""))
    try:
        cluster = ThrowawayCluster(bindir)
    except RuntimeError as exc:
        pytest.skip(f"{NO_SERVER}; a throwaway cluster cannot be started here: {exc}")
    try:
        try:
            url = cluster.start()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"{NO_SERVER}; starting a throwaway cluster with {bindir} failed: {exc}")
        yield url
    finally:
        cluster.stop()
