"""Every private Optuna name iasf-search relies on, in one place.

Optuna may rename or remove underscore-prefixed names in any release. Code elsewhere reaches them
only through this module, so an upgrade that breaks one breaks it here, and
``tests/test_optuna_internals.py`` names what disappeared and in which Optuna version. Each entry
says the public API that is missing.
"""

from __future__ import annotations

import optuna

# The protocol every artifact store implements (FileSystemArtifactStore, Boto3ArtifactStore, ...),
# for type hints. Optuna exports the stores but not the protocol they share.
from optuna.artifacts._protocol import ArtifactStore

# Whether a storage beats hearts for its running trials. Optuna exports fail_stale_trials and
# RetryHeartbeatStaleTrialCallback, but not this test (nor the BaseHeartbeat class behind it).
from optuna.storages._heartbeat import is_heartbeat_enabled

__all__ = ["ArtifactStore", "heartbeat_enabled", "storage_of", "storage_url", "trial_id"]

PRIVATE_NAMES = {
    "ArtifactStore": "optuna.artifacts._protocol.ArtifactStore",
    "is_heartbeat_enabled": "optuna.storages._heartbeat.is_heartbeat_enabled",
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
