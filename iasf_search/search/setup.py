"""A search's set-up: check everything (device, data, storage, artifact folder), then create or load the
study with the space's sampler and pruner and record on it the space, the task's data and the classic
baselines. :func:`prepare_search` is what :func:`~iasf_search.search.study.run_search` and ``--workers`` run
first; ``iasf-search baseline`` opens the study through the same :func:`open_task_study`.
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from iasf_search.components import SplitSpec, TaskData
from iasf_search.data import check_task
from iasf_search.errors import BadInput
from iasf_search.results.artifacts import check_artifact_dir, default_artifact_dir, open_artifact_store
from iasf_search.results.baselines import SEARCH_FIT_LIMIT, fit_baselines, fit_work, record_baselines, recorded_baselines
from iasf_search.results.integrity import check_study
from iasf_search.results.records import STUDY_COMMANDS, STUDY_DATA, STUDY_SPACE, study_commands, study_data, study_space
from iasf_search.search.enqueue import check_feasible, enqueue
from iasf_search.search.enqueue import resolve as resolve_enqueued
from iasf_search.search.prescreen import new_sampler
from iasf_search.search.storage import default_storage_url, open_storage, safe_url
from iasf_search.session import Session, session_for
from iasf_search.space import SearchSpace
from iasf_search.train import resolve_device
from iasf_search.trial.cross_validation import check_folds

if TYPE_CHECKING:
    from iasf_search.optuna_internals import ArtifactStore

WORKER_SEED_STRIDE = 7919
"""Sampler seed offset between parallel workers (a prime, so workers never share a seed)."""
FREE_SECTIONS = ("search", "artifacts", "study_page")
"""Space sections a resumed study may change: how it is searched (budget, sampler, pruner, seed, queued
architectures, prescreen) and what a search shows (trial files, the dashboard's study page), never what its trials
mean (the task, stem, manifold, training, costs, objectives, constraints, ...)."""


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
    check_stem_fits(session, host_data.sample_shape, padded=host_data.padded)
    data = host_data.to(torch_device)
    queued = resolve_enqueued(space, comps)
    check_feasible(space, comps, queued, data, torch_device)

    url, name = study_location(space, storage, study_name)
    artifact_dir = _artifact_folder(artifacts, url)
    pruner = comps.pruners.get(settings.pruner).create(settings.pruner_options, epochs=space.max_epochs)
    study, fingerprint = open_task_study(session, data, url, name, seed=seed, pruner=pruner, worker=worker)
    store = open_artifact_store(artifact_dir) if artifact_dir is not None else artifacts
    enqueue(study, queued)  # the baselines of search.enqueue first (once per study)
    if not recorded_baselines(study, fingerprint):  # once per study (and again if its data changed): well under a second
        _fit_and_record_baselines(study, host_data, seed, fingerprint, space.split)
    if command and command not in study_commands(study):
        study.set_user_attr(STUDY_COMMANDS, [*study_commands(study), command])
    return PreparedSearch(study, url, settings.trials if trials is None else trials,
                          settings.timeout if timeout is None else timeout, seed, torch_device, data, store, artifact_dir)


def study_location(space: SearchSpace, storage: str | None, study_name: str | None) -> tuple[str, str]:
    """``(storage URL, study name)`` of a search: as given, else ``sqlite:///runs/<space name>.db`` and the space's name."""
    return storage or default_storage_url(space.name), study_name or space.name


def open_task_study(session: Session, data: TaskData, url: str, name: str, *, seed: int,
                    pruner: optuna.pruners.BasePruner | None = None, worker: int = 0) -> tuple[optuna.Study, dict[str, Any]]:
    """Create or load the study (:func:`open_study`) and record the task it runs on: ``(study, the data
    fingerprint recorded)`` (:func:`data_fingerprint` of ``data`` with the space's split).

    :raises BadInput: the study was created from another space (:func:`open_study`) or searched on other data (its
        recorded fingerprint differs: :func:`data_changes`); nothing is written then.
    """
    fingerprint = data_fingerprint(data, session.space.split)
    study = open_study(session, url, name, seed=seed, pruner=pruner, worker=worker)
    stored = study_data(study)
    if changed := data_changes(stored, fingerprint):
        raise BadInput(f"study '{name}' in {safe_url(url)} was searched on other data: {changed}; search it under a new "
                       f"name with --study NEW_NAME, or give it the data it was searched on")
    if stored != {**stored, **fingerprint}:  # the first run, or an older study whose fingerprint recorded less
        study.set_user_attr(STUDY_DATA, {**stored, **fingerprint})
    return study, fingerprint


def data_changes(stored: dict[str, Any], fingerprint: dict[str, Any]) -> str:
    """Where the task's data fingerprint differs from the one the study recorded (:func:`differences`); empty when
    the study recorded none, or the same. A key the recorded one lacks (an older iasf-search recorded less) is no
    change, except ``padded``, which is recorded only when true."""
    if not stored:
        return ""
    now = {k: v for k, v in fingerprint.items() if k in stored}
    return differences({**stored, "padded": stored.get("padded", False)}, {**now, "padded": fingerprint.get("padded", False)})


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
            "test": len(data.x_test), **({"padded": True} if data.padded else {}),
            **{k: str(data.info[k]) for k in ("source", "test_source") if k in data.info}, **cross_validation}


