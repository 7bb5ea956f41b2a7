"""A self-contained offline HTML report of a study: ``index.html`` plus one PNG per figure.

The page embeds every figure as a ``data:image/png;base64`` URI (no external CSS, scripts or
fonts), so ``index.html`` alone can be mailed or archived; the same figures are written beside
it as PNG files. It holds:

* the study's name, storage (password hidden), objectives and trial counts by state;
* the best trial (or the Pareto set): objective values, validation / test accuracy, parameters,
  costs and summary;
* ``history.png`` — optimisation history (one file per objective: ``history-2.png``, ...);
* ``pareto.png`` — Pareto front, for two or three objectives;
* ``importances.png`` — hyperparameter importances (fANOVA, seeded);
* ``architecture.png`` — the best architecture's diagram;
* ``attention.png`` — its attention heat maps (``H = A / max A``, mean over 64 validation samples),
  recomputed from its checkpoint, else the heat-map file the search attached;
* ``metrics.png`` — a representation metric (``aux.*``) against validation accuracy across trials;
* the representation metrics of the best trials, and the trials that failed, with the reason.

A figure that cannot be drawn (too few trials, no checkpoint, no attention node...) is replaced by
a line saying why. Figures use matplotlib; optuna's plots go through pyplot, which is switched to
the non-interactive Agg backend unless pyplot is already in use or ``MPLBACKEND`` is set.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import optuna
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from iasf_search.errors import BadInput
from iasf_search.plugin_manager import Components
from iasf_search.results.artifacts import HEATMAPS, read_trial_file
from iasf_search.results.attention_maps import attention_maps
from iasf_search.results.export import rebuild_trial_model, study_components, trained_source
from iasf_search.results.figures import architecture_figure, heatmap_figure, node_labels, save
from iasf_search.results.records import ARCHITECTURE, record
from iasf_search.study import best_trials, safe_url, trial_architecture

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

HEATMAP_SAMPLES = 64
"""Validation samples the report's attention maps are averaged over."""
FIGURE_FILES = ("history.png", "pareto.png", "importances.png", "architecture.png", "attention.png", "metrics.png")
PREFERRED_METRIC = ("aux.cds", "cosine")
"""The representation metric plotted against validation accuracy when the trials carry it."""


@dataclass
class Figured:
    """A figure of the report (``png``), or the reason (``note``) why there is none."""

    title: str
    filename: str
    png: bytes | None = None
    caption: str = ""
    note: str = ""


def write_report(study: optuna.Study, out_dir: str | Path, *, store: ArtifactStore | None = None,
                 components: Components | None = None, storage_url: str | None = None) -> Path:
    """Write ``index.html`` and the figures' PNG files into ``out_dir``; returns the ``index.html`` path.

    :param store: the artifact store the search wrote to (checkpoints, heat maps); None: the
        heat maps are only what can be said without it.
    :param components: the plugins the study's space names (default: :func:`~iasf_search.results.export.study_components`).
    :param storage_url: shown on the page (password hidden); default: the study's RDB storage URL.
    :raises BadInput: ``out_dir`` is a file or cannot be created.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot create it: {exc.strerror}") from None
    if components is None:
        components = study_components(study)
    _use_agg()  # before optuna's plotting module imports pyplot
    url = storage_url or _storage_url(study)
    names = objective_names(study)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = best_trials(study)
    lead = _lead_trial(best)

    figures: list[Figured] = [*_history(study, names, complete)]
    if len(study.directions) > 1:
        figures.append(_pareto(study, names, complete))
    figures.append(_importances(study, complete))
    figures.append(_architecture(lead, components))
    figures.append(_heatmaps(study, lead, store, components))
    metrics_figure = _metrics_plot(complete, lead)

    for stale in [*FIGURE_FILES, *(p.name for p in out.glob("history-*.png"))]:
        (out / stale).unlink(missing_ok=True)  # only this report's names: a rerun leaves no figure of the last one
    for fig in [*figures, metrics_figure]:
        if fig.png is not None:
            (out / fig.filename).write_bytes(fig.png)

    page = _page(study, url, names, trials, best, lead, figures, metrics_figure)
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def objective_names(study: optuna.Study) -> list[str]:
    """The objectives' names the search gave the study (``study.metric_names``: ``val accuracy``,
    ``val loss`` or a cost's name), else ``objective 1``, ``objective 2``, ..."""
    names = study.metric_names
    if names is None or len(names) != len(study.directions):
        names = [f"objective {i + 1}" for i in range(len(study.directions))]
    return list(names)


def _storage_url(study: optuna.Study) -> str | None:
    storage = study._storage
    return getattr(getattr(storage, "_backend", storage), "url", None)


