"""The private Optuna names iasf-search uses: still there, still what the code expects, and used nowhere else.

When an Optuna upgrade removes or moves one of them, these tests fail first, naming the private path
and the Optuna version; fix :mod:`iasf_search.optuna_internals` (and only it).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from conftest import resolve_private

from iasf_search import optuna_internals
from iasf_search.optuna_internals import (
    PRIVATE_ATTRIBUTES,
    PRIVATE_NAMES,
    heartbeat_enabled,
    running_trials_without_heartbeat,
    storage_of,
    storage_url,
    trial_id,
)
from iasf_search.search.storage import open_storage

ROOT = Path(__file__).resolve().parent.parent


def resolve(path: str) -> object:
    return resolve_private(path, "optuna", optuna.__version__, "iasf_search/optuna_internals.py")


@pytest.mark.parametrize("name", sorted(PRIVATE_NAMES))
def test_private_name_still_exists_in_this_optuna(name):
    assert getattr(optuna_internals, name) is resolve(PRIVATE_NAMES[name])


def test_private_attributes_still_hold_what_the_code_reads(tmp_path):
    assert set(PRIVATE_ATTRIBUTES) == {"optuna.study.Study._storage", "optuna.trial.Trial._trial_id",
                                       "optuna.storages._CachedStorage._backend"}
    url = f"sqlite:///{tmp_path / 'x.db'}"
    study = optuna.create_study(storage=open_storage(url, heartbeat=(5, 20)), study_name="s")
    trial = study.ask()
    assert isinstance(storage_of(study), optuna.storages.BaseStorage), f"Study._storage changed in optuna {optuna.__version__}"
    assert storage_of(study).get_trial(trial_id(trial)).number == trial.number, \
        f"Trial._trial_id is no longer the storage id in optuna {optuna.__version__}"
    assert heartbeat_enabled(study) is True
    assert storage_url(study) == url, f"_CachedStorage._backend no longer holds the RDBStorage in optuna {optuna.__version__}"
    assert storage_url(optuna.create_study()) is None
    assert heartbeat_enabled(optuna.create_study()) is False  # in memory: no heartbeats


def test_running_trials_without_heartbeat_are_read_from_optunas_tables(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'x.db'}", heartbeat=(5, 20))
    study = optuna.create_study(storage=storage, study_name="s")
    beating, silent, done = study.ask(), study.ask(), study.ask()
    study.tell(done, 1.0)
    storage.record_heartbeat(trial_id(beating))
    later = datetime.now() + timedelta(seconds=1)
    assert running_trials_without_heartbeat(storage, study._study_id, later) == [trial_id(silent)]
    assert running_trials_without_heartbeat(storage, study._study_id, later - timedelta(hours=1)) == []  # too recent


def test_the_artifact_protocol_is_what_file_system_stores_implement(tmp_path):
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path))
    for method in ("open_reader", "write", "remove"):  # what the engine calls through upload/download
        assert hasattr(optuna_internals.ArtifactStore, method) and callable(getattr(store, method)), method


PRIVATE_USE = re.compile(r"\boptuna(\.\w+)*\._[a-z]\w*|\._storage\b|\._trial_id\b")
"""A private Optuna path (``optuna.storages._heartbeat``) or one of the private attributes."""


def test_private_optuna_names_are_used_only_through_optuna_internals():
    offenders = []
    for folder in ("iasf_search", "plugins", "iasf"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "optuna_internals.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if PRIVATE_USE.search(code) and "``" not in code:
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "use these through iasf_search/optuna_internals.py:\n" + "\n".join(offenders)
