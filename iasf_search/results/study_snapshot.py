"""A stored study read once for its dashboard page: its trials, the engine's order of them, their architectures and
feature table (:mod:`iasf_search.results.features`). The study note and the study plots are drawn from one snapshot,
so that they agree with each other and each refresh reads the storage once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import optuna
from optuna.trial import FrozenTrial, TrialState

from iasf_search.optuna_internals import storage_of
from iasf_search.results.access import StoredStudy, best_trials, feasible, finite_number, tie_break, trial_architecture
from iasf_search.results.features import FeatureTable, feature_table
from iasf_search.results.records import ARCHITECTURE, VAL_ACCURACY, record


@dataclass
class StudySnapshot:
    """What a study held when it was read (:func:`take_snapshot`)."""

    opened: StoredStudy
    trials: list[FrozenTrial]
    """Every trial, by number."""
    best: list[FrozenTrial]
    """The engine's pick (:func:`~iasf_search.results.access.best_trials`): one trial, or the Pareto set."""
    graphs: dict[int, nx.DiGraph] = field(repr=False)
    """The architectures of the complete trials, by trial number."""

    @property
    def study(self) -> optuna.Study:
        return self.opened.study

    @cached_property
    def study_id(self) -> int:
        """The study's id in its storage: the dashboard's page is ``/dashboard/studies/<id>``."""
        return storage_of(self.study).get_study_id_from_name(self.study.study_name)

    @cached_property
    def complete(self) -> list[FrozenTrial]:
        """The complete trials that recorded an architecture."""
        return [t for t in self.trials if t.state == TrialState.COMPLETE and t.number in self.graphs]

    @cached_property
    def ranked(self) -> list[FrozenTrial]:
        """The complete trials that met every constraint, in the engine's order, best first (:func:`engine_order`)."""
        return engine_order(self.study, [t for t in self.complete if feasible(t)], self.best)

    @cached_property
    def table(self) -> FeatureTable:
        """The feature table of the complete trials."""
        return feature_table(self.complete, self.graphs)

    def trial_url(self, number: int) -> str:
        """The dashboard's path of trial ``number``'s page."""
        return f"/dashboard/studies/{self.study_id}/trials?numbers={number}"


def engine_order(study: optuna.Study, complete: list[FrozenTrial], best: list[FrozenTrial]) -> list[FrozenTrial]:
    """``complete`` ranked as the engine ranks them. One objective: by its value in the study's direction, then
    :func:`~iasf_search.results.access.tie_break` (so the first is the pick ``best`` and ``export`` name); several:
    the Pareto set ``best`` first, each part by validation accuracy (highest first) then ``tie_break``."""
    if len(study.directions) == 1:
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        return sorted(complete, key=lambda t: (sign * t.values[0], *tie_break(t)))
    front = {t.number for t in best}
    return sorted(complete, key=lambda t: (t.number not in front, -(finite_number(t.user_attrs.get(VAL_ACCURACY)) or -math.inf),
                                           *tie_break(t)))


def take_snapshot(opened: StoredStudy, graphs: dict[int, nx.DiGraph] | None = None) -> StudySnapshot:
    """Read ``opened``'s trials once.

    :param graphs: architectures parsed by an earlier snapshot, by trial number: a complete trial's does not
        change, so a refresh parses only the trials that completed since (the dict is updated in place).
    """
    graphs = {} if graphs is None else graphs
    trials = opened.study.get_trials(deepcopy=False)
    for t in trials:
        if t.state == TrialState.COMPLETE and t.number not in graphs and record(t, ARCHITECTURE) is not None:
            graphs[t.number] = trial_architecture(t)
    return StudySnapshot(opened, trials, best_trials(opened.study), graphs)
