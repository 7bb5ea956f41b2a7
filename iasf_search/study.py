"""The search: set-up (device, data, storage, the study with the space's sampler and pruner), the loop
that runs trials until the study holds its target, and ``--workers N`` (the same loop in N local
processes, :mod:`iasf_search.workers`). Reading the results back is :mod:`iasf_search.results.access`.

``trials`` means "until the study holds that many finished trials" (complete or pruned), so the
same call after an interruption continues and after completion does nothing.
"""

from __future__ import annotations

import itertools
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from iasf_search import interrupts
from iasf_search.components import SplitSpec, TaskData
from iasf_search.cross_validation import check_folds
from iasf_search.data import check_task
from iasf_search.enqueue import check_feasible, enqueue
from iasf_search.enqueue import resolve as resolve_enqueued
from iasf_search.errors import BadInput
from iasf_search.objective import TrialObjective
from iasf_search.prescreen import new_sampler, prescreen
from iasf_search.results.access import FINISHED, best_trials, load_results
from iasf_search.results.artifacts import check_artifact_dir, default_artifact_dir, open_artifact_store
from iasf_search.results.baselines import SEARCH_FIT_LIMIT, fit_baselines, fit_work, record_baselines, recorded_baselines
from iasf_search.session import Session, session_for
from iasf_search.space import SearchSpace
from iasf_search.storage import absolute_url, checkpoint, default_storage_url, open_storage, safe_url
from iasf_search.train import resolve_device
from iasf_search.workers import run_workers, visible_gpus, wait_for_others, worker_count

if TYPE_CHECKING:
    from iasf_search.optuna_internals import ArtifactStore

MAX_CONSECUTIVE_FAILURES = 10
WORKER_SEED_STRIDE = 7919
BUDGET_KEYS = ("trials", "timeout", "max_trial_seconds", "heartbeat_interval", "grace_period", "proxies")
"""``search`` keys a resumed study may change without changing what its trials mean."""


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
    pareto_plot: Path | None = None
    """The Pareto-front PNG written after a search with two or three objectives (see :func:`pareto_plot_path`)."""

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


def pareto_plot_path(storage_url: str, study_name: str) -> Path:
    """Where the search writes a multi-objective study's Pareto plot: ``<study>-pareto.png`` beside
    the SQLite or journal file (``runs/`` by default, also for server storages)."""
    return default_artifact_dir(absolute_url(storage_url)).parent / f"{study_name}-pareto.png"


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


