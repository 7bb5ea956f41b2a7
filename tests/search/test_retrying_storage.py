"""A search's storage rides out database outages: transient failures are retried with back-off and one warning line
per outage, a lasting one (a full disk) or one past ``search.outage_limit`` stops the search with one line and exit 1,
the heartbeat survives, and a trial orphaned by a lost commit is retried by rule. Through the CLI: ``--workers 2`` on
PostgreSQL, restarted mid-search and with the workers' connections terminated during a trial, finishes exactly."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings

import optuna
import pytest
import sqlalchemy
import yaml
from conftest import make_doc
from optuna.trial import TrialState

from iasf_search.search import retrying_storage
from iasf_search.search.retrying_storage import RetryingStorage, StorageUnavailable, lasting, storage_lost_raised, transient
from iasf_search.search.storage import open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def driver_error(message: str, kind: type = sqlalchemy.exc.OperationalError, invalidated: bool = False) -> Exception:
    """What Optuna raises when the driver fails: ``StorageInternalError`` from SQLAlchemy's wrapped error."""
    inner = kind("SELECT 1", {}, Exception(message), connection_invalidated=invalidated)
    try:
        raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from inner
    except optuna.exceptions.StorageInternalError as exc:
        return exc


@pytest.mark.parametrize("message,kind,invalidated,expected", [
    ("server closed the connection unexpectedly", sqlalchemy.exc.OperationalError, False, "transient"),
    ('connection failed: connection to server at "127.0.0.1", port 5 failed: Connection refused',
     sqlalchemy.exc.OperationalError, False, "transient"),
    ("terminating connection due to administrator command", sqlalchemy.exc.OperationalError, False, "transient"),
    ("the database system is starting up", sqlalchemy.exc.OperationalError, False, "transient"),
    ("database is locked", sqlalchemy.exc.OperationalError, False, "transient"),
    ("anything at all", sqlalchemy.exc.ProgrammingError, True, "transient"),  # SQLAlchemy saw the connection die
    ("connection already closed", sqlalchemy.exc.InterfaceError, False, "transient"),
    ("database or disk is full", sqlalchemy.exc.OperationalError, False, "lasting"),
    ('could not extend file "base/1/2": No space left on device', sqlalchemy.exc.OperationalError, False, "lasting"),
    ("attempt to write a readonly database", sqlalchemy.exc.OperationalError, False, "lasting"),
    ("UNIQUE constraint failed: studies.study_name", sqlalchemy.exc.IntegrityError, False, "neither"),  # Optuna's own
    ('syntax error at or near "SELEC"', sqlalchemy.exc.ProgrammingError, False, "neither"),
])
def test_which_database_failures_waiting_cures(message, kind, invalidated, expected):
    exc = driver_error(message, kind, invalidated)
    assert (transient(exc), lasting(exc)) == {"transient": (True, False), "lasting": (False, True),
                                              "neither": (False, False)}[expected]
    assert not transient(ValueError("connection refused")) and not lasting(OSError("disk is full"))  # not a database's


@pytest.fixture
def storage(tmp_path, monkeypatch):
    """A retrying SQLite storage with one study, a short outage limit and no real sleeping."""
    monkeypatch.setattr(retrying_storage, "sleep", lambda seconds: None)
    made = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=(1, 3), outage_limit=30)
    assert isinstance(made, RetryingStorage)
    made.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "s")
    return made


def failing(monkeypatch, method: str, errors: list[Exception], after: bool = False) -> list[int]:
    """Make ``RDBStorage.method`` raise ``errors`` in turn (before the real call, or ``after`` it), then work; returns
    a list that counts the calls."""
    real = getattr(optuna.storages.RDBStorage, method)
    calls: list[int] = []

    def fake(self, *args, **kwargs):
        calls.append(1)
        if after:
            result = real(self, *args, **kwargs)
        if errors:
            raise errors.pop(0)
        return result if after else real(self, *args, **kwargs)

    monkeypatch.setattr(optuna.storages.RDBStorage, method, fake)
    return calls


