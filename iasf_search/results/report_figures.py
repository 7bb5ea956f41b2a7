"""The figures of a study's report (:mod:`.report`), each a :class:`Figured`: a PNG, or the line
saying why there is none; and the Pareto plot a search writes beside its study.

Figures use matplotlib; optuna's plots go through pyplot, which :func:`use_agg` switches to the
non-interactive Agg backend unless pyplot is already in use or ``MPLBACKEND`` is set.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import optuna
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from iasf_search.errors import BadInput
from iasf_search.files import write_atomically
from iasf_search.plugin_manager import Components
from iasf_search.results.access import (
    objective_names,
    rebuild_trial_model,
    representation_metrics,
    stored_study,
    trained_source,
    trial_architecture,
)
from iasf_search.results.analysis import Analysis, correlations_png
from iasf_search.results.artifacts import HEATMAPS, read_trial_file
from iasf_search.results.attention_maps import attention_maps
from iasf_search.results.figures import architecture_figure, heatmap_figure, node_labels, save
from iasf_search.results.records import ARCH_HASH, ARCHITECTURE, SUMMARY, VAL_ACCURACY, record
from iasf_search.search.setup import load_task

if TYPE_CHECKING:
    from iasf_search.optuna_internals import ArtifactStore

HEATMAP_SAMPLES = 64
"""Validation samples the report's attention maps are averaged over."""
PREFERRED_METRIC = ("aux.cds", "cosine")
"""The representation metric plotted against validation accuracy when the trials carry it."""
_SEARCH_WARNED = r"dataset '.*': \d+ of the \d+ samples of its own test split also appear"
"""What :func:`~iasf_search.data.check_task` warns of a published test split; the search said it already."""


@dataclass
class Figured:
    """A figure of the report (``png``), or the reason (``note``) why there is none."""

    title: str
    filename: str
    png: bytes | None = None
    caption: str = ""
    note: str = ""


def use_agg() -> None:
    """Agg for pyplot (optuna's plots), unless the caller already chose a backend or uses pyplot."""
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")


def _optuna_plot(draw: Callable[[], Any]) -> bytes:
    """Run one of ``optuna.visualization.matplotlib``'s functions and return its figure as PNG (closed after)."""
    import matplotlib.pyplot as plt

    # optuna's plots switch pyplot to the ggplot style globally; rc_context puts every setting back after
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = draw()
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        try:
            fig.set_size_inches(7.5, 4.2)
            return save(fig, "png")
        finally:
            plt.close(fig)


def _reason(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def history_figures(study: optuna.Study, names: list[str], complete: list[FrozenTrial]) -> list[Figured]:
    """One optimisation-history figure per objective (``history.png``, ``history-2.png``, ...)."""
    from optuna.visualization.matplotlib import plot_optimization_history

    out = []
    for i, name in enumerate(names):
        filename = "history.png" if i == 0 else f"history-{i + 1}.png"
        fig = Figured(f"Optimisation history: {name}" if len(names) > 1 else "Optimisation history", filename,
                      caption=f"{name} of every completed trial in order, and the best so far ({filename}).")
        if not complete:
            fig.note = "no trial completed yet"
        else:
            target = None if len(names) == 1 else (lambda t, i=i: t.values[i])
            try:
                fig.png = _optuna_plot(lambda target=target, name=name: plot_optimization_history(
                    study, target=target, target_name=name))
            except Exception as exc:
                fig.note = f"cannot draw it: {_reason(exc)}"
        out.append(fig)
    return out


def pareto_figure(study: optuna.Study, names: list[str], complete: list[FrozenTrial]) -> Figured:
    """The Pareto front of two or three objectives (``pareto.png``)."""
    from optuna.visualization.matplotlib import plot_pareto_front

    fig = Figured("Pareto front", "pareto.png",
                  caption="every completed trial; the Pareto-optimal ones highlighted (pareto.png).")
    if not complete:
        fig.note = "no trial completed yet"
    elif len(names) > 3:
        fig.note = f"the study has {len(names)} objectives; the Pareto plot draws two or three"
    else:
        try:
            fig.png = _optuna_plot(lambda: plot_pareto_front(study, target_names=names))
        except Exception as exc:
            fig.note = f"cannot draw it: {_reason(exc)}"
    return fig


def write_pareto_plot(study: optuna.Study, path: str | Path) -> Path | None:
    """Draw the Pareto front of a study with two or three objectives (every completed trial, the
    Pareto-optimal ones highlighted) to ``path`` (PNG). None, writing nothing, for one objective,
    more than three, or no completed trial."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not 2 <= len(study.directions) <= 3 or not complete:
        return None
    use_agg()
    fig = pareto_figure(study, objective_names(study), complete)
    if fig.png is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, fig.png)
    return path


def importances_figure(study: optuna.Study, complete: list[FrozenTrial]) -> Figured:
    """fANOVA parameter importances, seeded (``importances.png``)."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_param_importances

    fig = Figured("Parameter importances", "importances.png",
                  caption="fANOVA importance of each parameter sampled by every completed trial "
                          "(conditional parameters, present only in some trials, are left out) (importances.png).")
    if len(complete) < 2:
        fig.note = f"needs at least 2 completed trials; the study has {len(complete)}"
        return fig
    try:
        fig.png = _optuna_plot(lambda: plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0)))
    except Exception as exc:
        fig.note = f"cannot compute them: {_reason(exc)}"
    return fig