def run_search(space: SearchSpace | Session, *, trials: int | None = None, timeout: float | None = None,
               storage: str | None = None, study_name: str | None = None, device: str = "auto",
               seed: int | None = None, artifacts: str | Path | ArtifactStore | None = "auto",
               command: str | None = None, worker: int = 0) -> SearchResult:
    """Run or resume a search until the study holds ``trials`` finished trials (or ``timeout`` s pass).

    Several processes (``worker`` 0, 1, ...; on one machine or many, sharing ``storage``) may run
    the same search at once: together they finish exactly ``trials`` trials. A process that sees
    the remaining trials running elsewhere waits for them (failing and retrying those whose
    worker died, after the heartbeat grace period) instead of starting more.

    :param space: a session (:func:`iasf_search.open_session`), or a validated space
        (:func:`iasf_search.load_space`) whose plugins are then loaded again.
    :param trials: target number of finished trials; default ``search.trials``.
    :param timeout: stop starting trials once this many seconds have passed since the study was
        ready (data loaded, study opened: set-up is not counted); a run always starts at least one
        trial, as Optuna's own ``timeout`` does. Default ``search.timeout`` (none).
    :param storage: storage URL (:mod:`iasf_search.storage`); default ``sqlite:///runs/<space name>.db``.
    :param study_name: default: the space's ``name``.
    :param device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    :param seed: overrides ``search.seed`` (sampler and training seed).
    :param artifacts: where trials' files go: ``"auto"`` (:func:`~iasf_search.results.artifacts.default_artifact_dir`
        of the storage), a folder, any Optuna artifact store, or None for none.
    :param command: the command line that started this run (passwords hidden), kept in the
        study's ``commands`` attribute for exported model cards.
    :param worker: this process's index among parallel workers (offsets the sampler's seed).
    :raises BadInput: unusable device, data or storage; nothing is written in that case.
    """
    start = time.perf_counter()
    session = session_for(space)
    space, hook = session.space, session.components.pm.hook
    run = prepare_search(session, trials=trials, timeout=timeout, storage=storage, study_name=study_name, device=device,
                         seed=seed, artifacts=artifacts, command=command, worker=worker)
    study = run.study
    hook.iasf_study_start(study=study, space=space, components=session.components, target=run.target, timeout=run.timeout)
    guard = _FailureGuard()
    before = len(study.trials)
    deadline = None if run.timeout is None else time.perf_counter() + run.timeout  # set-up is not counted
    started = False  # the timeout never stops a run before its first trial
    objective = TrialObjective(session, run.data, run.device, run.seed, run.store, target=run.target)
    callbacks = [guard, lambda s, t: hook.iasf_trial_end(study=s, trial=t)]
    try:
        while not guard.tripped:
            finished, running = _counts(study)
            left = None if deadline is None else deadline - time.perf_counter()
            if finished >= run.target or (left is not None and left <= 0 and started):
                break
            if finished + running >= run.target:  # the rest is running elsewhere: wait for it
                if not wait_for_others(study, space.search.heartbeat_interval, running, left):
                    break
                continue
            if space.search.prescreen and not _waiting(study):  # queue the best-scored of many candidates
                prescreen(study, session, run.data, run.device, seed=run.seed + WORKER_SEED_STRIDE * worker,
                          batch=objective.proxy_batch, limit=run.target - finished - running)
            # one trial per call: the target is checked right before each new trial is created
            with interrupts.deferred():  # a stop signal during Optuna's bookkeeping waits for it to finish
                study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks, gc_after_trial=False)
            started = True
            if (stop := interrupts.arrived()) is not None:  # swallowed on its way (see interrupts.arrived)
                raise stop
    finally:
        hook.iasf_study_end(study=study, space=space, components=session.components)
        checkpoint(run.url)
    if guard.tripped:
        warnings.warn(f"stopped after {MAX_CONSECUTIVE_FAILURES} consecutive failed trials; "
                      f"see their failure_reason (iasf-search best shows the study)", stacklevel=2)
    return SearchResult(study, run.url, run.target, len(study.trials) - before, time.perf_counter() - start, run.artifact_dir)


def run_with_workers(space: SearchSpace | Session, argv: Sequence[str], count: int | str, *, trials_per_gpu: int | None = None,
                     json_lines: bool = False, **settings: Any) -> SearchResult:
    """``--workers N``: check everything and create the study in this process (workers started
    together on a fresh database would race on its schema), then run ``count`` worker processes of
    the command line ``argv`` (:func:`iasf_search.workers.run_workers`) and gather what they did.

    :param count: a number of workers, or ``"auto"`` (:func:`iasf_search.workers.worker_count`).
    :param trials_per_gpu: with ``auto``, workers per GPU.
    :param settings: keyword arguments of :func:`run_search` (``trials``, ``storage``, ``device``, ...).
    :raises BadInput: ``trials_per_gpu`` without a GPU in use, or with a number of workers.
    :raises KeyboardInterrupt: (:class:`~iasf_search.interrupts.Terminated` for SIGTERM) when this
        process or a worker was stopped; RuntimeError when a worker failed.
    """
    start = time.perf_counter()
    device, gpus, cores = settings.get("device", "auto"), visible_gpus(), os.cpu_count() or 1
    try:  # checked before anything is stored
        worker_count(count, device, trials_per_gpu=trials_per_gpu, gpus=gpus, cores=cores, trials_left=1)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    run = prepare_search(space, **settings)
    before = len(run.study.trials)
    count = worker_count(count, device, trials_per_gpu=trials_per_gpu, gpus=gpus, cores=cores,
                         trials_left=run.target - _counts(run.study)[0])
    status = run_workers(argv, count, device, json_lines=json_lines)
    if status in (interrupts.INTERRUPTED_STATUS, interrupts.TERMINATED_STATUS):
        raise interrupts.Terminated() if status == interrupts.TERMINATED_STATUS else KeyboardInterrupt()
    if status:
        raise RuntimeError(f"a worker stopped with exit status {status} (its messages are above, prefixed w<i>)")
    study = load_results(run.url, run.study.study_name)
    return SearchResult(study, run.url, run.target, len(study.trials) - before, time.perf_counter() - start, run.artifact_dir)


