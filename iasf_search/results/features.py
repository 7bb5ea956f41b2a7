"""What matters in a study's architectures: features that mean the same in every graph, their importance for
validation accuracy, and how often each op kind wins.

A graph's raw Optuna parameters (``n1.op``, ``n2.in.n1``) name a different node in every graph, so ranking
them says nothing a user can read. :func:`architecture_features` describes a trained architecture by what
does mean the same everywhere: how many nodes of each op kind it has (``op attention``), its node count,
depth and width, how many fusions of each kind (``fusion concat``), how many nodes use each norm, its readout,
its stem's settings (``stem patch``) and its sampled training settings (``training lr``).

:func:`feature_importance` ranks those features by the **permutation importance of a random forest**
fitted to them (scikit-learn's ``RandomForestRegressor`` and ``permutation_importance``; seeded, so the same
trials give the same ranking): how much the forest's fit of validation accuracy worsens when one feature's
column is shuffled, normalised to shares that sum to 1. :func:`op_win_rates` gives, per op kind, the share
of the complete trials using it that reach the study's top quarter by validation accuracy.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
from optuna.trial import FrozenTrial

from iasf_search.graph import DEFAULT_NORM, DEFAULT_READOUT, INPUT, OUTPUT, hidden_nodes, inputs_of
from iasf_search.results.access import finite_number, trial_architecture
from iasf_search.results.records import ARCHITECTURE, TRAIN_CONFIG, VAL_ACCURACY, record

Value = float | str
"""A feature's value: a number (counts, sizes, numeric settings) or a category (readout, optimizer)."""

IMPORTANCE_METHOD = "permutation importance of a random forest (scikit-learn, 48 trees, 3 shuffles per feature)"
"""How :func:`feature_importance` measures importance, as the study page names it."""
MIN_TRIALS = 5
"""Complete trials with a validation accuracy that :func:`feature_importance` and :func:`op_win_rates` need."""
TREES = 48
SHUFFLES = 3
SEED = 0
TOP_SHARE = 0.25
"""A trial "wins" (:func:`op_win_rates`) when its validation accuracy is in the study's top quarter."""


def architecture_features(graph: nx.DiGraph, training: Mapping[str, Any] | None = None) -> dict[str, Value]:
    """The features of one architecture (and its training settings) that mean the same in every graph.

    ``op <kind>``, ``fusion <kind>`` and ``norm <kind>`` count nodes (norms other than the default ``layer``);
    ``nodes`` counts the hidden nodes, ``depth`` is the longest input-to-output path in nodes, ``width`` the token
    width; ``readout`` names the head's readout;
    ``stem <key>`` and ``training <key>`` are the stem's and training's sampled settings that are single values
    (the learning rate as ``training lr``; the auxiliary objectives' settings are left out).
    """
    nodes = hidden_nodes(graph)
    features: dict[str, Value] = {"nodes": float(len(nodes)), "depth": float(nx.dag_longest_path_length(graph) - 1),
                                  "width": float(graph.graph.get("width", 0))}
    ops = Counter(graph.nodes[n]["op"] for n in nodes)
    fusions = Counter(graph.nodes[n]["fusion"] for n in [*nodes, OUTPUT]
                      if len(inputs_of(graph, n)) > 1 and graph.nodes[n].get("fusion"))
    norms = Counter(graph.nodes[n]["norm"] for n in nodes if (graph.nodes[n].get("norm") or DEFAULT_NORM) != DEFAULT_NORM)
    features.update((f"op {kind}", float(count)) for kind, count in sorted(ops.items()))
    features.update((f"fusion {kind}", float(count)) for kind, count in sorted(fusions.items()))
    features.update((f"norm {kind}", float(count)) for kind, count in sorted(norms.items()))
    features["readout"] = graph.nodes[OUTPUT].get("readout") or DEFAULT_READOUT
    for prefix, config in (("stem", graph.nodes[INPUT].get("config") or {}), ("training", training or {})):
        for key, value in sorted(config.items()):
            if isinstance(value, bool | str):
                features[f"{prefix} {key}"] = str(value).lower() if isinstance(value, bool) else value
            elif (number := finite_number(value)) is not None:
                features[f"{prefix} {key}"] = number
    return features


def dominant_op(graph: nx.DiGraph) -> str:
    """The op kind most of the graph's nodes use (ties: the first in name order), the colour of its point."""
    ops = Counter(graph.nodes[n]["op"] for n in hidden_nodes(graph))
    return min(ops, key=lambda kind: (-ops[kind], kind)) if ops else "none"


