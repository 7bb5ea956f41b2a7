"""Architecture features that mean the same in every graph, their importance for accuracy, and op win rates."""

from __future__ import annotations

import random

import pytest
from conftest import OPS, attention_decides, build_graph, made_up_trial
from optuna.trial import TrialState, create_trial

from iasf_search.results.features import (
    MIN_TRIALS,
    architecture_features,
    dominant_op,
    feature_importance,
    feature_table,
    op_win_rates,
)


def test_features_count_what_means_the_same_in_every_graph():
    graph = build_graph([{"op": "attention", "config": OPS["attention"]}, {"op": "conv", "config": OPS["conv"]},
                         {"op": "attention", "config": OPS["attention"], "inputs": ["input", "n1"], "fusion": "concat"}],
                        width=32, stem={"patch": 2, "overlap": False, "position": "learned"}, output=["n0", "n2"],
                        output_fusion="sum")
    graph.nodes["n1"]["norm"] = "batch"
    features = architecture_features(graph, {"lr": 0.003, "optimizer": "adamw", "augment": True, "auxiliary": {"cds": {}}})
    assert features == {
        "nodes": 3.0, "depth": 3.0, "width": 32.0, "op attention": 2.0, "op conv": 1.0, "fusion concat": 1.0,
        "fusion sum": 1.0, "norm batch": 1.0, "readout": "mean", "stem overlap": "false", "stem patch": 2.0,
        "stem position": "learned", "training augment": "true", "training lr": 0.003, "training optimizer": "adamw"}
    assert dominant_op(graph) == "attention"


def test_the_feature_that_decides_accuracy_ranks_first():
    rng = random.Random(0)
    trials = [made_up_trial(i, rng, attention_decides) for i in range(60)]
    table = feature_table(trials)
    assert table.numbers == list(range(60))
    assert "op attention" in table.columns() and "training lr" in table.columns()
    ranked = feature_importance(table)
    assert ranked[0][0] == "op attention", ranked[:4]
    assert ranked[0][1] > 0.5
    assert sum(share for _, share in ranked) == pytest.approx(1.0)
    assert ranked == feature_importance(feature_table(trials))  # seeded: the same trials rank the same


def test_op_win_rates_favour_the_op_that_decides():
    rng = random.Random(1)
    table = feature_table([made_up_trial(i, rng, attention_decides) for i in range(40)])
    rates = op_win_rates(table)
    assert rates[0].op == "attention"
    assert {r.op for r in rates} == set(OPS)
    attention = rates[0]
    assert attention.used == sum(row.get("op attention", 0) > 0 for row in table.rows)
    assert 0 < attention.wins <= attention.used and attention.rate == attention.wins / attention.used
    # every winner (top quarter) holds attention: no other op wins without it
    assert attention.wins >= max(r.wins for r in rates[1:])


def test_too_few_or_constant_trials_give_no_ranking():
    rng = random.Random(2)
    few = feature_table([made_up_trial(i, rng, attention_decides) for i in range(MIN_TRIALS - 1)])
    assert feature_importance(few) == [] and op_win_rates(few) == []
    flat = feature_table([made_up_trial(i, rng, lambda g, lr: 0.9) for i in range(10)])
    assert feature_importance(flat) == []


def test_trials_without_an_architecture_or_accuracy_are_left_out():
    rng = random.Random(3)
    kept = made_up_trial(0, rng, attention_decides)
    no_accuracy = create_trial(state=TrialState.COMPLETE, value=0.5, system_attrs={"architecture": kept.system_attrs["architecture"]})
    no_graph = create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs={"val_accuracy": 0.5})
    table = feature_table([kept, no_accuracy, no_graph])
    assert table.numbers == [0] and len(table.rows) == 1


def test_the_matrix_codes_categories_and_fills_missing_counts_with_zero():
    rng = random.Random(4)
    table = feature_table([made_up_trial(i, rng, attention_decides) for i in range(12)])
    columns = table.columns()
    x = table.matrix(columns)
    assert x.shape == (12, len(columns))
    readout = columns.index("readout")
    assert set(x[:, readout]) <= {0.0, 1.0}  # max, mean
    for j, name in enumerate(columns):
        if name.startswith("op "):
            assert all(x[i, j] == table.rows[i].get(name, 0.0) for i in range(12))