@dataclass
class PreparedSearch:
    """A validated search, its study created or loaded: what :func:`run_search` (or a worker) runs."""

    study: optuna.Study
    url: str
    target: int
    timeout: float | None
    seed: int
    device: torch.device
    data: TaskData
    store: ArtifactStore | None
    artifact_dir: Path | None


def prepare_search(space: SearchSpace | Session, *, trials: int | None = None, timeout: float | None = None,
                   storage: str | None = None, study_name: str | None = None, device: str = "auto",
                   seed: int | None = None, artifacts: str | Path | ArtifactStore | None = "auto",
                   command: str | None = None, worker: int = 0) -> PreparedSearch:
    """Check everything (device, data, storage, artifact folder), then create or load the study.

    Arguments as :func:`run_search`. Creating the study before workers start avoids their race on a
    fresh database's schema.

    :raises BadInput: unusable device, data or storage; nothing is written in that case.
    """
    try:
        torch_device = resolve_device(device)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    session = session_for(space)
    space, comps = session.space, session.components
    settings = space.search
    seed = settings.seed if seed is None else seed

    host_data = load_task(session)
    check_stem_fits(session, host_data.sample_shape)
    data = host_data.to(torch_device)
    queued = resolve_enqueued(space, comps)
    check_feasible(space, comps, queued, data, torch_device)

    url = storage or default_storage_url(space.name)
    artifact_dir = _artifact_folder(artifacts, url)
    pruner = comps.pruners.get(settings.pruner).create(settings.pruner_options, epochs=space.max_epochs)
    study = open_study(session, url, study_name or space.name, seed=seed, pruner=pruner, worker=worker)
    store = open_artifact_store(artifact_dir) if artifact_dir is not None else artifacts
    enqueue(study, queued)  # the baselines of search.enqueue first (once per study)
    fingerprint = data_fingerprint(data, space.split)
    study.set_user_attr("data", fingerprint)
    if not recorded_baselines(study, fingerprint):  # once per study (and again if its data changed): well under a second
        _fit_and_record_baselines(study, host_data, seed, fingerprint, space.split)
    if command and command not in study.user_attrs.get("commands", []):
        study.set_user_attr("commands", [*study.user_attrs.get("commands", []), command])
    return PreparedSearch(study, url, settings.trials if trials is None else trials,
                          settings.timeout if timeout is None else timeout, seed, torch_device, data, store, artifact_dir)


def load_task(session: Session) -> TaskData:
    """The space's task exactly as a search trains on it: its dataset loaded with the space's options and
    split (so the same samples in the same splits), checked, on the CPU.

    :raises BadInput: unusable data (see :func:`~iasf_search.data.check_task`), or data that cannot be
        cut into the split's folds.
    """
    space = session.space
    data = session.components.datasets.get(space.dataset).load(space.dataset_options, space.split)
    check_task(space.dataset, data)
    check_folds(space.dataset, data, space.split, space.file)
    return data


def data_fingerprint(data: TaskData, split: SplitSpec | None = None) -> dict[str, Any]:
    """What the study's ``data`` attribute records of the task: shapes, classes, split sizes, where it came
    from, and the cross-validation (``{"folds", "repeats"}``) when ``split`` has folds."""
    cross_validation = {} if split is None or split.folds is None else {
        "cross_validation": {"folds": split.folds, "repeats": split.repeats}}
    return {"sample_shape": list(data.sample_shape), "num_classes": data.num_classes,
            "modality": data.modality, "train": len(data.x_train), "val": len(data.x_val),
            "test": len(data.x_test),
            **{k: str(data.info[k]) for k in ("source", "test_source") if k in data.info}, **cross_validation}