def test_a_short_outage_is_retried_with_one_warning_when_it_begins_and_one_when_it_ends(storage, monkeypatch):
    calls = failing(monkeypatch, "get_all_studies", [driver_error("server closed the connection unexpectedly")] * 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        studies = storage.get_all_studies()
    assert [s.study_name for s in studies] == ["s"] and len(calls) == 4
    lines = [str(w.message) for w in caught]
    assert len(lines) == 2, lines
    assert lines[0].startswith("the database sqlite:///") and "is unreachable (server closed the connection unexpectedly); " \
        "retrying for up to 30 s (search.outage_limit)" in lines[0]
    assert "is back after 0 s; the search goes on" in lines[1]


def test_every_outage_gets_its_two_lines_even_when_they_repeat_word_for_word(storage, monkeypatch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own filter: a repeated message from one place is shown once
        for _ in range(2):
            failing(monkeypatch, "get_all_studies", [driver_error("server closed the connection unexpectedly")])
            storage.get_all_studies()
    lines = [str(w.message).split(" is ", 1)[1][:11] for w in caught]
    assert lines == ["unreachable", "back after ", "unreachable", "back after "]


def test_an_outage_past_the_limit_stops_with_one_line_and_every_later_call_fails_at_once(storage, monkeypatch):
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(retrying_storage, "monotonic", lambda: float(next(clock)))
    calls = failing(monkeypatch, "get_all_studies", [driver_error("Connection refused")] * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(StorageUnavailable) as info:
            storage.get_all_studies()
    message = str(info.value)
    assert "\n" not in message and "unreachable for 30 s (search.outage_limit): Connection refused; the search stopped; " \
        "once the database is back, run the same command to resume the study" in message
    assert 2 <= len(calls) < 10
    before = len(calls)
    with pytest.raises(StorageUnavailable):
        storage.get_study_id_from_name("s")  # the process gave up: no more waiting
    assert len(calls) == before


def test_a_full_disk_stops_at_once(storage, monkeypatch):
    calls = failing(monkeypatch, "set_study_user_attr", [driver_error("database or disk is full")])
    with pytest.raises(StorageUnavailable, match="failed in a way retrying does not cure: database or disk is full"):
        storage.set_study_user_attr(1, "k", "v")
    assert len(calls) == 1


def test_a_lost_answer_to_a_commit_that_went_through_is_not_an_error(storage, monkeypatch):
    trial_id = storage.create_new_trial(1)
    failing(monkeypatch, "set_trial_state_values", [driver_error("server closed the connection unexpectedly")], after=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5]) is True
    assert storage.get_trial(trial_id).state == TrialState.COMPLETE and storage.get_trial(trial_id).values == [0.5]


def test_the_heartbeat_survives_a_failure_and_other_workers_get_a_grace_period_after_an_outage(storage, monkeypatch):
    study = optuna.load_study(study_name="s", storage=storage)
    trial = study.ask()
    failing(monkeypatch, "record_heartbeat", [driver_error("server closed the connection unexpectedly")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        storage.record_heartbeat(trial._trial_id)  # skipped, no error
        assert storage._get_stale_trial_ids(1) == []  # away now: nobody is failed
        storage.record_heartbeat(trial._trial_id)  # beats again
    assert [str(w.message).split(" is ")[1][:11] for w in caught] == ["unreachable", "back after "]
    assert storage.outage.recovering(3)
    storage.outage.ended -= 3.5  # the grace period has passed
    assert storage._get_stale_trial_ids(1) == []  # it beat a moment ago


def test_a_running_trial_that_never_beat_is_stale_after_the_grace_period(storage):
    study = optuna.load_study(study_name="s", storage=storage)
    orphan = study.ask()  # made RUNNING by a lost commit's retry, say: no heartbeat thread
    assert storage._get_stale_trial_ids(1) == []
    time.sleep(3.2)
    assert storage._get_stale_trial_ids(1) == [orphan._trial_id]


def test_optunas_fallback_error_is_unmasked():
    lost = StorageUnavailable("the database x is unreachable")

    def optunas_run_trial():
        try:
            raise lost
        finally:
            raise UnboundLocalError("cannot access local variable 'updated_state'")

    with pytest.raises(StorageUnavailable) as info, storage_lost_raised():
        optunas_run_trial()
    assert info.value is lost
    with pytest.raises(ValueError), storage_lost_raised():
        raise ValueError("other errors pass")


def test_the_storage_can_be_pickled_with_its_settings(storage):
    import pickle

    again = pickle.loads(pickle.dumps(storage))
    assert again.outage.limit == 30 and again.get_all_studies()[0].study_name == "s"


def test_readers_fail_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    open_storage(url)
    assert type(open_storage(url, create=False)) is optuna.storages.RDBStorage


# --- through the CLI, on a PostgreSQL server the test restarts ----------------------------------------------------

@pytest.fixture(scope="module")
def restartable_postgres():
    """A throwaway PostgreSQL cluster of this module's own (the shared test server may not be ours to restart)."""
    from postgres import ThrowawayCluster, binaries, missing_driver

    if missing_driver("postgresql://") is not None or binaries() is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) or driver to restart a server with: install Debian's "
                    "postgresql and pip install -e '.[test]' (.ci/run does)")
    cluster = ThrowawayCluster(binaries())
    try:
        url = cluster.start()
    except Exception as exc:
        cluster.stop()
        pytest.skip(f"a throwaway PostgreSQL cluster cannot be started here: {exc}")
    yield cluster, url
    cluster.stop()


def studied(url: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name="tiny", storage=url)
    except Exception:  # not made yet, or the server is restarting
        return None


def wait_for(condition, proc: subprocess.Popen, what: str, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the search ended before {what}: {proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {limit} s")
        time.sleep(0.2)


def training(url: str, exclude: set[int] = frozenset()) -> set[int]:
    """The numbers of the trials training now (their parameters are recorded)."""
    study = studied(url)
    return {t.number for t in study.trials if t.state == TrialState.RUNNING and "params" in t.user_attrs
            and t.number not in exclude} if study else set()


def test_a_restart_and_dropped_connections_mid_search_lose_no_trial(tmp_path, restartable_postgres):
    from postgres import create_database, drop_database, terminate_connections

    cluster, server = restartable_postgres
    url = create_database(server)
    doc = make_doc({"manifold.width": 16, "manifold.nodes": 2, "training.epochs": 10,
                    "search": {"sampler": "random", "pruner": "none", "seed": 0, "heartbeat_interval": 2, "grace_period": 10}})
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "iasf_search", "--space", str(path), "--storage", url, "--trials", "6",
                             "--workers", "2", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: training(url), proc, "a trial training")
        cluster.restart()  # the database goes away for about a second under both workers
        before = training(url)
        wait_for(lambda: training(url, exclude=before), proc, "a trial training after the restart")
        assert terminate_connections(server, url) >= 1  # and then the workers' connections, during a trial
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    try:
        assert proc.returncode == 0, err[-3000:]
        study = optuna.load_study(study_name="tiny", storage=url)
        assert len([t for t in study.trials if t.state in FINISHED]) == 6
        assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        failed = [t for t in study.trials if t.state == TrialState.FAIL]
        retried = {t.system_attrs.get("failed_trial") for t in study.trials} - {None}
        # a trial fails only as a surplus one, or as lost and then retried by the rule (once)
        assert all(t.number in retried or t.user_attrs.get("failure_reason", "").startswith("surplus") for t in failed)
        trained = [t.user_attrs["params"] for t in study.trials if t.state in FINISHED and "failed_trial" not in t.system_attrs]
        assert len(trained) == len(set(map(repr, trained))) or len(trained) == 6  # no architecture trained twice unasked
        assert "is unreachable (" in err and "is back after" in err  # one warning line as it went, one as it came back
        assert "Traceback" not in err and "UnboundLocalError" not in err
    finally:
        drop_database(server, url)


def test_a_database_that_stays_away_stops_the_search_with_exit_1_and_the_same_command_resumes(tmp_path, restartable_postgres):
    from postgres import create_database, drop_database

    cluster, server = restartable_postgres
    url = create_database(server)
    doc = make_doc({"manifold.width": 16, "manifold.nodes": 2, "training.epochs": 10,
                    "search": {"sampler": "random", "pruner": "none", "outage_limit": 3, "heartbeat_interval": 1,
                               "grace_period": 3}})
    path = tmp_path / "away.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    command = [sys.executable, "-m", "iasf_search", "--space", str(path), "--storage", url, "--trials", "2", "-q"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: training(url), proc, "a trial training")
        cluster.stop_server()
        try:
            _, err = proc.communicate(timeout=120)
        finally:
            cluster.start_again()
        assert proc.returncode == 1, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith("iasf-search: error: the database postgresql://") and \
            "unreachable for 3 s (search.outage_limit)" in last and last.endswith(
                "the search stopped; once the database is back, run the same command to resume the study"), err
        assert "Traceback" not in err and "UnboundLocalError" not in err
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        study = optuna.load_study(study_name="tiny", storage=url)
        assert len([t for t in study.trials if t.state in FINISHED]) == 2
        assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    finally:
        if proc.poll() is None:
            proc.kill()
        drop_database(server, url)