def _lead_trial(best: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The best trial, or of a Pareto set the one with the highest validation accuracy (lowest number on ties)."""
    if not best:
        return None
    return max(best, key=lambda t: (_number_or(t.user_attrs.get("val_accuracy"), -math.inf), -t.number))


def _number_or(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


# ---------------------------------------------------------------- figures


def _use_agg() -> None:
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


def _history(study: optuna.Study, names: list[str], complete: list[FrozenTrial]) -> list[Figured]:
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


def _pareto(study: optuna.Study, names: list[str], complete: list[FrozenTrial]) -> Figured:
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
    _use_agg()
    fig = _pareto(study, objective_names(study), complete)
    if fig.png is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fig.png)
    return path


def _importances(study: optuna.Study, complete: list[FrozenTrial]) -> Figured:
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


def _architecture(trial: FrozenTrial | None, components: Components) -> Figured:
    fig = Figured("Best architecture", "architecture.png")
    if trial is None:
        fig.note = "no trial completed yet"
        return fig
    if record(trial, ARCHITECTURE) is None:
        fig.note = f"trial #{trial.number} does not record its architecture"
        return fig
    graph = trial_architecture(trial)
    fig.png = save(architecture_figure(graph, node_labels(graph, components).__getitem__,
                                       title=f"trial {trial.number} · {trial.user_attrs.get('arch_hash', '')[:8]}"), "png")
    fig.caption = (f"trial #{trial.number}: {trial.user_attrs.get('summary', '')} — nodes top to bottom by depth, "
                   f"arrows numbered by input slot where a node reads several (architecture.png).")
    return fig


def _heatmaps(study: optuna.Study, trial: FrozenTrial | None, store: ArtifactStore | None,
              components: Components) -> Figured:
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
    stored = None
    if store is not None:
        try:
            stored = read_trial_file(study, source, store, HEATMAPS)
        except BadInput as exc:
            why += f"; {exc}"
    if stored is not None:
        fig.png = stored
        fig.caption = (f"trial #{source.number}'s {HEATMAPS} as the search attached it (not recomputed: {why}) "
                       f"(attention.png).")
    else:
        fig.note = f"no heat maps: {why}"
    return fig


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
        from iasf_search.space import parse_space

        space = parse_space(study.user_attrs["space"], components, file=f"study '{study.study_name}' space")
        data = components.datasets.get(space.dataset).load(space.dataset_options, space.split)
        samples = data.x_val[:HEATMAP_SAMPLES]
        maps = attention_maps(model, samples)
    except Exception as exc:
        return None, f"cannot load the study's validation data: {_reason(exc)}"
    if not maps:
        return None, f"trial #{trial.number}'s architecture has no attention node"
    graph = trial_architecture(trial)
    title = f"trial {trial.number}: attention A / max A, mean over {len(samples)} validation samples"
    return save(heatmap_figure(maps, node_labels(graph, components), title=title), "png"), ""


def representation_metrics(trial: FrozenTrial) -> dict[str, float]:
    """``{"aux.cds.cosine": value, ...}``: the trial's numeric ``aux.*`` measurements, flattened."""
    out = {}
    for key, value in sorted(trial.user_attrs.items()):
        if not key.startswith("aux."):
            continue
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for sub, v in items:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[key if sub is None else f"{key}.{sub}"] = float(v)
    return out


def _metrics_plot(complete: list[FrozenTrial], lead: FrozenTrial | None) -> Figured:
    fig = Figured("Representation metric against validation accuracy", "metrics.png")
    per_trial = {t.number: representation_metrics(t) for t in complete}
    seen = Counter(name for m in per_trial.values() for name in m)
    if not seen:
        fig.note = "no trial recorded representation metrics (the space has no auxiliary objectives)"
        return fig
    preferred = ".".join(PREFERRED_METRIC)
    name = preferred if preferred in seen else sorted(seen, key=lambda n: (-seen[n], n))[0]
    points = [(t.number, per_trial[t.number][name], t.user_attrs["val_accuracy"]) for t in complete
              if name in per_trial[t.number] and isinstance(t.user_attrs.get("val_accuracy"), (int, float))]
    if not points:
        fig.note = f"no completed trial recorded both {name} and a validation accuracy"
        return fig
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
    fig.png = save(figure, "png")
    fig.caption = f"{name} (measured after training) against validation accuracy, {len(points)} trials (metrics.png)."
    return fig


# ---------------------------------------------------------------- page

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; } .note { color: #8a5a00; } .caption { color: #555; font-size: 0.85em; }
code { font-size: 0.9em; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{_e(_fmt(c))}</td>' if n else f"<td>{_e(_fmt(c))}</td>"
                                    for c, n in zip(row, numeric, strict=True)) + "</tr>\n" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}</table>"


def _figure_html(fig: Figured, heading: bool = True) -> str:
    parts = [f"<h2>{_e(fig.title)}</h2>"] if heading else [f"<h3>{_e(fig.title)}</h3>"]
    if fig.png is not None:
        data = base64.b64encode(fig.png).decode("ascii")
        parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{_e(fig.title)}">'
                     f'<figcaption class="caption">{_e(fig.caption)}</figcaption></figure>')
    else:
        parts.append(f'<p class="note">{_e(fig.note)}</p>')
    return "\n".join(parts)


