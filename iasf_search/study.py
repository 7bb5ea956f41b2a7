"""Storage, study, sampler and pruner set-up, and the search loop (resumable).

``trials`` means "until the study holds that many finished trials" (complete or pruned), so the
same call after an interruption continues and after completion does nothing.
"""

from __future__ import annotations

import itertools
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from iasf_search import graph as arch
from iasf_search.artifacts import check_artifact_dir, default_artifact_dir, open_artifact_store
from iasf_search.data import check_task
from iasf_search.errors import BadInput
from iasf_search.objective import TrialObjective
from iasf_search.space import SearchSpace
from iasf_search.train import resolve_device

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CONSECUTIVE_FAILURES = 10


def default_storage_url(name: str) -> str:
    """``sqlite:///runs/<name>.db``, relative to the current directory."""
    return f"sqlite:///runs/{name}.db"


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<malformed storage URL>"


def absolute_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (so it works from any directory), password hidden."""
    parsed = sqlalchemy.engine.make_url(url)
    path = _sqlite_path(parsed)
    if path is not None and not path.is_absolute():
        return f"sqlite:///{path.resolve()}"
    return safe_url(url)


def _sqlite_path(url: sqlalchemy.engine.URL) -> Path | None:
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def open_storage(url: str, *, create: bool = True) -> optuna.storages.RDBStorage:
    """Open an Optuna RDB storage; for SQLite, create the parent folder (``create``) or require the file.

    :raises BadInput: malformed or unreachable URL, unwritable folder, or (``create=False``) no such file.
    """
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:
        raise BadInput(f"storage URL {url!r} is malformed; use sqlite:///runs/NAME.db or postgresql://USER@HOST/DB") from None
    path = _sqlite_path(parsed)
    engine_kwargs = {}
    if path is not None:
        if not create and not path.exists():
            raise BadInput(f"{path}: no such study database; run the search first or pass --storage")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"cannot create {path.parent} for the study database: {exc.strerror}; pass --storage elsewhere") from None
        if create and not _writable(path):
            raise BadInput(f"{path}: not writable; pass --storage with a writable location")
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"cannot open storage {safe_url(url)}: {first}") from None


def _writable(path: Path) -> bool:
    return os.access(path if path.exists() else path.parent, os.W_OK)


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=FINISHED)


@dataclass
class SearchResult:
    """What :func:`run_search` did: the study, where it lives, and how many trials this run added."""

    study: optuna.Study
    storage_url: str
    target: int
    new_trials: int
    seconds: float
    artifact_dir: Path | None = None
    """The folder of the file-system artifact store the trials' files went to (None: none or not a folder)."""

    @property
    def best(self) -> list[FrozenTrial]:
        return best_trials(self.study)

    @property
    def dashboard_command(self) -> str:
        """The shell command that opens this study in optuna-dashboard with its artifacts (paths made absolute)."""
        command = f"iasf-search dashboard --storage {absolute_url(self.storage_url)} --study {self.study.study_name}"
        if self.artifact_dir is not None and self.artifact_dir.resolve() != default_artifact_dir(absolute_url(self.storage_url)).resolve():
            command += f" --artifacts {self.artifact_dir.resolve()}"
        return command


class _FailureGuard:
    """Stops the study after too many consecutive failed trials (a broken space or plugin)."""

    def __init__(self) -> None:
        self.streak = 0
        self.tripped = False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.streak = self.streak + 1 if trial.state == TrialState.FAIL else 0
        if self.streak >= MAX_CONSECUTIVE_FAILURES:
            self.tripped = True
            study.stop()


def run_search(space: SearchSpace, *, trials: int | None = None, timeout: float | None = None,
               storage: str | None = None, study_name: str | None = None, device: str = "auto",
               seed: int | None = None, artifacts: str | Path | ArtifactStore | None = "auto",
               command: str | None = None) -> SearchResult:
    """Run or resume a search until the study holds ``trials`` finished trials (or ``timeout`` s pass).

    :param space: a validated space (:func:`iasf_search.load_space`).
    :param trials: target number of finished trials; default ``search.trials``.
    :param timeout: seconds for this run; default ``search.timeout`` (none).
    :param storage: Optuna storage URL; default ``sqlite:///runs/<space name>.db``.
    :param study_name: default: the space's ``name``.
    :param device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    :param seed: overrides ``search.seed`` (sampler and training seed).
    :param artifacts: where trials' files go: ``"auto"`` (:func:`~iasf_search.artifacts.default_artifact_dir`
        of the storage), a folder, any Optuna artifact store, or None for none.
    :param command: the command line that started this run (passwords hidden), kept in the
        study's ``commands`` attribute for exported model cards.
    :raises BadInput: unusable device, data or storage; nothing is written in that case.
    """
    start = time.perf_counter()
    try:
        torch_device = resolve_device(device)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    settings = space.search
    seed = settings.seed if seed is None else seed
    target = settings.trials if trials is None else trials
    timeout = settings.timeout if timeout is None else timeout
    comps = space.components

    data = comps.datasets.get(space.dataset).load(space.dataset_options, space.split)
    check_task(space.dataset, data)
    check_stem_fits(space, data.sample_shape)
    data = data.to(torch_device)

    url = storage or default_storage_url(space.name)
    artifact_dir = _artifact_folder(artifacts, url)
    pruner = comps.pruners.get(settings.pruner).create(settings.pruner_options, epochs=_max_epochs(space))
    study = open_study(space, url, study_name or space.name, seed=seed, pruner=pruner)
    store = open_artifact_store(artifact_dir) if artifact_dir is not None else artifacts
    study.set_user_attr("data", {"sample_shape": list(data.sample_shape), "num_classes": data.num_classes,
                                 "modality": data.modality, "train": len(data.x_train), "val": len(data.x_val),
                                 "test": len(data.x_test)})
    if command and command not in study.user_attrs.get("commands", []):
        study.set_user_attr("commands", [*study.user_attrs.get("commands", []), command])
    done = len(finished_trials(study))
    pm = comps.pm
    pm.hook.iasf_study_start(study=study, space=space, target=target)
    guard = _FailureGuard()
    before = len(study.trials)
    try:
        if done < target:
            study.optimize(
                TrialObjective(space, data, torch_device, seed, store),
                timeout=timeout,
                catch=(Exception,),
                callbacks=[optuna.study.MaxTrialsCallback(target, states=FINISHED), guard,
                           lambda s, t: pm.hook.iasf_trial_end(study=s, trial=t)],
                gc_after_trial=False,
            )
    finally:
        pm.hook.iasf_study_end(study=study, space=space)
    if guard.tripped:
        warnings.warn(f"stopped after {MAX_CONSECUTIVE_FAILURES} consecutive failed trials; "
                      f"see their failure_reason (iasf-search best shows the study)", stacklevel=2)
    return SearchResult(study, url, target, len(study.trials) - before, time.perf_counter() - start, artifact_dir)


