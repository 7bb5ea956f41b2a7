"""The plots on the study's optuna-dashboard page (plotly figures, :func:`study_figures`): validation accuracy
against each recorded cost with the Pareto set ringed, what matters (the importance of the architecture features
of :mod:`iasf_search.results.features`, and each op kind's win rate), the best trials' learning curves against the
pruner's rungs, and the representation metrics against accuracy.

Every figure is drawn from one :class:`~iasf_search.results.study_snapshot.StudySnapshot`; numbers are rounded to
4 significant digits and the trials outside the best are drawn as one grey trace, so that a figure's size grows
slowly with the study (``benchmarks/study_page_refresh.py`` measures it on 1,000 trials).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from iasf_search.results.access import finite_number, objective_names, representation_metrics
from iasf_search.results.features import IMPORTANCE_METHOD, MIN_TRIALS, TOP_SHARE, dominant_op, feature_importance, op_win_rates
from iasf_search.results.figures import PALETTE
from iasf_search.results.records import COST_PREFIX, PARAMS, PRUNED_AT_EPOCH, SUMMARY, VAL_ACCURACY, epoch_values
from iasf_search.results.study_snapshot import StudySnapshot

PLOT_PREFIX = "iasf-"
"""Every plot id this module gives starts with it (``iasf-accuracy-vs-params``, ``iasf-what-matters``, ...)."""
TOP = 5
"""Learning curves drawn in colour, by default."""
FEATURES_SHOWN = 15
"""The most important features the importance plot lists."""
METRICS_SHOWN = 3
"""Representation metrics plotted, at most (the most often recorded): one row, as high as the dashboard's plot card."""
GREY = "#bbbbbb"
_GRID = {"gridcolor": "#ebebeb", "zerolinecolor": "#ebebeb"}
TEMPLATE = go.layout.Template(layout={"plot_bgcolor": "white", "paper_bgcolor": "white", "font": {"color": "#2a3f5f"},
                                      "xaxis": _GRID, "yaxis": _GRID})
"""A light look, stored with each figure: plotly's own ``plotly_white`` is about 6 KB per figure and 20 times slower to apply."""
COST_LABELS = {"params": "parameters", "flops": "FLOPs per sample", "latency_ms": "latency (ms)", "peak_memory_mb": "peak memory (MB)"}
TITLES = {
    "what-matters": "What matters for accuracy: feature importance",
    "op-win-rates": "Op win rates: share in the top quarter",
    "learning-curves": "Learning curves of the best, pruner's rungs dashed",
    "metrics": "Representation metrics against accuracy",
}
"""The titles of the plots with fixed ids (``iasf-<key>``), short enough for the dashboard's half-width plot cards; the
cost plots are titled "Accuracy against <cost> (Pareto set ringed)"."""


def study_figures(snap: StudySnapshot, *, top: int = TOP) -> dict[str, go.Figure]:
    """``{plot id: figure}``: one accuracy-against-cost plot per recorded cost, then what matters, the op win rates,
    the learning curves, and the representation metrics when any trial recorded them."""
    figures = {f"{PLOT_PREFIX}accuracy-vs-{cost.replace('_', '-')}": accuracy_against_cost(snap, cost) for cost in recorded_costs(snap)}
    figures[PLOT_PREFIX + "what-matters"] = what_matters(snap)
    figures[PLOT_PREFIX + "op-win-rates"] = win_rates(snap)
    figures[PLOT_PREFIX + "learning-curves"] = learning_curves(snap, top)
    if any(representation_metrics(t) for t in snap.complete):
        figures[PLOT_PREFIX + "metrics"] = metrics_against_accuracy(snap)
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


def _layout(fig: go.Figure, title: str, x: str, y: str, **layout) -> go.Figure:
    fig.update_layout(title={"text": title}, xaxis_title=x, yaxis_title=y, template=TEMPLATE,
                      **{"height": 420, "margin": {"t": 60, "l": 60, "r": 20, "b": 50}, **layout})
    return fig


