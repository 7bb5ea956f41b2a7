"""What predicts accuracy: the Spearman rank correlation of each number the trials recorded with
their validation accuracy, with a bootstrap 95% interval.

The columns are :func:`~iasf_search.results.access.measurements` (``metric.*``, ``cost.*``,
``proxy.*``, ``params``, flattened ``aux.*``) of the study's complete trials that recorded a
numeric validation accuracy. A column is correlated over the trials that recorded it; it needs
:data:`MIN_TRIALS` of them and must not be constant there, else it is listed as skipped with the
reason. ``iasf-search analyze`` prints and writes this; the report shows it under "What predicts
accuracy".
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import rankdata

from iasf_search.files import write_atomically
from iasf_search.results.access import finite_number, measurements
from iasf_search.results.figures import save
from iasf_search.results.records import VAL_ACCURACY

MIN_TRIALS = 5
"""Trials a column needs (with a validation accuracy) to be correlated; a study needs as many for an analysis."""
RESAMPLES = 1000
"""Bootstrap resamples per column."""
SEED = 0
"""Seed of each column's bootstrap generator (``numpy.random.default_rng(SEED)``): the same study gives the same intervals."""
FILES = ("correlations.png", "correlations.csv", "correlations.md")
"""The files :func:`write_correlations` writes."""


@dataclass(frozen=True)
class Correlation:
    """A column's Spearman rho with validation accuracy over ``n`` trials, and its bootstrap 95% interval ``[low, high]``."""

    name: str
    rho: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Skipped:
    """A column left out of the analysis, and why (too few trials, or constant over them)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Analysis:
    """A study's correlations: ``rows`` strongest first (``|rho|`` descending, then name), ``skipped`` by name;
    ``trials``: its complete trials with a numeric validation accuracy."""

    study: str
    trials: int
    rows: tuple[Correlation, ...]
    skipped: tuple[Skipped, ...]

    @property
    def shortfall(self) -> str | None:
        """Why the study cannot be analysed (fewer than :data:`MIN_TRIALS` trials), or None."""
        if self.trials >= MIN_TRIALS:
            return None
        return (f"study '{self.study}' has {self.trials} complete trial{'s' if self.trials != 1 else ''} with a validation "
                f"accuracy; correlating needs at least {MIN_TRIALS}")


def analyze(study: optuna.Study) -> Analysis:
    """The correlations of ``study``'s complete trials (see :func:`correlate`)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return correlate(study.study_name, complete)


def correlate(study_name: str, trials: Sequence[FrozenTrial]) -> Analysis:
    """Each measured column's Spearman rho with validation accuracy across ``trials`` (those without a
    numeric ``val_accuracy`` are left out) and its 95% interval.

    The interval is a percentile bootstrap: :data:`RESAMPLES` resamples of the column's trials with
    replacement (generator seeded with :data:`SEED` per column, so reruns agree), rho of each
    (resamples where either side is constant are skipped), and the 2.5th and 97.5th percentiles.
    rho is ``scipy.stats.spearmanr``'s (Pearson correlation of the ranks, ties at their average rank),
    computed from the ranks directly so that a monotone column gives exactly 1.0 or -1.0 (``spearmanr``
    can miss by the last bit).
    """
    scored = [(accuracy, measurements(t)) for t in trials if (accuracy := finite_number(t.user_attrs.get(VAL_ACCURACY))) is not None]
    names = sorted({name for _, columns in scored for name in columns})
    rows, skipped = [], []
    for name in names:
        pairs = np.array([(columns[name], accuracy) for accuracy, columns in scored if name in columns])
        x, y = pairs[:, 0], pairs[:, 1]
        if len(pairs) < MIN_TRIALS:
            skipped.append(Skipped(name, f"too few trials: {len(pairs)} of the {MIN_TRIALS} needed"))
        elif np.all(x == x[0]):
            skipped.append(Skipped(name, "constant"))
        elif np.all(y == y[0]):
            skipped.append(Skipped(name, "validation accuracy constant on its trials"))
        else:
            rows.append(_correlation(name, x, y))
    rows.sort(key=lambda r: (-abs(r.rho), r.name))
    return Analysis(study_name, len(scored), tuple(rows), tuple(skipped))