def architecture_diagram(trial: FrozenTrial | None, components: Components) -> Figured:
    """The lead trial's architecture diagram (``architecture.png``)."""
    fig = Figured("Best architecture", "architecture.png")
    if trial is None:
        fig.note = "no trial completed yet"
        return fig
    if record(trial, ARCHITECTURE) is None:
        fig.note = f"trial #{trial.number} does not record its architecture"
        return fig
    graph = trial_architecture(trial)
    fig.png = save(architecture_figure(graph, node_labels(graph, components).__getitem__,
                                       title=f"trial {trial.number} · {trial.user_attrs.get(ARCH_HASH, '')[:8]}"), "png")
    fig.caption = (f"trial #{trial.number}: {trial.user_attrs.get(SUMMARY, '')} — nodes top to bottom by depth, "
                   f"arrows numbered by input slot where a node reads several (architecture.png).")
    return fig


def heatmaps_figure(study: optuna.Study, trial: FrozenTrial | None, store: ArtifactStore | None,
                    components: Components) -> Figured:
    """The lead trial's attention heat maps, recomputed from its checkpoint, else the heat-map file the
    search attached (``attention.png``)."""
    fig = Figured("Attention heat maps", "attention.png")
    if trial is None:
        fig.note = "no trial completed yet"
        return fig
    png, why = _computed_heatmaps(study, trial, store, components)
    if png is not None:
        fig.png = png
        fig.caption = (f"trial #{trial.number}: each attention node's map H = A / max A, averaged over the heads and "
                       f"the first {HEATMAP_SAMPLES} validation samples; rows are queries, columns keys (attention.png).")
        return fig
    source = trained_source(study, trial)
    stored, why = _stored_heatmaps(study, source, store, why)
    if stored is not None:
        fig.png = stored
        fig.caption = (f"trial #{source.number}'s {HEATMAPS} as the search attached it (not recomputed: {why}) "
                       f"(attention.png).")
    else:
        fig.note = f"no heat maps: {why}"
    return fig


def _stored_heatmaps(study: optuna.Study, source: FrozenTrial, store: ArtifactStore | None, why: str) -> tuple[bytes | None, str]:
    """The heat-map file the search attached to ``source``, or None; ``why`` extended by any error reading it."""
    stored = None
    if store is not None:
        try:
            stored = read_trial_file(study, source, store, HEATMAPS)
        except BadInput as exc:
            why += f"; {exc}"
    return stored, why


