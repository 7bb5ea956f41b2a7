"""A search's SQL storage that rides out database outages: a restart, a dropped connection, a failover.

:class:`RetryingStorage` is Optuna's ``RDBStorage`` with every call that reaches the database retried with
back-off while the failure is *transient* (:func:`transient`: the connection was refused, closed or reset, the
server is starting or stopping, SQLite is locked), for at most ``outage_limit`` seconds per outage
(``search.outage_limit``, default 600). The first failure of an outage prints one warning line; the first call that
succeeds afterwards prints one line saying how long the database was away. Past the limit, or at once for a failure
that waiting does not cure (a full disk, a read-only file), the call raises :class:`StorageUnavailable`, and every
later call of the process fails at once with the same error: the search stops with exit status 1 and one line; the
study is left as it was, and the same command resumes it once the database is back.

Three more rules keep an outage from costing trials:

* **The heartbeat survives.** A heartbeat that fails is skipped, not retried (the next comes one interval later);
  Optuna's heartbeat thread would otherwise die at the first error and leave its trial to look stale.
* **Workers come back together.** For ``grace_period`` seconds after this process saw the database come back, it
  fails no other worker's trial as stale: their heartbeats were blocked by the same outage.
* **No orphans.** A commit that the server made but whose answer was lost (the connection dropped just then) is
  retried; a trial made ``RUNNING`` twice this way has no heartbeat, which Optuna never calls stale, so this storage
  also counts as stale a ``RUNNING`` trial that has had no heartbeat for ``grace_period`` seconds since it started.
  Its retry follows the usual rule (``RetryHeartbeatStaleTrialCallback``: once).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from time import monotonic, sleep
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from iasf_search.errors import SearchFailed, one_line
from iasf_search.optuna_internals import running_trials_without_heartbeat

DEFAULT_OUTAGE_LIMIT = 600
"""Seconds a search keeps retrying an unreachable database before it stops (``search.outage_limit``)."""
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 15.0
"""The back-off between retries: from half a second, doubling, to at most 15 s."""

_TRANSIENT_WORDS = ("locked", "busy", "could not connect", "connection refused", "server closed", "terminating connection",
                    "connection reset", "broken pipe", "shutting down", "starting up", "in recovery", "timeout",
                    "timed out", "connection already closed", "ssl syscall", "lost connection", "gone away",
                    "no connection to the server", "connection is closed", "could not receive", "could not send")
"""Words of a database error that waiting cures (driver messages: psycopg, sqlite3, MySQL)."""
_LASTING_WORDS = ("disk is full", "no space left", "disk full", "readonly", "read-only", "could not extend file",
                  "disk i/o error", "permission denied", "password authentication failed", "does not exist")
"""Words of a database error that waiting does not cure: reported at once."""


class StorageUnavailable(SearchFailed):
    """The search's database is unreachable past ``search.outage_limit``, or failed in a way waiting does not cure.
    The CLI prints the one-line message and exits with status 1; the same command resumes the study later."""

    kind = "storage_unavailable"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or during, and so on."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@contextlib.contextmanager
def storage_lost_raised() -> Iterator[None]:
    """Within: an error whose chain holds :class:`StorageUnavailable` is raised as that error. Optuna hides it when the
    database is gone while a trial is recorded (its fallback read fails too, and ``_run_trial`` then raises an
    ``UnboundLocalError``)."""
    try:
        yield
    except Exception as exc:
        lost = next((e for e in _chain(exc) if isinstance(e, StorageUnavailable)), None)
        if lost is None or lost is exc:
            raise
        raise lost from None


def database_error(exc: BaseException) -> sqlalchemy.exc.DBAPIError | None:
    """The driver's error behind ``exc`` (Optuna wraps it in ``StorageInternalError``), if one is."""
    return next((e for e in _chain(exc) if isinstance(e, sqlalchemy.exc.DBAPIError)), None)


