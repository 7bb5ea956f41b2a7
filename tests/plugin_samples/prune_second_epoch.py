"""A pruner for several objectives that stops every trial but the first at epoch 2, after checking
that the engine recorded one objective vector per epoch."""

from __future__ import annotations

import optuna

from iasf_search import hookimpl
from iasf_search.components import PrunerFactory
from iasf_search.results.records import epoch_values


class _PruneAtTwo(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        recorded = epoch_values(trial)
        assert sorted(recorded) == list(range(1, max(recorded) + 1))
        assert all(len(v) == len(study.directions) for v in recorded.values())
        return trial.number > 0 and max(recorded) == 2


class PruneAtTwo(PrunerFactory):
    name = "prune_at_two"
    multi_objective = True

    def create(self, options, *, epochs):
        return _PruneAtTwo()


@hookimpl
def iasf_register_pruners(registry) -> None:
    registry.register(PruneAtTwo())