def _page(study: optuna.Study, url: str | None, names: list[str], trials: list[FrozenTrial], best: list[FrozenTrial],
          lead: FrozenTrial | None, figures: list[Figured], metrics_figure: Figured) -> str:
    space = study.user_attrs.get("space", {})
    data = study.user_attrs.get("data", {})
    counts = Counter(t.state.name for t in trials)
    directions = [d.name.lower() for d in study.directions]
    task = space.get("task", {})
    overview = [
        ("study", study.study_name),
        ("storage", safe_url(url) if url else "(not an RDB storage)"),
        ("objectives", ", ".join(f"{n} ({d})" for n, d in zip(names, directions, strict=True))),
        ("dataset", f"{task.get('dataset', '?')} {json.dumps(task.get('options', {}), sort_keys=True)}"
                    + (f"; samples {tuple(data['sample_shape'])}, {data.get('num_classes')} classes, "
                       f"train/val/test {data.get('train')}/{data.get('val')}/{data.get('test')}" if data else "")),
        ("trials", ", ".join(f"{counts[s.name]} {s.name.lower()}" for s in TrialState if counts[s.name])
         or "none"),
        ("generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
    ]
    body = [f"<h1>iasf-search report: {_e(study.study_name)}</h1>",
            "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in overview) + "</table>"]
    commands = study.user_attrs.get("commands", [])
    if commands:
        body.append("<p>Produced by: " + "; ".join(f"<code>{_e(c)}</code>" for c in commands) + "</p>")

    plural = "s" if len(best) != 1 else ""
    body.append("<h2>Best trial</h2>" if len(study.directions) == 1 else f"<h2>Pareto set ({len(best)} trial{plural})</h2>")
    body.append(_best_table(best, names) if best else '<p class="note">no trial completed yet</p>')
    if len(best) > 1 and lead is not None:
        body.append(f"<p>The figures below show trial #{lead.number}, the Pareto-optimal trial with the highest "
                    f"validation accuracy.</p>")

    for fig in figures:
        body.append(_figure_html(fig))

    body.append("<h2>Representation metrics</h2>")
    body.append(_metrics_table(best))
    body.append(_figure_html(metrics_figure, heading=False))

    body.append("<h2>Failed trials</h2>")
    body.append(_failures_table(trials))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>iasf-search report: {_e(study.study_name)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _best_table(best: list[FrozenTrial], names: list[str]) -> str:
    costs = sorted({k for t in best for k in t.user_attrs if k.startswith("cost.")
                    and not (k == "cost.params" and all(t.user_attrs[k] == t.user_attrs.get("params") for t in best))})
    # objectives that merely repeat a column (val accuracy, params...) are not shown twice
    shown = {"val accuracy": "val_accuracy", "val loss": "val_loss", "params": "params"}
    extra = [i for i, n in enumerate(names) if shown.get(n) is None and f"cost.{n}" not in costs]
    header = ["trial", *(names[i] for i in extra), "val accuracy", "val loss", "test accuracy", "parameters",
              *(c[len("cost."):] for c in costs), "epochs", "train s", "summary"]
    rows = []
    for t in best:
        a = t.user_attrs
        summary = a.get("summary", "")
        if "reused_from" in a:
            summary += f" (result reused from #{a['reused_from']})"
        rows.append([f"#{t.number}", *(t.values[i] for i in extra), a.get("val_accuracy"), a.get("val_loss"),
                     a.get("test_accuracy"), a.get("params"), *(a.get(c) for c in costs), a.get("epochs"),
                     a.get("train_seconds"), summary])
    numeric = [False, *[True] * (len(header) - 2), False]
    return _table(header, rows, numeric)


def _metrics_table(best: list[FrozenTrial]) -> str:
    rows = [[f"#{t.number}", name, value] for t in best for name, value in representation_metrics(t).items()]
    if not rows:
        return ('<p class="note">the best trials recorded no representation metrics (aux.*: the space\'s auxiliary '
                "objectives measure them after training)</p>")
    return ("<p>Measured by the auxiliary objectives on a validation batch after training.</p>\n"
            + _table(["trial", "metric", "value"], rows, [False, False, True]))


def _failures_table(trials: list[FrozenTrial]) -> str:
    failed = [t for t in trials if t.state == TrialState.FAIL or "failure_reason" in t.user_attrs]
    if not failed:
        return "<p>none</p>"
    rows = [[f"#{t.number}", t.state.name.lower(), t.user_attrs.get("failed_plugin", ""),
             t.user_attrs.get("failure_reason", "(no reason recorded)")] for t in failed]
    return _table(["trial", "state", "plugin", "reason"], rows)