def first_line(exc: BaseException) -> str:
    """The first line of the driver's message behind ``exc`` (else of ``exc``'s own)."""
    inner = database_error(exc)
    text = str(inner.orig if inner is not None and inner.orig is not None else exc).strip()
    return one_line(text.splitlines()[0]) if text else type(exc).__name__


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a database failure that waiting may cure: a connection invalidated, refused or reset, a
    server restarting, a locked SQLite file, a pool timeout. A full disk or a read-only file is not."""
    if any(isinstance(e, sqlalchemy.exc.TimeoutError) for e in _chain(exc)):
        return True
    inner = database_error(exc)
    if inner is None or lasting(exc):
        return False
    if inner.connection_invalidated or isinstance(inner, sqlalchemy.exc.InterfaceError):
        return True
    return isinstance(inner, sqlalchemy.exc.OperationalError) and any(w in str(inner).lower() for w in _TRANSIENT_WORDS)


def lasting(exc: BaseException) -> bool:
    """Whether ``exc`` is a database failure that waiting does not cure and no caller expects: a full disk, a
    read-only file, a refused password. (A broken unique constraint is neither: Optuna expects it at times.)"""
    inner = database_error(exc)
    return (isinstance(inner, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))
            and any(word in str(inner).lower() for word in _LASTING_WORDS))


class _Outage:
    """One process's view of the database's health, shared by its threads: when the current outage began, when the
    last one ended, and whether the process gave up."""

    def __init__(self, limit: float, where: str) -> None:
        self.limit, self.where = limit, where
        self.lock = threading.Lock()
        self.since: float | None = None
        self.ended: float | None = None
        self.gone: StorageUnavailable | None = None

    def failed(self, exc: BaseException) -> float:
        """Note a transient failure; returns the seconds the outage has lasted (warns at its first failure)."""
        now = monotonic()
        with self.lock:
            if self.since is None:
                self.since = now
                _warn(f"the database {self.where} is unreachable ({first_line(exc)}); retrying for up to "
                      f"{self.limit:g} s (search.outage_limit)")
            return now - self.since

    def succeeded(self) -> None:
        if self.since is None:
            return
        with self.lock:
            if self.since is None:
                return
            away, self.since = monotonic() - self.since, None
            self.ended = monotonic()
        _warn(f"the database {self.where} is back after {away:.0f} s; the search goes on")

    def give_up(self, exc: BaseException, *, waited: bool) -> StorageUnavailable:
        cause = (f"unreachable for {self.limit:g} s (search.outage_limit)" if waited
                 else "failed in a way retrying does not cure")
        self.gone = StorageUnavailable(f"the database {self.where} {cause}: {first_line(exc)}; the search stopped; "
                                       f"once the database is back, run the same command to resume the study")
        return self.gone

    def recovering(self, grace: float) -> bool:
        """Whether the database came back less than ``grace`` seconds ago (or is away now)."""
        return self.since is not None or (self.ended is not None and monotonic() - self.ended < grace)


def _warn(message: str) -> None:
    """Warn once per outage edge, every time: Python's default filter would show a repeated message (the second
    outage's "back after 1 s") only once."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(message, stacklevel=4)


def _retried(name: str) -> Callable[..., Any]:
    """The method ``name`` of :class:`RetryingStorage` (its own, else ``RDBStorage``'s, looked up at each call), called
    again with back-off while it fails transiently (see the module)."""
    own = RetryingStorage.__dict__.get(name)

    @functools.wraps(own or getattr(optuna.storages.RDBStorage, name))
    def call(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        method = own or getattr(optuna.storages.RDBStorage, name)
        if self.outage.gone is not None:
            raise self.outage.gone
        if getattr(self.depth, "inside", False):  # called by another retried method: it retries
            return method(self, *args, **kwargs)
        self.depth.inside = True
        pause, attempt = FIRST_PAUSE, 0
        try:
            while True:
                attempt += 1
                try:
                    result = method(self, *args, **kwargs)
                except optuna.exceptions.UpdateFinishedTrialError:
                    if attempt > 1 and name == "set_trial_state_values" and self._already_set(*args, **kwargs):
                        result = True  # the lost answer's commit went through
                    else:
                        raise
                except Exception as exc:
                    if lasting(exc):
                        raise self.outage.give_up(exc, waited=False) from None
                    if not transient(exc):
                        raise
                    if self.outage.failed(exc) + pause > self.outage.limit:
                        raise self.outage.give_up(exc, waited=True) from None
                    self.engine.dispose()  # connections of the old server are useless
                    sleep(pause)
                    pause = min(pause * 2, LONGEST_PAUSE)
                    continue
                self.outage.succeeded()
                return result
        finally:
            self.depth.inside = False

    return call


class RetryingStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` whose database calls ride out transient outages (see the module docstring).

    :param outage_limit: seconds of retrying per outage before :class:`StorageUnavailable`.
    :param where: how messages name the database (its URL with the password hidden).
    """

    def __init__(self, url: str, *, outage_limit: float = DEFAULT_OUTAGE_LIMIT, where: str = "", **kwargs: Any) -> None:
        self.outage_limit, self.where = outage_limit, where or "of the study"
        self.outage = _Outage(outage_limit, self.where)
        self.depth = threading.local()
        super().__init__(url, **kwargs)

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("depth", None)
        state.pop("outage", None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self.outage = _Outage(self.outage_limit, self.where)
        self.depth = threading.local()

    def record_heartbeat(self, trial_id: int) -> None:
        """Beat once; a transient failure is noted and skipped (the next beat comes an interval later)."""
        if self.outage.gone is not None:
            return
        try:
            super().record_heartbeat(trial_id)
        except Exception as exc:
            if not transient(exc):
                raise
            self.outage.failed(exc)
            self.engine.dispose()
            return
        self.outage.succeeded()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale trials plus ``RUNNING`` ones that never beat within ``grace_period`` of their start; none
        while other workers may still be catching up after an outage."""
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        if self.outage.recovering(grace):
            return []
        stale = super()._get_stale_trial_ids(study_id)
        orphans = running_trials_without_heartbeat(self, study_id, datetime.now() - timedelta(seconds=grace))
        return stale + [t for t in orphans if t not in stale]

    def _already_set(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        return super().get_trial(trial_id).state == state


_RETRIED = ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
            "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
            "get_all_studies", "create_new_trial", "_create_new_trial", "set_trial_param", "_set_trial_param",
            "get_trial_id_from_study_id_trial_number", "get_best_trial", "_get_best_trial_id", "set_trial_state_values",
            "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials",
            "_get_trials", "get_trial_param", "get_trial_user_attrs", "get_trial_system_attrs", "_get_stale_trial_ids")
"""Every ``RDBStorage`` method that reaches the database (Optuna's ``_CachedStorage`` calls the underscored ones)."""

for _name in _RETRIED:
    setattr(RetryingStorage, _name, _retried(_name))
