"""The search's loop: run trials until the study holds its target, and ``--workers N`` (the same loop in N
local processes, :mod:`iasf_search.search.workers`). The set-up before it is :mod:`iasf_search.search.setup`;
reading the results back is :mod:`iasf_search.results.access`.

``trials`` means "until the study holds that many finished trials" (complete or pruned), so the
same call after an interruption continues and after completion does nothing.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from iasf_search.errors import BadInput, SearchFailed
from iasf_search.results.access import FINISHED, best_trials, load_results
from iasf_search.results.artifacts import default_artifact_dir
from iasf_search.results.records import FAILURE_REASON
from iasf_search.search import interrupts
from iasf_search.search.prescreen import prescreen
from iasf_search.search.retrying_storage import StorageUnavailable, storage_lost_raised
from iasf_search.search.setup import WORKER_SEED_STRIDE, prepare_search
from iasf_search.search.storage import absolute_url, checkpoint
from iasf_search.search.workers import run_workers, visible_gpus, wait_for_others, worker_count
from iasf_search.session import Session, session_for
from iasf_search.space import SearchSpace
from iasf_search.trial.objective import TrialObjective

if TYPE_CHECKING:
    from iasf_search.optuna_internals import ArtifactStore

MAX_CONSECUTIVE_FAILURES = 10


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
    """Stops the study after too many consecutive failed trials (a broken space or plugin), remembering whether
    any trial of this run finished and the first failure's reason."""

    def __init__(self) -> None:
        self.streak = 0
        self.tripped = False
        self.finished_any = False
        self.first_failure: FrozenTrial | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.streak = self.streak + 1 if trial.state == TrialState.FAIL else 0
        self.finished_any = self.finished_any or trial.state in FINISHED
        if trial.state == TrialState.FAIL and self.first_failure is None:
            self.first_failure = trial
        if self.streak >= MAX_CONSECUTIVE_FAILURES:
            self.tripped = True
            study.stop()

    def failed_search(self) -> SearchFailed | None:
        """The error of a run that stopped with every trial failed (None if any finished or it did not stop so)."""
        if not self.tripped or self.finished_any or self.first_failure is None:
            return None
        first = self.first_failure
        reason = first.user_attrs.get(FAILURE_REASON) or "no reason recorded"
        return SearchFailed(f"every trial of this run failed ({self.streak} in a row) and the search stopped; the first, "
                            f"#{first.number}: {reason}")


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
    :param storage: storage URL (:mod:`iasf_search.search.storage`); default ``sqlite:///runs/<space name>.db``.
    :param study_name: default: the space's ``name``.
    :param device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    :param seed: overrides ``search.seed`` (sampler and training seed).
    :param artifacts: where trials' files go: ``"auto"`` (:func:`~iasf_search.results.artifacts.default_artifact_dir`
        of the storage), a folder, any Optuna artifact store, or None for none.
    :param command: the command line that started this run (passwords hidden), kept in the
        study's ``commands`` attribute for exported model cards.
    :param worker: this process's index among parallel workers (offsets the sampler's seed).
    :raises BadInput: unusable device, data or storage; nothing is written in that case.
    :raises SearchFailed: the run stopped after :data:`MAX_CONSECUTIVE_FAILURES` failed trials without finishing
        any (the first failure's reason in the message); with some finished, a warning says it stopped. Its kinds
        :class:`~iasf_search.search.retrying_storage.StorageUnavailable` (the database stayed away past
        ``search.outage_limit``) and :class:`~iasf_search.errors.DiskFull` (no room for a trial's files) stop the run
        at once; the study is kept, and the same call resumes it.
    """
    start = time.perf_counter()
    session = session_for(space)
    space, hook = session.space, session.components.pm.hook
    run = prepare_search(session, trials=trials, timeout=timeout, storage=storage, study_name=study_name, device=device,
                         seed=seed, artifacts=artifacts, command=command, worker=worker)
    study = run.study
    hook.iasf_study_start(study=study, space=space, components=session.components, target=run.target, timeout=run.timeout,
                          worker=worker)
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
            with interrupts.deferred(), storage_lost_raised():  # a stop signal during Optuna's bookkeeping waits for it
                study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks, gc_after_trial=False)
            started = True
            if objective.stopping is not None:  # a full disk: every later trial would lose its files too
                raise objective.stopping
            if (stop := interrupts.arrived()) is not None:  # swallowed on its way (see interrupts.arrived)
                raise stop
    except BaseException as stopped:
        _end_study(hook, study, space, session, stopped)
        raise
    else:
        _end_study(hook, study, space, session, None)
    finally:
        checkpoint(run.url)
    if (failed := guard.failed_search()) is not None:
        raise failed
    if guard.tripped:
        warnings.warn(f"stopped after {MAX_CONSECUTIVE_FAILURES} consecutive failed trials; "
                      f"see their failure_reason (iasf-search best shows the study)", stacklevel=2)
    return SearchResult(study, run.url, run.target, len(study.trials) - before, time.perf_counter() - start, run.artifact_dir)


def _end_study(hook: Any, study: optuna.Study, space: SearchSpace, session: Session, stopped: BaseException | None) -> None:
    """Call ``iasf_study_end``; when the run is stopping on an error (``stopped``), a failing hook is a warning, so that
    the first error is the one reported (a hook that reads the study fails too when the database is gone)."""
    try:
        hook.iasf_study_end(study=study, space=space, components=session.components)
    except Exception as exc:
        if stopped is None:
            raise
        if isinstance(exc, StorageUnavailable):  # the cause the run stops with: said once, by the error
            return
        warnings.warn(f"a study-end hook failed while the search stopped: {type(exc).__name__}: {exc}", stacklevel=2)


def run_with_workers(space: SearchSpace | Session, argv: Sequence[str], count: int | str, *, trials_per_gpu: int | None = None,
                     json_lines: bool = False, **settings: Any) -> SearchResult:
    """``--workers N``: check everything and create the study in this process (workers started
    together on a fresh database would race on its schema), then run ``count`` worker processes of
    the command line ``argv`` (:func:`iasf_search.search.workers.run_workers`) and gather what they did.

    :param count: a number of workers, or ``"auto"`` (:func:`iasf_search.search.workers.worker_count`).
    :param trials_per_gpu: with ``auto``, workers per GPU.
    :param settings: keyword arguments of :func:`run_search` (``trials``, ``storage``, ``device``, ...).
    :raises BadInput: ``trials_per_gpu`` without a GPU in use, or with a number of workers.
    :raises KeyboardInterrupt: (:class:`~iasf_search.search.interrupts.Terminated` for SIGTERM) when this
        process or a worker was stopped.
    :raises SearchFailed: a worker failed (exit status 1 or 2; its own one-line error is above, prefixed ``w<i>``).
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
    status = run_workers(argv, count, device, storage=run.url, json_lines=json_lines)
    if status in (interrupts.INTERRUPTED_STATUS, interrupts.TERMINATED_STATUS):
        raise interrupts.Terminated() if status == interrupts.TERMINATED_STATUS else KeyboardInterrupt()
    if status:
        raise SearchFailed(f"a worker stopped with exit status {status}; its error is above, prefixed w<i>")
    study = load_results(run.url, run.study.study_name)
    return SearchResult(study, run.url, run.target, len(study.trials) - before, time.perf_counter() - start, run.artifact_dir)


def _counts(study: optuna.Study) -> tuple[int, int]:
    """``(finished, running)`` trials of the study, all workers together (queued WAITING trials are
    not counted: this process runs them)."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return sum(s in FINISHED for s in states), sum(s == TrialState.RUNNING for s in states)


def _waiting(study: optuna.Study) -> bool:
    """Whether a trial waits in the study's queue (``search.enqueue``, a prescreen, a retried trial)."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