def _fit_and_record_baselines(study: optuna.Study, data: TaskData, seed: int, fingerprint: dict[str, Any],
                              split: SplitSpec) -> None:
    """Fit the classic baselines (:mod:`iasf_search.results.baselines`) and record them on the study; a task
    too large to fit them in passing (:data:`~iasf_search.results.baselines.SEARCH_FIT_LIMIT`) or a failure
    to fit them is a warning, never the search's end."""
    if fit_work(data, split) > SEARCH_FIT_LIMIT:
        warnings.warn(f"baselines not fitted: {len(data.x_train)} training samples of {data.sample_shape} would keep the "
                      f"search waiting; `iasf-search baseline --space ...` fits and records them", stacklevel=3)
        return
    try:
        baselines = fit_baselines(data, seed, split)
    except Exception as exc:  # e.g. data scikit-learn refuses: the search itself may still work
        warnings.warn(f"baselines not fitted ({type(exc).__name__}: {exc}); the search goes on without them", stacklevel=3)
        return
    record_baselines(study, baselines, fingerprint)


def _counts(study: optuna.Study) -> tuple[int, int]:
    """``(finished, running)`` trials of the study, all workers together (queued WAITING trials are
    not counted: this process runs them)."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return sum(s in FINISHED for s in states), sum(s == TrialState.RUNNING for s in states)


def _waiting(study: optuna.Study) -> bool:
    """Whether a trial waits in the study's queue (``search.enqueue``, a prescreen, a retried trial)."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _artifact_folder(artifacts: str | Path | ArtifactStore | None, url: str) -> Path | None:
    """The artifact folder a run will use (checked, not yet created), or None for a given store or none."""
    if not isinstance(artifacts, (str, Path)):
        return None
    folder = default_artifact_dir(url) if artifacts == "auto" else Path(artifacts)
    check_artifact_dir(folder)
    return folder


def check_stem_fits(session: Session, sample_shape: tuple[int, ...]) -> None:
    """Every combination of the space's stem values must accept the data's sample shape.

    :raises BadInput: naming the space file and the stem's complaint (e.g. samples with the wrong number of axes).
    """
    space = session.space
    stem = session.components.stems.get(space.modality)
    choices = {k: r.values() for k, r in space.stem.items()}
    if any(v is None for v in choices.values()):
        return  # a float interval: nothing finite to enumerate
    for combo in itertools.product(*choices.values()):
        try:
            stem.layout(dict(zip(choices, combo, strict=True)), sample_shape)
        except ValueError as exc:
            raise BadInput(f"{space.file}: stem: {exc} (dataset '{space.dataset}' samples have shape {sample_shape}); "
                           f"narrow the stem's values") from None


def open_study(session: Session, url: str, name: str, *, seed: int,
               pruner: optuna.pruners.BasePruner | None = None, worker: int = 0) -> optuna.Study:
    """Create the study (or load it to resume) with the space's sampler and directions.

    The sampler is seeded with ``seed + number of trials already in the study`` (plus a per-worker
    offset), so a resumed search is reproducible without proposing the first run's architectures
    again, and parallel workers do not propose the same ones.
    """
    space = session.space
    settings = space.search
    storage = open_storage(url, heartbeat=(settings.heartbeat_interval, settings.grace_period))
    existing = _existing_trial_count(storage, name)
    sampler = new_sampler(session, seed + existing + WORKER_SEED_STRIDE * worker)
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
    out["search"] = {k: v for k, v in space.get("search", {}).items() if k not in BUDGET_KEYS}
    out.pop("artifacts", None)
    return out


def _existing_trial_count(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return storage.get_n_trials(study_id)

