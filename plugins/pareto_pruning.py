"""Pareto-aware pruning: asynchronous successive halving on the non-dominated rank (MO-ASHA).

Optuna's pruners read one intermediate value per step and refuse studies with several objectives.
``pareto_halving`` stops unpromising trials of such studies early, as MO-ASHA does (Schmucker et
al., "Multi-objective Asynchronous Successive Halving", 2021), with NSGA-II's selection at each rung.

Contract (see :class:`~iasf_search.components.PrunerFactory`): after every epoch the engine stores
the trial's objective vector with :func:`iasf_search.results.records.set_epoch_values` and calls
``prune(study, trial)``. With one objective, the pruner reads ``trial.intermediate_values`` instead
(Optuna's ``trial.report``), and its decisions are those of Optuna's ``SuccessiveHalvingPruner``
(``min_early_stopping_rate=0``, ``bootstrap_count=0``) while values are finite and no trial failed.

The rule, at each rung (epoch ``min_resource * reduction_factor**k``, below the largest epoch):

* the trials that recorded a vector at the rung compete: this one and every other COMPLETE,
  PRUNED or RUNNING trial of the study (FAIL trials are left out: their retry records its own);
* the vectors are oriented by ``study.directions`` and sorted into non-dominated fronts (rank 0:
  dominated by none); inside a front, a larger crowding distance (NSGA-II) is better;
* with ``n`` competitors and ``n >= reduction_factor``, the trial continues iff fewer than
  ``n // reduction_factor`` competitors are strictly better (lower rank, or same rank and larger
  crowding distance), so ties at the cut continue;
* while ``n < reduction_factor`` the trial continues iff no competitor dominates it. A trial
  cannot wait at a rung until it fills (ASHA would pause it), so the first trials to arrive are
  judged against the few present, as Optuna's successive halving does for one objective.

A trial not at a rung, or without a recorded vector, always continues.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from iasf_search import hookimpl
from iasf_search.components import PrunerFactory
from iasf_search.params import Param
from iasf_search.results.records import epoch_values

COMPETING = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
"""States of the trials whose rung vectors a trial is compared with."""
_HUGE = 1e300
"""Stands for an infinite oriented value, and for NaN (as the worst): beyond any measured value, but finite."""


def non_dominated_ranks(points: np.ndarray) -> np.ndarray:
    """Front index of each row of ``points`` (``(n, m)``, every objective minimised): 0 for the rows no
    other row dominates, 1 for those dominated only by rank-0 rows, and so on. Equal rows share a rank.

    A row *dominates* another when it is no worse in every objective and better in at least one.
    """
    points = np.asarray(points, dtype=float)
    no_worse = (points[:, None, :] <= points[None, :, :]).all(axis=2)
    dominates = no_worse & (points[:, None, :] < points[None, :, :]).any(axis=2)  # [i, j]: row i dominates row j
    dominated_by = dominates.sum(axis=0)
    ranks = np.full(len(points), -1, dtype=int)
    remaining = np.ones(len(points), dtype=bool)
    rank = 0
    while remaining.any():  # domination is a strict partial order: every round places at least one row
        front = remaining & (dominated_by == 0)
        ranks[front] = rank
        remaining &= ~front
        dominated_by = dominated_by - dominates[front].sum(axis=0)
        rank += 1
    return ranks


def crowding_distances(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row of one front (``(n, m)``): for every objective with a
    spread, the gap between a row's two neighbours over the front's range, summed; the extreme rows of
    such an objective get ``inf``. Fronts of one or two rows are all ``inf``."""
    points = np.asarray(points, dtype=float)
    n, m = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(points[:, j], kind="stable")
        column = points[order, j]
        span = column[-1] - column[0]
        if span <= 0:
            continue
        distance[order[0]] = distance[order[-1]] = np.inf
        distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def orient(vectors: Sequence[Sequence[float]], directions: Sequence[StudyDirection]) -> np.ndarray:
    """``vectors`` as an ``(n, m)`` array to minimise: maximised objectives negated, NaN replaced by a huge
    finite value (the worst), infinities by huge finite values of their sign (so arithmetic stays finite)."""
    sign = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    points = np.asarray(vectors, dtype=float).reshape(len(vectors), len(directions)) * sign
    return np.nan_to_num(points, nan=_HUGE, posinf=_HUGE, neginf=-_HUGE)