@dataclass(frozen=True)
class FeatureTable:
    """One row of :func:`architecture_features` per trial: ``rows[i]`` is trial ``numbers[i]``, whose validation
    accuracy is ``accuracy[i]``. A feature missing from a row is 0 for a count and absent otherwise."""

    numbers: list[int]
    rows: list[dict[str, Value]]
    accuracy: np.ndarray

    def columns(self) -> list[str]:
        """The features that vary over the rows (a constant one can explain nothing), in name order."""
        names = sorted({name for row in self.rows for name in row})
        return [name for name in names if len({_cell(row, name) for row in self.rows}) > 1]

    def matrix(self, columns: Sequence[str]) -> np.ndarray:
        """The rows as numbers: a numeric feature as it is (missing: 0 for counts, else the column's median); a
        categorical one by its category's index in name order."""
        out = np.zeros((len(self.rows), len(columns)))
        for j, name in enumerate(columns):
            cells = [_cell(row, name) for row in self.rows]
            if any(isinstance(c, str) for c in cells):
                categories = sorted({str(c) for c in cells})
                out[:, j] = [categories.index(str(c)) for c in cells]
            else:
                numbers = [c for c in cells if c is not None]
                fill = float(np.median(numbers)) if numbers else 0.0
                out[:, j] = [fill if c is None else c for c in cells]
        return out


def _cell(row: Mapping[str, Value], name: str) -> Value | None:
    if name in row:
        return row[name]
    return 0.0 if name.split(" ")[0] in ("op", "fusion", "norm") else None


def feature_table(trials: Sequence[FrozenTrial], graphs: Mapping[int, nx.DiGraph] | None = None) -> FeatureTable:
    """The features of ``trials`` that recorded an architecture and a numeric validation accuracy.

    :param graphs: architectures already parsed, by trial number (the rest are read from their records).
    """
    numbers, rows, accuracy = [], [], []
    for t in trials:
        acc = finite_number(t.user_attrs.get(VAL_ACCURACY))
        if acc is None or record(t, ARCHITECTURE) is None:
            continue
        graph = graphs[t.number] if graphs is not None and t.number in graphs else trial_architecture(t)
        numbers.append(t.number)
        rows.append(architecture_features(graph, record(t, TRAIN_CONFIG, {})))
        accuracy.append(acc)
    return FeatureTable(numbers, rows, np.asarray(accuracy, dtype=float))


def feature_importance(table: FeatureTable) -> list[tuple[str, float]]:
    """``[(feature, share), ...]``, most important first, shares summing to 1 (negative importances count as 0):
    :data:`IMPORTANCE_METHOD` over the table's varying features. Empty with fewer than :data:`MIN_TRIALS` rows,
    no varying feature, or a constant accuracy."""
    columns = table.columns()
    if len(table.rows) < MIN_TRIALS or not columns or np.ptp(table.accuracy) == 0:
        return []
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    x = table.matrix(columns)
    forest = RandomForestRegressor(n_estimators=TREES, min_samples_leaf=2, random_state=SEED, n_jobs=1).fit(x, table.accuracy)
    measured = permutation_importance(forest, x, table.accuracy, n_repeats=SHUFFLES, random_state=SEED, n_jobs=1)
    shares = np.clip(measured.importances_mean, 0.0, None)
    total = float(shares.sum())
    if total <= 0 or not math.isfinite(total):
        return []
    return sorted(((name, float(v) / total) for name, v in zip(columns, shares, strict=True)), key=lambda p: (-p[1], p[0]))


@dataclass(frozen=True)
class WinRate:
    """Of the ``used`` complete trials with an op kind, ``wins`` reached the top quarter by validation accuracy."""

    op: str
    used: int
    wins: int

    @property
    def rate(self) -> float:
        return self.wins / self.used if self.used else 0.0


def op_win_rates(table: FeatureTable) -> list[WinRate]:
    """Per op kind, how many of the trials using it are winners (validation accuracy at or above the top quarter's
    threshold, :data:`TOP_SHARE`), highest rate first; empty with fewer than :data:`MIN_TRIALS` rows."""
    if len(table.rows) < MIN_TRIALS:
        return []
    threshold = float(np.quantile(table.accuracy, 1.0 - TOP_SHARE))
    kinds = sorted({name[3:] for row in table.rows for name in row if name.startswith("op ")})
    rates = []
    for kind in kinds:
        used = [acc for row, acc in zip(table.rows, table.accuracy, strict=True) if row.get(f"op {kind}", 0.0) > 0]
        rates.append(WinRate(kind, len(used), int(sum(acc >= threshold for acc in used))))
    return sorted(rates, key=lambda r: (-r.rate, -r.used, r.op))
