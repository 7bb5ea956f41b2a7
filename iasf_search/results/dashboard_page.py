"""The study's page in optuna-dashboard: write its note (:mod:`.study_note`) and plots (:mod:`.study_plots`) on the
study, where the dashboard shows them (its ``save_note`` and ``save_plotly_graph_object``).

The built-in plugin ``study_page`` (``plugins/study_page.py``) refreshes the page as a search goes;
``iasf-search dashboard`` refreshes it before serving a study no search is running.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import networkx as nx

from iasf_search.results.access import StoredStudy
from iasf_search.results.study_note import TOP, study_note
from iasf_search.results.study_plots import study_figures
from iasf_search.results.study_snapshot import take_snapshot


def optuna_dashboard_api() -> ModuleType:
    """The ``optuna_dashboard`` module, imported on first use on a separate thread: optuna-dashboard keeps the
    ImportErrors of its optional dependencies (Optuna's ``try_import``), whose tracebacks would otherwise hold the
    importing frames (a running trial, its study, the database connection) alive for the rest of the process."""
    if "optuna_dashboard" not in sys.modules:
        thread = threading.Thread(target=importlib.import_module, args=("optuna_dashboard",), daemon=True)
        thread.start()
        thread.join()
    import optuna_dashboard

    return optuna_dashboard


@dataclass
class StudyPage:
    """What a study's page shows, and what is kept from one refresh to the next (the parsed architectures)."""

    top: int = TOP
    """Architectures in the note's table and learning curves in colour."""
    note: bool = True
    plots: bool = True
    storage_url: str | None = None
    """The storage URL the note's "open this page" command names (passwords hidden); None: left out."""
    graphs: dict[int, nx.DiGraph] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], storage_url: str | None = None) -> StudyPage:
        """The page a space's ``study_page:`` section asks for (the plugin ``study_page``); a key it lacks (a study
        recorded before the section existed) takes the default."""
        return cls(top=settings.get("top", TOP), note=settings.get("note", True), plots=settings.get("plots", True),
                   storage_url=storage_url)

    def publish(self, opened: StoredStudy) -> float:
        """Read the study once and write its note and plots; returns the seconds it took."""
        start = time.perf_counter()
        api = optuna_dashboard_api()
        snap = take_snapshot(opened, self.graphs)
        if self.plots:
            for plot_id, figure in study_figures(snap, top=self.top).items():
                api.save_plotly_graph_object(opened.study, figure, graph_object_id=plot_id)
        if self.note:
            api.save_note(opened.study, study_note(snap, top=self.top, storage_url=self.storage_url))
        return time.perf_counter() - start