def promoted(vector: Sequence[float], others: Sequence[Sequence[float]], directions: Sequence[StudyDirection],
             reduction_factor: int) -> bool:
    """Whether a trial whose rung vector is ``vector`` continues against the ``others`` recorded at the same
    rung (the rule in the module's docstring)."""
    points = orient([vector, *others], directions)
    n = len(points)
    ranks = non_dominated_ranks(points)
    if n < reduction_factor:
        return bool(ranks[0] == 0)
    same = np.flatnonzero(ranks == ranks[0])
    crowding = crowding_distances(points[same])
    mine = crowding[0]  # the trial itself is row 0, the first of its front
    better = int((ranks < ranks[0]).sum() + (crowding > mine).sum())
    return better < n // reduction_factor


def trial_vectors(trial: FrozenTrial) -> dict[int, list[float]]:
    """``{epoch: objective vector}`` of a trial: the engine's epoch values (several objectives), else
    Optuna's intermediate values as one-element vectors (one objective, ``trial.report``)."""
    return epoch_values(trial) or {int(step): [float(v)] for step, v in trial.intermediate_values.items()}


class ParetoHalvingPruner(optuna.pruners.BasePruner):
    """Asynchronous successive halving on the non-dominated rank; see the module's docstring.

    :param min_resource: epochs before the first rung.
    :param reduction_factor: about ``1/reduction_factor`` of the trials reaching a rung continue.
    :param max_resource: no rung at or after this epoch (a fully trained trial is kept); None: no limit.
    """

    def __init__(self, *, min_resource: int = 2, reduction_factor: int = 3, max_resource: int | None = None) -> None:
        if min_resource < 1 or reduction_factor < 2:
            raise ValueError(f"need min_resource >= 1 and reduction_factor >= 2, got {min_resource}, {reduction_factor}")
        self.min_resource, self.reduction_factor, self.max_resource = min_resource, reduction_factor, max_resource

    def is_rung(self, epoch: int) -> bool:
        """Whether ``epoch`` is ``min_resource * reduction_factor**k`` for some ``k >= 0`` (and below ``max_resource``)."""
        if epoch < self.min_resource or epoch % self.min_resource or (self.max_resource is not None and epoch >= self.max_resource):
            return False
        q = epoch // self.min_resource
        while q % self.reduction_factor == 0:
            q //= self.reduction_factor
        return q == 1

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        history = trial_vectors(trial)
        if not history:
            return False
        epoch = max(history)
        m = len(study.directions)
        if not self.is_rung(epoch) or len(history[epoch]) != m:
            return False
        others = []
        for t in study.get_trials(deepcopy=False, states=COMPETING):
            if t.number != trial.number:
                vector = trial_vectors(t).get(epoch)
                if vector is not None and len(vector) == m:
                    others.append(vector)
        return not promoted(history[epoch], others, study.directions, self.reduction_factor)


class ParetoHalving(PrunerFactory):
    name = "pareto_halving"
    description = ("successive halving on the non-dominated rank at each rung (MO-ASHA), for studies with several "
                   "objectives; with one objective, Optuna's successive halving")
    multi_objective = True
    params = {
        "min_resource": Param(None, int, low=1, nullable=True,
                              help="epochs before the first rung (rungs: min_resource * reduction_factor**k); "
                                   "default: a third of the epochs (see benchmarks/RESULTS.md)"),
        "reduction_factor": Param(3, int, low=2, help="about 1/reduction_factor of the trials reaching a rung continue"),
    }

    def create(self, options: Mapping[str, Any], *, epochs: int) -> optuna.pruners.BasePruner:
        min_resource = options["min_resource"] or max(1, epochs // 3)  # early rungs ranked the trials poorly
        return ParetoHalvingPruner(min_resource=min_resource, reduction_factor=options["reduction_factor"],
                                   max_resource=epochs)


@hookimpl
def iasf_register_pruners(registry) -> None:
    registry.register(ParetoHalving())