def _artifact_folder(artifacts: str | Path | ArtifactStore | None, url: str) -> Path | None:
    """The artifact folder a run will use (checked, not yet created), or None for a given store or none."""
    if not isinstance(artifacts, (str, Path)):
        return None
    folder = default_artifact_dir(url) if artifacts == "auto" else Path(artifacts)
    check_artifact_dir(folder)
    return folder


def check_stem_fits(space: SearchSpace, sample_shape: tuple[int, ...]) -> None:
    """Every combination of the space's stem values must accept the data's sample shape.

    :raises BadInput: naming the space file and the stem's complaint (e.g. a patch that does not divide the grid).
    """
    stem = space.components.stems.get(space.modality)
    choices = {k: r.values() for k, r in space.stem.items()}
    if any(v is None for v in choices.values()):
        return  # a float interval: nothing finite to enumerate
    for combo in itertools.product(*choices.values()):
        try:
            stem.layout(dict(zip(choices, combo, strict=True)), sample_shape)
        except ValueError as exc:
            raise BadInput(f"{space.file}: stem: {exc} (dataset '{space.dataset}' samples have shape {sample_shape}); "
                           f"narrow the stem's values") from None


def _max_epochs(space: SearchSpace) -> int:
    r = space.training["epochs"]
    return int(r.high) if r.high is not None else int(max(r.values()))


def open_study(space: SearchSpace, url: str, name: str, *, seed: int,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create the study (or load it to resume) with the space's sampler and directions.

    The sampler is seeded with ``seed + number of trials already in the study``, so a resumed search
    is reproducible without proposing the first run's architectures again.
    """
    storage = open_storage(url)
    existing = _existing_trial_count(storage, name)
    settings = space.search
    sampler = space.components.samplers.get(settings.sampler).create(
        settings.sampler_options, seed=seed + existing, n_objectives=len(space.objectives))
    try:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                                    directions=space.directions, load_if_exists=True)
    except ValueError as exc:
        raise BadInput(f"study '{name}' in {safe_url(url)} cannot be resumed with this space: {exc}; "
                       f"use --study NEW_NAME") from None
    if [d.name.lower() for d in study.directions] != space.directions:
        raise BadInput(f"study '{name}' in {safe_url(url)} optimises {[d.name.lower() for d in study.directions]}, "
                       f"the space asks {space.directions}; use --study NEW_NAME")
    resolved = space.resolved()
    stored = study.user_attrs.get("space")
    if stored is None:
        study.set_user_attr("space", resolved)
    elif _without_budget(stored) != _without_budget(resolved):
        warnings.warn(f"study '{name}' was created from a different space; trials from both are compared", stacklevel=3)
    return study


def _without_budget(space: dict) -> dict:
    out = dict(space)
    out["search"] = {k: v for k, v in space.get("search", {}).items() if k not in ("trials", "timeout")}
    return out


def _existing_trial_count(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return storage.get_n_trials(study_id)


def load_results(storage: str, study_name: str) -> optuna.Study:
    """Open an existing study read-only-in-spirit (for ``best`` and reports)."""
    st = open_storage(storage, create=False)
    try:
        return optuna.load_study(study_name=study_name, storage=st)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st)]
        raise BadInput(f"no study '{study_name}' in {safe_url(storage)}; studies there: {', '.join(names) or 'none'}") from None


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (one objective) or the Pareto-optimal trials (several), best first."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: t.number)


def trial_architecture(trial: FrozenTrial) -> nx.DiGraph:
    """The architecture graph a trial trained (from its ``architecture`` user attribute)."""
    return arch.from_json(trial.user_attrs["architecture"])
