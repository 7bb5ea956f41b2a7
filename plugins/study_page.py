"""The study's page in optuna-dashboard, kept up to date as a search goes: the study note and the NAS plots
(:mod:`iasf_search.results.dashboard_page`), written when a search starts, refreshed between trials and at its end.

Through the life-cycle hooks, like any plugin:

* ``iasf_study_start`` writes the page of the study as it is (a resumed study's at once) — in worker 0 only: with
  ``--workers N`` one process writes while the search goes on, so that two writers never interleave;
* ``iasf_trial_end`` refreshes it between trials, at most every ``refresh_seconds`` and never more often than keeps
  its own cost under ``max_share`` of the search's time (a refresh that took 0.5 s waits at least 0.5 / max_share s);
  it runs after a trial is recorded and before the next starts, so it never slows a trial's training;
* ``iasf_study_end`` writes the final page in whichever process stops when no trial is running any more, worker 0
  or another: the last one out sees every trial, and two processes that stop together read the same finished trials
  and write the same page (the note holds no clock). A trial left running by a lost worker keeps the final page
  from being written until ``iasf-search dashboard`` (which refreshes a study no search is running) or the next run.

The space's ``study_page:`` section switches each part (see its ``params``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from iasf_search import hookimpl
from iasf_search.components import SpaceSection
from iasf_search.params import Param
from iasf_search.space import SearchSpace

if TYPE_CHECKING:
    from iasf_search.plugin_manager import Components
    from iasf_search.results.dashboard_page import StudyPage


class StudyPageSettings(SpaceSection):
    name = "study_page"
    description = "the study note and NAS plots on the study's page in optuna-dashboard"
    params = {
        "note": Param(True, bool, help="write the study note (pick, best architectures, how trials ended, health)"),
        "plots": Param(True, bool, help="draw the NAS plots (accuracy against costs, what matters, learning curves, metrics)"),
        "top": Param(5, int, low=1, high=50, help="architectures in the note's table and learning curves drawn in colour"),
        "refresh_seconds": Param(60.0, float, low=0.0, help="refresh the page at most this often while the search goes on"),
        "max_share": Param(0.02, float, low=0.001, high=1.0,
                           help="refreshes take at most this share of the search's time (a slow refresh waits longer)"),
    }


@dataclass
class _Writer:
    """One study's page in this process: when it was last written and what that cost."""

    page: StudyPage
    components: Components
    worker: int
    refresh_seconds: float
    max_share: float
    last: float = 0.0
    cost: float = 0.0

    def write(self, study: optuna.Study) -> None:
        from iasf_search.results.access import stored_study

        try:
            self.cost = self.page.publish(stored_study(study, components=self.components))
        except Exception as exc:  # the page is a view of the study: drawing it never stops the search
            warnings.warn(f"the study page was not written ({type(exc).__name__}: {exc})", stacklevel=2)
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= max(self.refresh_seconds, self.cost / self.max_share)


_writers: dict[str, _Writer] = {}
"""This process's writers, by study name (a process may run several studies one after another, as tests do)."""


@hookimpl
def iasf_register_space_sections(registry) -> None:
    registry.register(StudyPageSettings())


@hookimpl
def iasf_study_start(study: optuna.Study, space: SearchSpace, components: Components, worker: int) -> None:
    from iasf_search.results.dashboard_page import StudyPage

    settings = space.sections["study_page"]
    _writers.pop(study.study_name, None)
    if not (settings["note"] or settings["plots"]):
        return
    page = StudyPage.from_settings(settings, _storage_url(study))
    writer = _writers[study.study_name] = _Writer(page, components, worker, settings["refresh_seconds"], settings["max_share"])
    if worker == 0:
        writer.write(study)


@hookimpl
def iasf_trial_end(study: optuna.Study, trial: FrozenTrial) -> None:
    writer = _writers.get(study.study_name)
    if writer is not None and writer.worker == 0 and writer.due():
        writer.write(study)


@hookimpl
def iasf_study_end(study: optuna.Study) -> None:
    writer = _writers.pop(study.study_name, None)
    if writer is None:
        return
    if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        writer.write(study)


def _storage_url(study: optuna.Study) -> str | None:
    """The URL of the study's database (an SQLAlchemy storage's, a relative SQLite path made absolute), for the note's
    "open this page" command; None for other storages."""
    from iasf_search.optuna_internals import storage_url
    from iasf_search.search.storage import absolute_url

    url = storage_url(study)
    return None if url is None else absolute_url(url)
