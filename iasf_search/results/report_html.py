"""The report's page (:mod:`.report`): one self-contained HTML document (figures embedded as
``data:`` URIs, no external CSS, scripts or fonts) with the study's overview and tables."""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from iasf_search.results.access import representation_metrics
from iasf_search.results.analysis import MIN_TRIALS, RESAMPLES, Analysis
from iasf_search.results.baselines import LABELS, compared_trial, comparison, recorded_baselines
from iasf_search.results.records import (
    COST_PREFIX,
    EPOCHS,
    FAILED_PLUGIN,
    FAILURE_REASON,
    PARAMS,
    REUSED_FROM,
    SUMMARY,
    TEST_ACCURACY,
    TRAIN_SECONDS,
    VAL_ACCURACY,
    VAL_LOSS,
    study_commands,
    study_data,
    study_space,
)
from iasf_search.results.report_figures import Figured
from iasf_search.search.storage import safe_url

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


def figure_html(fig: Figured, heading: bool = True) -> str:
    """A figure as an embedded ``data:`` PNG with its caption, or its note; under an ``h2`` (else ``h3``) title."""
    parts = [f"<h2>{_e(fig.title)}</h2>"] if heading else [f"<h3>{_e(fig.title)}</h3>"]
    if fig.png is not None:
        data = base64.b64encode(fig.png).decode("ascii")
        parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{_e(fig.title)}">'
                     f'<figcaption class="caption">{_e(fig.caption)}</figcaption></figure>')
    else:
        parts.append(f'<p class="note">{_e(fig.note)}</p>')
    return "\n".join(parts)