def _empty(title: str, why: str) -> go.Figure:
    """A titled figure that says why there is nothing to draw yet."""
    fig = _layout(go.Figure(), title, "", "")
    fig.add_annotation(text=why, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def recorded_costs(snap: StudySnapshot) -> list[str]:
    """The costs some complete trial recorded (``cost.<name>``), in name order; ``params`` when none is (every trial
    records its parameter count)."""
    costs = sorted({k[len(COST_PREFIX):] for t in snap.complete for k in t.user_attrs if k.startswith(COST_PREFIX)})
    return costs or [PARAMS]


def _cost(t: FrozenTrial, cost: str) -> float | None:
    return finite_number(t.user_attrs.get(COST_PREFIX + cost, t.user_attrs.get(PARAMS) if cost == PARAMS else None))


def pareto_front(points: Sequence[tuple[int, float, float]]) -> list[int]:
    """The numbers of the ``(number, cost, accuracy)`` points no other point beats (cost as low or lower and accuracy
    as high or higher, one of them strictly), cheapest first."""
    front, best = [], -math.inf
    for number, _, accuracy in sorted(points, key=lambda p: (p[1], -p[2], p[0])):
        if accuracy > best:
            front.append(number)
            best = accuracy
    return front


def accuracy_against_cost(snap: StudySnapshot, cost: str) -> go.Figure:
    """Validation accuracy against ``cost`` over the complete trials, one colour per dominant op kind, the Pareto
    set (cheaper and at least as accurate) ringed and joined; hover: trial number and architecture."""
    label = COST_LABELS.get(cost, cost)
    title = f"Accuracy against {label} (Pareto set ringed)"
    rows = [(t, _cost(t, cost), finite_number(t.user_attrs.get(VAL_ACCURACY))) for t in snap.complete]
    rows = [(t, c, a) for t, c, a in rows if c is not None and a is not None]
    if not rows:
        return _empty(title, f"no complete trial recorded {label} and a validation accuracy yet")
    fig = go.Figure()
    families = sorted({dominant_op(snap.graphs[t.number]) for t, _, _ in rows})
    for i, family in enumerate(families):
        mine = [(t, c, a) for t, c, a in rows if dominant_op(snap.graphs[t.number]) == family]
        fig.add_trace(go.Scatter(
            x=[_round(c) for _, c, _ in mine], y=[_round(a) for _, _, a in mine], mode="markers", name=f"mostly {family}",
            marker={"color": PALETTE[i % len(PALETTE)], "size": 7, "opacity": 0.8},
            customdata=[[t.number, t.user_attrs.get(SUMMARY, "")] for t, _, _ in mine],
            hovertemplate="#%{customdata[0]}: %{customdata[1]}<br>" + label + " %{x}<br>validation accuracy %{y}<extra></extra>"))
    front = pareto_front([(t.number, c, a) for t, c, a in rows])
    by_number = {t.number: (c, a) for t, c, a in rows}
    fig.add_trace(go.Scatter(
        x=[_round(by_number[n][0]) for n in front], y=[_round(by_number[n][1]) for n in front], mode="lines+markers",
        name="Pareto set", line={"color": "#333333", "width": 1, "shape": "hv"},
        marker={"symbol": "circle-open", "size": 13, "color": "#333333", "line": {"width": 2}}, text=[f"#{n}" for n in front],
        hovertemplate="Pareto set %{text}<extra></extra>"))
    spread = [c for _, c, _ in rows if c > 0]
    log = bool(spread) and len(spread) == len(rows) and max(spread) / min(spread) > 20
    return _layout(fig, title, label, "validation accuracy", xaxis_type="log" if log else "linear")


def what_matters(snap: StudySnapshot) -> go.Figure:
    """The features' importance shares (:func:`~iasf_search.results.features.feature_importance`), most important on top."""
    title = TITLES["what-matters"]
    ranked = feature_importance(snap.table)[:FEATURES_SHOWN]
    if not ranked:
        return _empty(title, f"needs {MIN_TRIALS} complete trials whose features and accuracies vary "
                             f"({len(snap.table.rows)} complete so far)")
    fig = go.Figure(go.Bar(x=[_round(s) for _, s in reversed(ranked)], y=[n for n, _ in reversed(ranked)], orientation="h",
                           marker={"color": PALETTE[0]}, hovertemplate="%{y}: %{x:.1%} of the importance<extra></extra>"))
    fig = _layout(fig, title, f"share of importance over {len(snap.table.rows)} complete trials", "",
                  margin={"t": 60, "l": 130, "r": 20, "b": 50})  # room for the features' names
    fig.add_annotation(text=IMPORTANCE_METHOD, showarrow=False, x=1, y=0, xref="paper", yref="paper", xanchor="right",
                       yanchor="bottom", font={"size": 9, "color": "#666666"})
    fig.update_xaxes(tickformat=".0%")
    return fig


def win_rates(snap: StudySnapshot) -> go.Figure:
    """Per op kind, the share of the complete trials using it that reach the top quarter by validation accuracy."""
    title = TITLES["op-win-rates"]
    rates = op_win_rates(snap.table)
    if not rates:
        return _empty(title, f"needs {MIN_TRIALS} complete trials ({len(snap.table.rows)} so far)")
    fig = go.Figure(go.Bar(x=[r.op for r in rates], y=[_round(r.rate) for r in rates], marker={"color": PALETTE[2]},
                           text=[f"{r.wins}/{r.used}" for r in rates], textposition="outside",
                           hovertemplate="%{x}: %{text} trials in the top quarter<extra></extra>"))
    fig = _layout(fig, title, "op kind (trials in the top quarter / trials using it)",
                  f"win rate (top {TOP_SHARE:.0%} by validation accuracy)")
    fig.update_yaxes(tickformat=".0%", range=[0, 1.1])
    return fig


def curve(trial: FrozenTrial, objective: int = 0) -> dict[int, float]:
    """The trial's validation score per epoch: what it reported to the pruner (one objective), else objective
    ``objective`` of its recorded per-epoch objective vectors (several objectives, which Optuna's ``report`` refuses)."""
    if trial.intermediate_values:
        return dict(trial.intermediate_values)
    return {epoch: values[objective] for epoch, values in epoch_values(trial).items() if objective < len(values)}


def learning_curves(snap: StudySnapshot, top: int = TOP) -> go.Figure:
    """The validation score per epoch of the best ``top`` trials in colour, every other finished trial's in grey, and a
    dashed line at each epoch after which the pruner stopped trials (its rungs, with how many it stopped there).
    With several objectives, the curves are of the first one that is an accuracy (else the first)."""
    title = TITLES["learning-curves"]
    names = objective_names(snap.study)
    objective = next((i for i, name in enumerate(names) if "accuracy" in name), 0)
    curves = {t.number: curve(t, objective) for t in snap.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    curves = {number: c for number, c in curves.items() if c}
    if not curves:
        return _empty(title, "no trial reported a score per epoch yet")
    best = [t for t in snap.ranked[:top] if t.number in curves]
    shown = {t.number for t in best}
    xs: list[float | None] = []
    ys: list[float | None] = []
    for number, c in curves.items():
        if number in shown:
            continue
        steps = sorted(c)
        xs += [*steps, None]
        ys += [*(_round(c[s]) for s in steps), None]
    fig = go.Figure()
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="other trials", line={"color": GREY, "width": 1},
                                 hoverinfo="skip"))
    for i, t in enumerate(best):
        steps = sorted(curves[t.number])
        fig.add_trace(go.Scatter(x=steps, y=[_round(curves[t.number][s]) for s in steps], mode="lines+markers",
                                 name=f"#{t.number}", line={"color": PALETTE[i % len(PALETTE)], "width": 2}, marker={"size": 4},
                                 hovertemplate=f"#{t.number} epoch %{{x}}: %{{y}}<extra>{t.user_attrs.get(SUMMARY, '')}</extra>"))
    rungs = Counter(int(t.user_attrs[PRUNED_AT_EPOCH]) for t in snap.trials
                    if t.state == TrialState.PRUNED and PRUNED_AT_EPOCH in t.user_attrs)
    for epoch, count in sorted(rungs.items()):
        fig.add_vline(x=epoch, line={"dash": "dash", "color": "#888888", "width": 1},
                      annotation={"text": f"{count} pruned", "font": {"size": 10}, "textangle": -90, "yanchor": "top"},
                      annotation_position="top right")
    return _layout(fig, title, "epoch", names[objective])


