"""Where trial files live: Optuna's artifact store, located next to the study's storage.

Trials carry files (architecture diagrams, attention heat maps, checkpoints) through Optuna's
artifact API, so optuna-dashboard lists and serves them beside the trial. The store is a folder:
for a SQLite study ``runs/vision.db`` it is ``runs/artifacts``; for any other storage URL it is
``./runs/artifacts`` unless ``--artifacts DIR`` (a shared folder when workers run on several
machines) says otherwise. Files are looked up by their file name on the trial.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore

from iasf_search.errors import BadInput
from iasf_search.files import write_search_file
from iasf_search.optuna_internals import storage_of
from iasf_search.search.storage import storage_file

if TYPE_CHECKING:
    from iasf_search.optuna_internals import ArtifactStore

ARTIFACT_FOLDER = "artifacts"
DIAGRAM = "architecture.svg"
"""The architecture diagram every trial carries (the built-in ``trial_records`` plugin writes it)."""
HEATMAPS = "attention.png"
"""Attention heat maps of the best trials."""
CHECKPOINT = "model.safetensors"
"""Trained weights (safetensors state dict) of the best trials; ``export`` and ``report`` read it."""


def default_artifact_dir(storage_url: str) -> Path:
    """``<folder of the SQLite or journal file>/artifacts``, or ``runs/artifacts`` for server storages."""
    path = storage_file(storage_url)
    return (path.parent if path is not None else Path("runs")) / ARTIFACT_FOLDER


def check_artifact_dir(directory: str | Path) -> None:
    """Fail early, creating nothing, when ``directory`` could not be created or written.

    :raises BadInput: naming the folder and the fix.
    """
    path = Path(directory).absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        raise BadInput(f"{directory}: the artifact folder cannot be created or written there; pass --artifacts DIR "
                       f"with a writable folder (or --no-artifacts)")


class FolderArtifactStore(FileSystemArtifactStore):
    """Optuna's file-system artifact store whose files are written whole or not at all (a temporary file renamed):
    a full disk or a killed process leaves no partial checkpoint, and a full disk stops the search
    (:func:`~iasf_search.files.write_search_file`)."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__(str(folder))
        self.folder = Path(folder)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        if Path(artifact_id).name != artifact_id or artifact_id in ("", ".", ".."):
            raise ValueError(f"artifact id {artifact_id!r} is not a plain file name")
        write_search_file(self.folder / artifact_id, content_body)


def open_artifact_store(directory: str | Path, *, create: bool = True) -> FileSystemArtifactStore:
    """A file-system artifact store in ``directory`` (created when ``create``).

    :raises BadInput: the folder cannot be created or written (or, ``create=False``, does not exist).
    """
    path = Path(directory)
    if not create:
        if not path.is_dir():
            raise BadInput(f"{path}: no artifact folder there; pass --artifacts DIR (the folder the search wrote)")
        return FolderArtifactStore(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot create the artifact folder {path}: {exc.strerror}; pass --artifacts DIR") from None
    if not os.access(path, os.W_OK):
        raise BadInput(f"{path}: artifact folder not writable; pass --artifacts DIR with a writable folder")
    return FolderArtifactStore(path)


def upload_bytes(trial: optuna.Trial, store: ArtifactStore, filename: str, data: bytes, mimetype: str) -> str:
    """Attach ``data`` to the running ``trial`` as a file called ``filename``; returns the artifact id."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        path.write_bytes(data)
        return optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial,
                                                mimetype=mimetype)


def trial_files(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, str]:
    """``{file name: artifact id}`` of the files attached to ``trial`` (the latest upload wins)."""
    metas = optuna.artifacts.get_all_artifact_meta(trial, storage=storage_of(study))
    return {m.filename: m.artifact_id for m in metas}


def read_trial_file(study: optuna.Study, trial: optuna.trial.FrozenTrial, store: ArtifactStore, filename: str) -> bytes | None:
    """The content of ``trial``'s file ``filename``, or None when the trial has no such file.

    :raises BadInput: the trial lists the file but the store does not hold it (wrong ``--artifacts``).
    """
    artifact_id = trial_files(study, trial).get(filename)
    if artifact_id is None:
        return None
    try:
        with store.open_reader(artifact_id) as reader:
            return reader.read()
    except Exception:
        raise BadInput(f"trial #{trial.number} lists {filename} (artifact {artifact_id}) but the artifact store does not "
                       f"hold it; pass --artifacts DIR with the folder the search wrote") from None
