"""A real search on PostgreSQL through the command line, in-process: search, best, resume, and a storage URL's
password never printed or stored. Needs a server: see tests/postgres.py (skips with the reason when there is none)."""

from __future__ import annotations

import json

import optuna
import pytest
import sqlalchemy
from conftest import finished, run
from optuna.trial import TrialState
from postgres import create_login_role, drop_database, drop_role, missing_driver

from iasf_search.results.access import best_trials

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PASSWORD = "s3cret-pw"


def everything_stored(url: str) -> str:
    """Every row of every table in the database, as text."""
    engine = sqlalchemy.create_engine(url)
    try:
        meta = sqlalchemy.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return "\n".join(repr(tuple(row)) for table in meta.sorted_tables for row in conn.execute(table.select()))
    finally:
        engine.dispose()


def rows(url: str, table: str) -> int:
    """How many rows ``table`` holds, read straight from PostgreSQL (not through Optuna)."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def password_url(postgres_url, postgres_db_url):
    """``postgresql://ROLE:s3cret-pw@HOST:PORT/DB``: a fresh database through a role that logs in with a password."""
    role, url = create_login_role(postgres_db_url, PASSWORD)
    yield url
    drop_database(postgres_url, postgres_db_url)  # the role's privileges go with its database
    drop_role(postgres_url, role)


def test_search_best_and_resume_on_postgres(capsys, write_space, postgres_db_url):
    write_space()
    search = ["--space", "tiny.yaml", "--storage", postgres_db_url]

    rc, out, err = run(capsys, *search, "--trials", "3", "-q")
    assert rc == 0, err
    assert "study 'tiny': 3/3 finished trials, 3 run now" in out
    study = optuna.load_study(study_name="tiny", storage=postgres_db_url)
    assert len(study.trials) == 3 and len(finished(study)) == 3
    assert rows(postgres_db_url, "trials") == 3  # really in PostgreSQL

    rc, out, err = run(capsys, "best", "--storage", postgres_db_url, "--study", "tiny")
    assert rc == 0, err
    best = best_trials(study)[0]  # ties on accuracy: the lower validation loss
    assert f"best trial #{best.number}:" in out
    assert f"architecture {best.user_attrs['arch_hash']}" in out

    # resume: one more finished trial, numbered after the others
    rc, out, err = run(capsys, *search, "--trials", "4", "-q")
    assert rc == 0, err
    assert "study 'tiny': 4/4 finished trials, 1 run now" in out
    study = optuna.load_study(study_name="tiny", storage=postgres_db_url)
    assert len(study.trials) == 4 and len(finished(study)) == 4
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert rows(postgres_db_url, "trials") == 4


def test_password_is_never_printed_or_stored(capsys, write_space, password_url):
    write_space()
    assert PASSWORD in password_url
    hidden = sqlalchemy.engine.make_url(password_url).render_as_string(hide_password=True)
    assert PASSWORD not in hidden and ":***@" in hidden

    printed = []
    for args in (["--space", "tiny.yaml", "--storage", password_url, "--trials", "2"],  # with progress lines
                 ["--space", "tiny.yaml", "--storage", password_url, "--trials", "3", "-q"],
                 ["best", "--storage", password_url, "--study", "tiny"],
                 ["best", "--space", "tiny.yaml", "--storage", password_url]):
        rc, out, err = run(capsys, *args)
        assert rc == 0, err
        printed.append(out + err)
    everything = "\n".join(printed)
    assert PASSWORD not in everything
    assert f"storage {hidden}" in everything  # the summary names the storage, password hidden

    study = optuna.load_study(study_name="tiny", storage=password_url)
    assert len(finished(study)) == 3
    attrs = [study.user_attrs, *(a for t in study.trials for a in (t.user_attrs, t.system_attrs))]
    assert PASSWORD not in json.dumps(attrs, default=str)
    dump = everything_stored(password_url)  # system attributes too, and anything else written to the database
    assert "commands" in dump and PASSWORD not in dump
    commands = study.user_attrs["commands"]
    assert len(commands) == 2  # one per distinct search command, as typed
    assert all(hidden in c and "--storage" in c for c in commands)


def test_unreachable_server_is_one_line_without_the_password(capsys, write_space):
    url = f"postgresql://someone:{PASSWORD}@127.0.0.1:1/nowhere"  # port 1: refused at once
    why = missing_driver(url)
    if why is not None:
        pytest.skip(f"no PostgreSQL driver for SQLAlchemy ({why}): pip install -e '.[test]'")
    write_space()
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "1")
    assert rc == 2
    assert PASSWORD not in out + err
    assert "someone:***@127.0.0.1:1/nowhere" in err
    assert "Traceback" not in err