def metrics_against_accuracy(snap: StudySnapshot) -> go.Figure:
    """Each recorded representation metric (the most often recorded first) against validation accuracy, one panel
    each, as ``iasf-search analyze`` correlates them."""
    title = TITLES["metrics"]
    per_trial = {t.number: representation_metrics(t) for t in snap.complete}
    seen = Counter(name for m in per_trial.values() for name in m)
    names = sorted(seen, key=lambda n: (-seen[n], n))[:METRICS_SHOWN]
    if not names:
        return _empty(title, "no trial recorded representation metrics (the space's metrics: section is empty)")
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names)
    for i, name in enumerate(names):
        points = [(t, per_trial[t.number][name], finite_number(t.user_attrs.get(VAL_ACCURACY))) for t in snap.complete
                  if name in per_trial[t.number]]
        points = [(t, m, a) for t, m, a in points if a is not None]
        fig.add_trace(go.Scatter(x=[_round(m) for _, m, _ in points], y=[_round(a) for _, _, a in points], mode="markers",
                                 marker={"color": PALETTE[0], "size": 6}, showlegend=False,
                                 customdata=[t.number for t, _, _ in points],
                                 hovertemplate="#%{customdata}: " + name + " %{x}, validation accuracy %{y}<extra></extra>"),
                      row=1, col=i + 1)
    fig.update_layout(title={"text": title}, template=TEMPLATE, height=420, margin={"t": 90, "l": 60, "r": 20, "b": 40})
    fig.update_yaxes(title_text="validation accuracy", col=1)
    return fig