def _correlation(name: str, x: np.ndarray, y: np.ndarray) -> Correlation:
    rho = float(_spearman(x[None, :], y[None, :])[0])
    picks = np.random.default_rng(SEED).integers(0, len(x), size=(RESAMPLES, len(x)))
    resampled = _spearman(x[picks], y[picks])
    resampled = resampled[~np.isnan(resampled)]
    low, high = (float(v) for v in np.percentile(resampled, [2.5, 97.5])) if len(resampled) else (math.nan, math.nan)
    return Correlation(name, rho, low, high, len(x))


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho of each row of ``x`` with the same row of ``y`` (NaN where a row is constant).

    Ranks (ties averaged) are multiples of 1/2 and centred on ``(n + 1) / 2``, so the sums below are
    exact and identical or reversed ranks give exactly 1 or -1."""
    centre = (x.shape[1] + 1) / 2
    dx, dy = rankdata(x, axis=1) - centre, rankdata(y, axis=1) - centre
    sxy, sxx, syy = (dx * dy).sum(axis=1), (dx * dx).sum(axis=1), (dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = sxy / np.sqrt(sxx * syy)
    return np.where((sxx > 0) & (syy > 0), np.clip(rho, -1.0, 1.0), np.nan)


def _interval(row: Correlation) -> str:
    return f"[{row.low:+.3f}, {row.high:+.3f}]"


def text_table(analysis: Analysis) -> str:
    """The rows as a fixed-width table for the terminal: metric, rho, 95% interval, n."""
    width = max([len("metric"), *(len(r.name) for r in analysis.rows)])
    lines = [f"{'metric':<{width}}  {'rho':>6}  {'95% interval':<16}  {'n':>4}"]
    lines += [f"{r.name:<{width}}  {r.rho:+.3f}  {_interval(r):<16}  {r.n:>4}" for r in analysis.rows]
    return "\n".join(lines)


def markdown_table(analysis: Analysis) -> str:
    """The rows as a Markdown table (for a results page)."""
    lines = ["| metric | rho | 95% interval | n |", "|---|---:|---|---:|"]
    lines += [f"| `{r.name}` | {r.rho:+.3f} | {_interval(r)} | {r.n} |" for r in analysis.rows]
    return "\n".join(lines) + "\n"


def csv_text(analysis: Analysis) -> str:
    """The rows as CSV: ``name,rho,low,high,n`` (full precision)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "rho", "low", "high", "n"])
    writer.writerows([r.name, repr(r.rho), repr(r.low), repr(r.high), r.n] for r in analysis.rows)
    return buf.getvalue()


def correlations_figure(analysis: Analysis) -> Figure:
    """One horizontal bar per row (strongest on top): rho, with its 95% interval as error bars, and a line at 0."""
    rows = analysis.rows
    figure = Figure(figsize=(6.5, 1.4 + 0.3 * max(len(rows), 1)), layout="constrained")
    ax = figure.add_subplot()
    positions = np.arange(len(rows))[::-1]
    rho = np.array([r.rho for r in rows])
    errors = np.nan_to_num([[max(r.rho - r.low, 0.0) for r in rows], [max(r.high - r.rho, 0.0) for r in rows]])
    ax.barh(positions, rho, xerr=errors.reshape(2, len(rows)), color=np.where(rho >= 0, "#4e79a7", "#f28e2b"),
            error_kw={"ecolor": "#333333", "capsize": 3, "linewidth": 1})
    ax.axvline(0, color="#555555", linewidth=0.8)
    ax.set_yticks(positions, [r.name for r in rows], fontsize=7)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Spearman rho with validation accuracy (error bars: bootstrap 95% interval)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    if not rows:
        ax.text(0, 0, "no measurement varies over enough trials", ha="center", va="center", fontsize=8, backgroundcolor="white")
    ax.set_title(f"{analysis.study}: what predicts validation accuracy ({analysis.trials} trials)", fontsize=9)
    return figure


def correlations_png(analysis: Analysis) -> bytes:
    """:func:`correlations_figure` as PNG bytes."""
    return save(correlations_figure(analysis), "png")


def write_correlations(analysis: Analysis, out: Path) -> list[Path]:
    """Write :data:`FILES` into the existing folder ``out`` (figure, CSV, Markdown table); returns their paths."""
    png, table, markdown = (out / name for name in FILES)
    write_atomically(png, correlations_png(analysis))
    write_atomically(table, csv_text(analysis))
    write_atomically(markdown, markdown_table(analysis))
    return [png, table, markdown]