def report_page(study: optuna.Study, url: str | None, names: list[str], trials: list[FrozenTrial], best: list[FrozenTrial],
                lead: FrozenTrial | None, figures: list[Figured], metrics_figure: Figured, analysis: Analysis,
                correlations_figure: Figured) -> str:
    """The whole ``index.html``: overview, best trial or Pareto set, figures, representation metrics, what predicts
    accuracy, failures."""
    body = [f"<h1>iasf-search report: {_e(study.study_name)}</h1>",
            "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in _overview(study, url, names, trials))
            + "</table>"]
    commands = study_commands(study)
    if commands:
        body.append("<p>Produced by: " + "; ".join(f"<code>{_e(c)}</code>" for c in commands) + "</p>")
    body += _best_section(study, names, best, lead)
    body += _baselines_section(study, best)

    for fig in figures:
        body.append(figure_html(fig))

    body.append("<h2>Representation metrics</h2>")
    body.append(_metrics_table(best))
    body.append(figure_html(metrics_figure, heading=False))

    body.append("<h2>What predicts accuracy</h2>")
    body += _correlations_section(analysis, correlations_figure)

    body.append("<h2>Failed trials</h2>")
    body.append(_failures_table(trials))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>iasf-search report: {_e(study.study_name)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _overview(study: optuna.Study, url: str | None, names: list[str], trials: list[FrozenTrial]) -> list[tuple[str, str]]:
    """The overview table's rows: study, storage (password hidden), objectives, dataset, trials by state, date."""
    space = study_space(study)
    data = study_data(study)
    counts = Counter(t.state.name for t in trials)
    directions = [d.name.lower() for d in study.directions]
    task = space.get("task", {})
    return [
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


def _best_section(study: optuna.Study, names: list[str], best: list[FrozenTrial], lead: FrozenTrial | None) -> list[str]:
    """The best trial's (or the Pareto set's) heading and table, and which trial the figures show."""
    plural = "s" if len(best) != 1 else ""
    section = ["<h2>Best trial</h2>" if len(study.directions) == 1 else f"<h2>Pareto set ({len(best)} trial{plural})</h2>",
               _best_table(best, names) if best else '<p class="note">no trial completed yet</p>']
    if len(best) > 1 and lead is not None:
        section.append(f"<p>The figures below show trial #{lead.number}, the Pareto-optimal trial with the highest "
                       f"validation accuracy.</p>")
    return section


def _baselines_section(study: optuna.Study, best: list[FrozenTrial]) -> list[str]:
    """The classic baselines fitted on the study's splits (:mod:`.baselines`), the trial they are compared with,
    and the verdict on test accuracy; a note when the study has none recorded."""
    section = ["<h2>Baselines</h2>"]
    baselines = recorded_baselines(study)
    if not baselines:
        section.append('<p class="note">none recorded (studies searched before baselines were fitted: '
                       "<code>iasf-search baseline --space PATH</code> fits and records them)</p>")
        return section
    rows: list[list[Any]] = [[LABELS.get(n, n), m.get("val_accuracy"), m.get("test_accuracy"), m.get("seconds")]
                             for n, m in baselines.items()]
    trial = compared_trial(study, best)
    if trial is not None:
        rows.append([f"trial #{trial.number}", trial.user_attrs.get(VAL_ACCURACY), trial.user_attrs.get(TEST_ACCURACY),
                     trial.user_attrs.get(TRAIN_SECONDS)])
    section.append("<p>Fitted on the training split only, scored on the validation split (the one the search selects "
                   "on) and the test split; compared with the search on test accuracy. Seconds: fitting and "
                   "predicting (a trial: training).</p>")
    section.append(_table(["model", "val accuracy", "test accuracy", "seconds"], rows, [False, True, True, True]))
    section.append(f"<p>{_e(comparison(study, best))}</p>")
    return section


def _best_table(best: list[FrozenTrial], names: list[str]) -> str:
    costs = sorted({k for t in best for k in t.user_attrs if k.startswith(COST_PREFIX)
                    and not (k == COST_PREFIX + PARAMS and all(t.user_attrs[k] == t.user_attrs.get(PARAMS) for t in best))})
    # objectives that merely repeat a column (val accuracy, params...) are not shown twice
    shown = {"val accuracy": VAL_ACCURACY, "val loss": VAL_LOSS, "params": PARAMS}
    extra = [i for i, n in enumerate(names) if shown.get(n) is None and COST_PREFIX + n not in costs]
    header = ["trial", *(names[i] for i in extra), "val accuracy", "val loss", "test accuracy", "parameters",
              *(c[len(COST_PREFIX):] for c in costs), "epochs", "train s", "summary"]
    rows = []
    for t in best:
        a = t.user_attrs
        summary = a.get(SUMMARY, "")
        if REUSED_FROM in a:
            summary += f" (result reused from #{a[REUSED_FROM]})"
        rows.append([f"#{t.number}", *(t.values[i] for i in extra), a.get(VAL_ACCURACY), a.get(VAL_LOSS),
                     a.get(TEST_ACCURACY), a.get(PARAMS), *(a.get(c) for c in costs), a.get(EPOCHS),
                     a.get(TRAIN_SECONDS), summary])
    numeric = [False, *[True] * (len(header) - 2), False]
    return _table(header, rows, numeric)


def _metrics_table(best: list[FrozenTrial]) -> str:
    rows = [[f"#{t.number}", name, value] for t in best for name, value in representation_metrics(t).items()]
    if not rows:
        return ('<p class="note">the best trials recorded no representation metrics (aux.*: the space\'s auxiliary '
                "objectives measure them after training)</p>")
    return ("<p>Measured by the auxiliary objectives on a validation batch after training.</p>\n"
            + _table(["trial", "metric", "value"], rows, [False, False, True]))


def _correlations_section(analysis: Analysis, figure: Figured) -> list[str]:
    """The correlations table, the columns left out and why, and the figure; one note when the study has too few trials."""
    if analysis.shortfall:
        return [f'<p class="note">{_e(analysis.shortfall)}</p>']
    section = [f"<p>Spearman rank correlation of each recorded measurement (<code>metric.*</code>, <code>cost.*</code>, "
               f"<code>proxy.*</code>, <code>params</code>, <code>aux.*</code>) with validation accuracy over the complete "
               f"trials that recorded both ({analysis.trials} have a validation accuracy); 95% interval: percentile "
               f"bootstrap over {RESAMPLES} resamples of those trials. A column needs {MIN_TRIALS} trials.</p>"]
    if analysis.rows:
        rows = [[r.name, f"{r.rho:+.3f}", f"[{r.low:+.3f}, {r.high:+.3f}]", r.n] for r in analysis.rows]
        section.append(_table(["metric", "rho", "95% interval", "n"], rows, [False, True, True, True]))
    if analysis.skipped:
        section.append("<p>Not correlated: " + ", ".join(f"<code>{_e(s.name)}</code> ({_e(s.reason)})" for s in analysis.skipped)
                       + "</p>")
    section.append(figure_html(figure, heading=False))
    return section


def _failures_table(trials: list[FrozenTrial]) -> str:
    failed = [t for t in trials if t.state == TrialState.FAIL or FAILURE_REASON in t.user_attrs]
    if not failed:
        return "<p>none</p>"
    rows = [[f"#{t.number}", t.state.name.lower(), t.user_attrs.get(FAILED_PLUGIN, ""),
             t.user_attrs.get(FAILURE_REASON, "(no reason recorded)")] for t in failed]
    return _table(["trial", "state", "plugin", "reason"], rows)