def _some_width(space: SearchSpace) -> int:
    """A token width the space allows: the first of its values (its lowest, for a very large range)."""
    values = space.width.values()
    return int(values[0] if values else space.width.low)


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


def _artifact_folder(artifacts: str | Path | ArtifactStore | None, url: str) -> Path | None:
    """The artifact folder a run will use (checked, not yet created), or None for a given store or none."""
    if not isinstance(artifacts, (str, Path)):
        return None
    folder = default_artifact_dir(url) if artifacts == "auto" else Path(artifacts)
    check_artifact_dir(folder)
    return folder


def check_stem_fits(session: Session, sample_shape: tuple[int, ...], *, padded: bool = False) -> None:
    """Every combination of the space's stem values must accept the data's sample shape, and, for ``padded``
    samples (:attr:`~iasf_search.components.TaskData.padded`), give a module that masks the padding.

    :raises BadInput: naming the space file and the stem's complaint (e.g. samples with the wrong number of axes).
    """
    space = session.space
    stem = session.components.stems.get(space.modality)
    choices = {k: r.values() for k, r in space.stem.items()}
    if any(v is None for v in choices.values()):
        return  # a float interval: nothing finite to enumerate
    for combo in itertools.product(*choices.values()):
        config = dict(zip(choices, combo, strict=True))
        try:
            stem.layout(config, sample_shape)
        except ValueError as exc:
            raise BadInput(f"{space.file}: stem: {exc} (dataset '{space.dataset}' samples have shape {sample_shape}); "
                           f"narrow the stem's values") from None
        if padded and not callable(getattr(stem.build(config, sample_shape, _some_width(space)), "padding_mask", None)):
            raise BadInput(f"{space.file}: task: dataset '{space.dataset}' gives series of unequal lengths padded to one, "
                           f"but stem '{space.modality}' cannot mask padding (its module has no padding_mask); "
                           f"set task.options.lengths to resample or truncate")


def open_study(session: Session, url: str, name: str, *, seed: int,
               pruner: optuna.pruners.BasePruner | None = None, worker: int = 0) -> optuna.Study:
    """Create the study (or load it to resume) with the space's sampler and directions.

    The sampler is seeded with ``seed + number of trials already in the study`` (plus a per-worker
    offset), so a resumed search is reproducible without proposing the first run's architectures
    again, and parallel workers do not propose the same ones.
    """
    space = session.space
    settings = space.search
    storage = open_storage(url, heartbeat=(settings.heartbeat_interval, settings.grace_period),
                           outage_limit=settings.outage_limit)
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
    check_study(study)  # records damaged outside iasf-search: refused before anything is written
    resolved = space.resolved()
    stored = study_space(study)
    if not stored:
        study.set_user_attr(STUDY_SPACE, resolved)
    elif changed := differences(_trial_meaning(stored), _trial_meaning(resolved)):
        raise BadInput(f"study '{name}' in {safe_url(url)} was created from another space: {changed}; search it under a "
                       f"new name with --study NEW_NAME, or put the space back (a resumed study may change only "
                       f"{_safe_changes()})")
    return study


def differences(stored: Any, now: Any, path: str = "", limit: int = 3) -> str:
    """``"manifold.ops.mlp.expansion: 1 before, 2 now; ..."``: where ``now`` differs from ``stored`` (nested dicts
    compared key by key), at most ``limit`` places, each value cut to 40 characters; empty when they are equal."""
    found: list[str] = []
    _differences(stored, now, path, found)
    shown = "; ".join(found[:limit])
    return shown + (f"; and {len(found) - limit} more" if len(found) > limit else "")


def _differences(stored: Any, now: Any, path: str, found: list[str]) -> None:
    if isinstance(stored, dict) and isinstance(now, dict):
        for key in sorted(set(stored) | set(now), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in now:
                found.append(f"{where}: {_short(stored[key])} before, absent now")
            elif key not in stored:
                found.append(f"{where}: absent before, {_short(now[key])} now")
            else:
                _differences(stored[key], now[key], where, found)
    elif stored != now:
        found.append(f"{path or 'the whole'}: {_short(stored)} before, {_short(now)} now")


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[:width - 3] + "..."


def _safe_changes() -> str:
    """The changes a resumed study accepts, for the refusal's message."""
    return (f"its {', '.join(FREE_SECTIONS[:-1])} and {FREE_SECTIONS[-1]} sections (budget, sampler, pruner, seed, files, "
            f"page) and --trials, --timeout, --workers")


def _trial_meaning(space: dict) -> dict:
    """The resolved space without :data:`FREE_SECTIONS`: what must not change for a study's trials to stay comparable."""
    return {k: v for k, v in space.items() if k not in FREE_SECTIONS}


def _existing_trial_count(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return storage.get_n_trials(study_id)