def _computed_heatmaps(study: optuna.Study, trial: FrozenTrial, store: ArtifactStore | None,
                       components: Components) -> tuple[bytes | None, str]:
    """The heat-map PNG recomputed from the trial's checkpoint, or None and why not."""
    if store is None:
        return None, "no artifact store (pass --artifacts DIR, the folder the search wrote)"
    try:
        model = rebuild_trial_model(study, trial, store, components)
    except Exception as exc:
        return None, f"cannot rebuild trial #{trial.number}'s model: {_reason(exc)}"
    if model is None:
        return None, (f"trial #{trial.number} kept no checkpoint (the search keeps one for trials that were best "
                      f"when they finished; artifacts.checkpoints: all keeps every one)")
    try:
        session = stored_study(study, components=components).session  # the study's space, parsed against these plugins
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SEARCH_WARNED)
            data = load_task(session)  # the very samples and split the search validated on
        samples = data.x_val[:HEATMAP_SAMPLES]
        maps = attention_maps(model, samples)
    except Exception as exc:
        return None, f"cannot load the study's validation data: {_reason(exc)}"
    if not maps:
        return None, f"trial #{trial.number}'s architecture has no attention node"
    graph = trial_architecture(trial)
    title = f"trial {trial.number}: attention A / max A, mean over {len(samples)} validation samples"
    return save(heatmap_figure(maps, node_labels(graph, components), title=title), "png"), ""


def metrics_figure(complete: list[FrozenTrial], lead: FrozenTrial | None) -> Figured:
    """A representation metric (``aux.cds.cosine`` when recorded, else the most common) against validation
    accuracy across the completed trials (``metrics.png``)."""
    fig = Figured("Representation metric against validation accuracy", "metrics.png")
    per_trial = {t.number: representation_metrics(t) for t in complete}
    seen = Counter(name for m in per_trial.values() for name in m)
    if not seen:
        fig.note = "no trial recorded representation metrics (the space records no metrics and has no auxiliary objectives)"
        return fig
    preferred = ".".join(PREFERRED_METRIC)
    name = preferred if preferred in seen else sorted(seen, key=lambda n: (-seen[n], n))[0]
    points = [(t.number, per_trial[t.number][name], t.user_attrs[VAL_ACCURACY]) for t in complete
              if name in per_trial[t.number] and isinstance(t.user_attrs.get(VAL_ACCURACY), (int, float))]
    if not points:
        fig.note = f"no completed trial recorded both {name} and a validation accuracy"
        return fig
    fig.png = save(_metric_scatter(name, points, lead), "png")
    fig.caption = f"{name} (measured after training) against validation accuracy, {len(points)} trials (metrics.png)."
    return fig


def _metric_scatter(name: str, points: list[tuple[int, float, float]], lead: FrozenTrial | None) -> Figure:
    """``(trial number, metric, validation accuracy)`` points, each labelled with its number, the lead trial starred."""
    figure = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = figure.add_subplot()
    ax.scatter([p[1] for p in points], [p[2] for p in points], color="#4e79a7", s=22, label="trial")
    if lead is not None and any(p[0] == lead.number for p in points):
        x, y = next((p[1], p[2]) for p in points if p[0] == lead.number)
        ax.scatter([x], [y], color="#e15759", s=60, marker="*", label=f"best #{lead.number}")
    for number, x, y in points:
        ax.annotate(str(number), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6, color="#555555")
    ax.set_xlabel(name, fontsize=8)
    ax.set_ylabel("validation accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return figure


def correlations_figured(analysis: Analysis) -> Figured:
    """Each measurement's rank correlation with validation accuracy, with its 95% interval (``correlations.png``);
    a note when the study has too few trials or no measurement to correlate."""
    fig = Figured("Rank correlation with validation accuracy", "correlations.png")
    if analysis.shortfall:
        fig.note = analysis.shortfall
    elif not analysis.rows:
        fig.note = "no recorded measurement varies over enough trials"
    else:
        fig.png = correlations_png(analysis)
        fig.caption = ("Spearman rho of each measurement with validation accuracy over the complete trials that recorded "
                       "both; error bars: bootstrap 95% interval (correlations.png).")
    return fig
