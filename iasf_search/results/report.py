"""A self-contained offline HTML report of a study: ``index.html`` plus one PNG per figure.

The page embeds every figure as a ``data:image/png;base64`` URI (no external CSS, scripts or
fonts), so ``index.html`` alone can be mailed or archived; the same figures are written beside
it as PNG files. It holds:

* the study's name, storage (password hidden), objectives and trial counts by state;
* the best trial (or the Pareto set): objective values, validation / test accuracy, parameters,
  costs and summary;
* the classic baselines fitted on the study's splits (1-NN, logistic regression) beside it, and
  whether it beats them on test accuracy;
* ``history.png`` — optimisation history (one file per objective: ``history-2.png``, ...);
* ``pareto.png`` — Pareto front, for two or three objectives;
* ``importances.png`` — hyperparameter importances (fANOVA, seeded);
* ``architecture.png`` — the best architecture's diagram;
* ``attention.png`` — its attention heat maps (``H = A / max A``, mean over 64 validation samples),
  recomputed from its checkpoint, else the heat-map file the search attached;
* ``metrics.png`` — a representation metric (``aux.*``, ``metric.*``) against validation accuracy across trials;
* "What predicts accuracy": each recorded measurement's Spearman rank correlation with validation
  accuracy and its bootstrap 95% interval (:mod:`.analysis`), as a table and ``correlations.png``;
* the representation metrics of the best trials, and the trials that failed, with the reason.

A figure that cannot be drawn (too few trials, no checkpoint, no attention node...) is replaced by
a line saying why. This module chooses what the report shows and writes its files; the figures are
drawn by :mod:`.report_figures`, the page by :mod:`.report_html`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from iasf_search import optuna_internals
from iasf_search.files import write_atomically
from iasf_search.plugin_manager import Components
from iasf_search.results.access import best_trials, lead_trial, objective_names, stored_study
from iasf_search.results.analysis import analyze
from iasf_search.results.folders import output_folder
from iasf_search.results.report_figures import (
    Figured,
    architecture_diagram,
    correlations_figured,
    heatmaps_figure,
    history_figures,
    importances_figure,
    metrics_figure,
    pareto_figure,
    use_agg,
    write_pareto_plot,
)
from iasf_search.results.report_html import report_page

if TYPE_CHECKING:
    from iasf_search.optuna_internals import ArtifactStore

__all__ = ["FIGURE_FILES", "write_pareto_plot", "write_report"]

FIGURE_FILES = ("history.png", "pareto.png", "importances.png", "architecture.png", "attention.png", "metrics.png",
                "correlations.png")
"""The figure files a report writes (``history-2.png``, ... besides, one per further objective)."""


def write_report(study: optuna.Study, out_dir: str | Path, *, store: ArtifactStore | None = None,
                 components: Components | None = None, storage_url: str | None = None) -> Path:
    """Write ``index.html`` and the figures' PNG files into ``out_dir``; returns the ``index.html`` path.

    :param store: the artifact store the search wrote to (checkpoints, heat maps); None: the
        heat maps are only what can be said without it.
    :param components: the plugins the study's space names, already loaded (default: loaded here, as
        :attr:`~iasf_search.results.access.StoredStudy.components` of :func:`~iasf_search.results.access.stored_study`).
    :param storage_url: shown on the page (password hidden); default: the study's RDB storage URL.
    :raises BadInput: ``out_dir`` is a file or cannot be created.
    """
    out = output_folder(out_dir)
    components = stored_study(study, components=components).components  # loaded before anything is drawn
    use_agg()  # before optuna's plotting module imports pyplot
    url = storage_url or optuna_internals.storage_url(study)
    names = objective_names(study)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = best_trials(study)
    lead = lead_trial(best)

    figures = _figures(study, names, complete, lead, store, components)
    metrics = metrics_figure(complete, lead)
    analysis = analyze(study)
    correlations = correlations_figured(analysis)
    _write_figure_files(out, [*figures, metrics, correlations])

    page = report_page(study, url, names, trials, best, lead, figures, metrics, analysis, correlations)
    index = out / "index.html"
    write_atomically(index, page)
    return index


def _figures(study: optuna.Study, names: list[str], complete: list[FrozenTrial], lead: FrozenTrial | None,
             store: ArtifactStore | None, components: Components) -> list[Figured]:
    """The report's figures in page order (the representation-metric and correlation plots aside: each goes with its table)."""
    figures: list[Figured] = [*history_figures(study, names, complete)]
    if len(study.directions) > 1:
        figures.append(pareto_figure(study, names, complete))
    figures.append(importances_figure(study, complete))
    figures.append(architecture_diagram(lead, components))
    figures.append(heatmaps_figure(study, lead, store, components))
    return figures


def _write_figure_files(out: Path, figures: list[Figured]) -> None:
    """Each drawn figure's PNG into ``out``, after removing those a previous report left there."""
    for stale in [*FIGURE_FILES, *(p.name for p in out.glob("history-*.png"))]:
        (out / stale).unlink(missing_ok=True)  # only this report's names: a rerun leaves no figure of the last one
    for fig in figures:
        if fig.png is not None:
            write_atomically(out / fig.filename, fig.png)
