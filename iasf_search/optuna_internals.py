"""Every private Optuna name iasf-search relies on, in one place.

Optuna may rename or remove underscore-prefixed names in any release. Code elsewhere reaches them
only through this module, so an upgrade that breaks one breaks it here, and
``tests/test_optuna_internals.py`` names what disappeared and in which Optuna version. Each entry
says the public API that is missing.
"""

from __future__ import annotations

from datetime import datetime

import optuna
import sqlalchemy.orm

# The protocol every artifact store implements (FileSystemArtifactStore, Boto3ArtifactStore, ...),
# for type hints. Optuna exports the stores but not the protocol they share.
from optuna.artifacts._protocol import ArtifactStore

# Whether a storage beats hearts for its running trials. Optuna exports fail_stale_trials and
# RetryHeartbeatStaleTrialCallback, but not this test (nor the BaseHeartbeat class behind it).
from optuna.storages._heartbeat import is_heartbeat_enabled

# The tables of an RDB storage, to find RUNNING trials that never recorded a heartbeat: Optuna's stale-trial check
# skips them (``RDBStorage._get_stale_trial_ids``), and no public call says whether a trial has a heartbeat.
from optuna.storages._rdb import models as rdb_models

__all__ = ["ArtifactStore", "heartbeat_enabled", "running_trials_without_heartbeat", "storage_of", "storage_url",
           "trial_id"]

PRIVATE_NAMES = {
    "ArtifactStore": "optuna.artifacts._protocol.ArtifactStore",
    "is_heartbeat_enabled": "optuna.storages._heartbeat.is_heartbeat_enabled",
    "rdb_models": "optuna.storages._rdb.models",
}
"""Our name -> the private dotted path it comes from (checked by the tests)."""
PRIVATE_ATTRIBUTES = ("optuna.study.Study._storage", "optuna.trial.Trial._trial_id",
                      "optuna.storages._CachedStorage._backend")
"""Private attributes read from Optuna's objects (checked on real ones by the tests)."""


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes. ``Study`` keeps it private; the public alternative,
    reopening the storage from its URL, would open a second connection pool."""
    return study._storage


def trial_id(trial: optuna.Trial) -> int:
    """A running trial's storage id, for the storage's system-attribute and get_trial calls, which
    ``Trial`` does not expose (it has ``set_user_attr`` but no ``set_system_attr`` since Optuna 4)."""
    return trial._trial_id


def heartbeat_enabled(study: optuna.Study) -> bool:
    """Whether the study's storage records heartbeats (RDB storages opened with a heartbeat interval)."""
    return is_heartbeat_enabled(storage_of(study))


def storage_url(study: optuna.Study) -> str | None:
    """The URL of an RDB study's database (None for other storages). Optuna wraps an ``RDBStorage`` in
    a private ``_CachedStorage``, whose ``_backend`` holds it; no public accessor gives the URL back."""
    storage = storage_of(study)
    return getattr(getattr(storage, "_backend", storage), "url", None)


def running_trials_without_heartbeat(storage: optuna.storages.RDBStorage, study_id: int, started_before: datetime) -> list[int]:
    """The ids of the study's RUNNING trials that started before ``started_before`` (local time, as Optuna records a
    start) and never recorded a heartbeat. Read from Optuna's tables, as ``RDBStorage._get_stale_trial_ids`` does."""
    session = storage.scoped_session()
    try:
        trials = (session.query(rdb_models.TrialModel)
                  .options(sqlalchemy.orm.selectinload(rdb_models.TrialModel.heartbeats))
                  .filter(rdb_models.TrialModel.state == optuna.trial.TrialState.RUNNING,
                          rdb_models.TrialModel.study_id == study_id)
                  .all())
        return [t.trial_id for t in trials
                if not t.heartbeats and t.datetime_start is not None and t.datetime_start < started_before]
    finally:
        session.close()
