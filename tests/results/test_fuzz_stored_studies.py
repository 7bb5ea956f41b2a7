"""Property-based fuzzing of stored studies (Hypothesis): a finished study whose attributes were tampered with (a study
or trial user attribute, or a trial system attribute such as the recorded architecture, replaced by any JSON value or
deleted) is read by ``best``, ``export`` and a resumed ``search``: each succeeds or fails with one line and exit status
2, never a traceback; a refused command leaves the study as it was.

CI runs a fixed, seeded budget (:data:`EXAMPLES` per command). A longer run:

    IASF_FUZZ_EXAMPLES=1000 python -m pytest -q tests/results/test_fuzz_stored_studies.py
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from iasf_search.cli import main

EXAMPLES = int(os.environ.get("IASF_FUZZ_EXAMPLES", "25"))
"""Tampered studies tried per command (the fixed budget CI runs)."""
TABLES = {"study_user_attributes": "study_id", "trial_user_attributes": "trial_id", "trial_system_attributes": "trial_id"}
"""Optuna's attribute tables (``key``, ``value_json``) and the column naming their owner."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**18, max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
    | st.sampled_from(["", "🧪", "\x00", "a" * 300, "{}", "[]", "not json"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
"""Any value an attribute can hold (Optuna stores attributes as JSON)."""


def attributes(db: Path) -> list[tuple[str, int, str]]:
    """``(table, owner id, key)`` of every attribute the study holds."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [(table, owner, key) for table, column in TABLES.items()
                for owner, key in conn.execute(f"SELECT {column}, key FROM {table} ORDER BY {column}, key")]


def tamper(db: Path, table: str, owner: int, key: str, value: object, delete: bool) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        if delete:
            conn.execute(f"DELETE FROM {table} WHERE {TABLES[table]} = ? AND key = ?", (owner, key))
        else:
            conn.execute(f"UPDATE {table} SET value_json = ? WHERE {TABLES[table]} = ? AND key = ?",
                         (json.dumps(value), owner, key))


def content(db: Path) -> str:
    """A digest of everything the database holds (its SQL dump: the file's bytes may change without its content)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()


@pytest.mark.parametrize("command", ["best", "export", "search"])
def test_a_tampered_study_is_read_or_refused_in_one_line(command, export_search, tmp_path, capsys):
    folder, space, url = export_search
    original = Path(url.removeprefix("sqlite:///"))
    artifacts = original.parent / "artifacts"
    every = attributes(original)
    examples = iter(range(10**6))

    @seed(0)
    @settings(max_examples=EXAMPLES, deadline=30_000, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(which=st.sampled_from(every), value=json_values, delete=st.booleans())
    def check(which: tuple[str, int, str], value: object, delete: bool) -> None:
        db = tmp_path / f"tiny{next(examples)}.db"  # a new name: an earlier copy's write-ahead log must not replay onto it
        target = f"sqlite:///{db}"
        argv = {"best": ["best", "--storage", target, "--study", "tiny"],
                "export": ["export", "--storage", target, "--study", "tiny", "--artifacts", str(artifacts),
                           "--out", str(tmp_path / "out")],
                "search": ["--space", str(space), "--storage", target, "--artifacts", str(tmp_path / "artifacts"),
                           "--trials", "4", "-q"]}[command]
        shutil.copyfile(original, db)
        tamper(db, *which, value, delete)
        before = content(db)
        rc = main(argv)
        out, err = capsys.readouterr()
        assert "Traceback" not in err and "unexpected error" not in err, err
        assert rc in (0, 2), err
        if rc == 2:
            lines = err.strip().splitlines()
            assert lines[-1].startswith("iasf-search: error: ") and len(lines[-1]) < 3000, err
            assert content(db) == before  # refused: nothing stored was changed

    check()
