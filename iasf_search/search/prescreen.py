"""Zero-cost proxies in a search: recording them on trials (``search.proxies``) and prescreening
(``search.prescreen``).

Recording: every proxy of ``search.proxies`` (and the prescreen's proxy) scores each trial's untrained
model — the exact initial weights it then trains from — on a fixed batch of :data:`PROXY_BATCH`
training samples (drawn once with the search's seed), before training, as the costs are measured;
the score is the user attribute ``proxy.<name>``. Reused and enqueued trials are scored too.

Prescreening (:func:`prescreen`): before the search starts a trial, when no trial waits in the
study's queue, an in-memory Optuna study with the same directions and a fresh sampler of the
space's kind (seeded with the seed, the worker's offset and the number of trials) is given the real
study's finished trials; ``candidates`` trials are asked from it, each one's architecture and
settings sampled with the engine's own sampling code (:func:`iasf_search.sampling.sample_trial`),
its model built and scored by the proxy. The parameters of the best ``keep`` (distinct, feasible
first when the space has constraints) are queued in the real study (``enqueue_trial``), with the user
attribute ``prescreen`` (``{proxy, score, rank, candidates}``); the search's loop then runs them as
any trial. The candidates live only in the in-memory study, so the real study's trials, counts and
target see only what is trained. With several workers each one prescreens for itself; a queued
trial is run by whichever worker takes it first.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import TYPE_CHECKING, Any

import optuna
import torch
from optuna.trial import TrialState
from torch import nn

from iasf_search import graph as arch
from iasf_search.build import build_model
from iasf_search.components import TaskData, ZeroCostProxy
from iasf_search.optuna_internals import storage_of, trial_id
from iasf_search.results.records import ARCH_HASH, PRESCREEN, PROXY_PREFIX
from iasf_search.sampling import sample_trial
from iasf_search.trial.cost_measurement import violations

if TYPE_CHECKING:
    from iasf_search.session import Session
    from iasf_search.space.spec import SearchSpace

PROXY_BATCH = 64
"""Training samples every proxy scores a model on (the same ones for every trial of a search)."""


def proxy_batch(data: TaskData, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed batch the proxies score on: :data:`PROXY_BATCH` training samples (all of a smaller
    split) drawn with ``seed``, on the data's device."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(data.x_train), generator=generator)[:PROXY_BATCH].to(data.x_train.device)
    return data.x_train[index], data.y_train[index]


def proxies_to_record(space: SearchSpace) -> list[str]:
    """``search.proxies`` and the prescreen's proxy, each once."""
    names = list(space.search.proxies)
    prescreen = space.search.prescreen
    if prescreen and prescreen["proxy"] not in names:
        names.append(prescreen["proxy"])
    return names


def measure_proxy(proxy: ZeroCostProxy, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                  device: torch.device) -> float:
    """``proxy.score`` of ``model`` (put in train mode for it, its mode restored after) without
    touching the global random state (the same training follows with or without proxies)."""
    was_training = model.training
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        model.train()
        try:
            value = float(proxy.score(model, batch[0], batch[1], device))
        finally:
            model.train(was_training)
    return value


def record_proxies(trial: optuna.Trial, model: nn.Module, session: Session, batch: tuple[torch.Tensor, torch.Tensor],
                   device: torch.device) -> dict[str, float]:
    """Score ``model`` with every proxy the space records; each written as ``proxy.<name>``."""
    scores = {}
    for name in proxies_to_record(session.space):
        scores[name] = measure_proxy(session.components.proxies.get(name), model, batch, device)
        trial.set_user_attr(PROXY_PREFIX + name, scores[name] if math.isfinite(scores[name]) else str(scores[name]))
    return scores


def new_sampler(session: Session, seed: int) -> optuna.samplers.BaseSampler:
    """A fresh sampler of the space's kind (``search.sampler`` with its options), seeded with ``seed``."""
    space = session.space
    factory = session.components.samplers.get(space.search.sampler)
    return factory.create(space.search.sampler_options, seed=seed, n_objectives=len(space.objectives),
                          **({"session": session} if factory.needs_session else {}))


def _feasible(model: nn.Module, session: Session, data: TaskData, device: torch.device) -> bool:
    """Whether the candidate's model meets every constraint of the space (True without constraints)."""
    return not violations(model, session.space, session.components, data.x_val, device)


def prescreen(study: optuna.Study, session: Session, data: TaskData, device: torch.device, *, seed: int,
              batch: tuple[torch.Tensor, torch.Tensor], limit: int) -> int:
    """Sample ``search.prescreen.candidates`` trials in memory, score them, queue the best ``keep``
    (at most ``limit``: the trials the study still needs) in ``study``. Returns how many were queued
    (0 when no candidate could be built and scored; the sampler's own next trial then runs)."""
    space, components = session.space, session.components
    settings = space.search.prescreen
    proxy = components.proxies.get(settings["proxy"])
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))  # not "a new study created in memory" per trial
    try:
        memory = optuna.create_study(directions=space.directions, sampler=new_sampler(session, seed + len(study.trials)))
    finally:
        optuna.logging.set_verbosity(verbosity)
    memory.add_trials(finished)
    scored: list[tuple[bool, float, int, optuna.Trial]] = []
    problems = []
    for i in range(settings["candidates"]):
        trial = memory.ask()
        try:
            graph, _, _ = sample_trial(trial, space, components)
            trial.set_user_attr(ARCH_HASH, arch.canonical_hash(graph))  # a graph-aware sampler avoids repeats
            torch.manual_seed(seed)  # the initial weights the trial itself will train from
            model = build_model(graph, components, data.sample_shape, data.num_classes, padded=data.padded).to(device)
            score = measure_proxy(proxy, model, batch, device)
            feasible = _feasible(model, session, data, device)
        except Exception as exc:  # a candidate that cannot be built or scored is skipped, never the search's end
            problems.append(f"{type(exc).__name__}: {exc}")
            continue
        scored.append((feasible, score if not math.isnan(score) else -math.inf, -i, trial))
    if problems:
        warnings.warn(f"prescreen: {len(problems)} of {settings['candidates']} candidates could not be scored "
                      f"(first: {problems[0][:300]})", stacklevel=2)
    scored.sort(key=lambda s: s[:3], reverse=True)
    queued, seen = 0, set()
    for feasible, score, _, trial in scored:
        key = json.dumps(trial.params, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        queued += 1
        written = storage_of(memory).get_trial_user_attrs(trial_id(trial))  # the sampler's too (evolution's parent)
        attrs: dict[str, Any] = {k: v for k, v in written.items() if k != ARCH_HASH}
        attrs[PRESCREEN] = {"proxy": proxy.name, "score": score if math.isfinite(score) else str(score), "rank": queued,
                            "candidates": settings["candidates"], **({} if feasible else {"feasible": False})}
        study.enqueue_trial(trial.params, user_attrs=attrs)
        if queued >= min(settings["keep"], limit):
            break
    return queued
