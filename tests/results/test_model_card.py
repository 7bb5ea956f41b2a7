"""What an export folder says about its model: ``model.json`` and the ``README.md`` model card."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from iasf_search.results.model_card import FORMAT, METRICS, model_card, model_info
from iasf_search.results.records import TRAIN_CONFIG

SPACE = {"name": "vision", "plugins": ["my_ops"], "task": {"dataset": "digits", "options": {"shift": 0}, "split": {"val": 0.2}},
         "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "flops", "direction": "minimize"}]}
ATTRS = {"arch_hash": "abc123", "summary": "p2/learned w8 mlp1", "val_accuracy": 0.9, "val_loss": 0.25, "test_accuracy": 0.875,
         "epochs": 2, "train_seconds": 1.5, "params": 12345, "cost.flops": 67890.0, "cost.params": 12345.0, "pruned_at_epoch": 1}


def study_with_trial(**extra_attrs):
    study = optuna.create_study(study_name="vision", directions=["maximize", "minimize"])
    study.set_user_attr("space", SPACE)
    study.set_user_attr("data", {"modality": "image"})
    study.set_user_attr("commands", ["iasf-search --space vision.yaml --trials 4"])
    study.add_trial(create_trial(values=[0.9, 67890.0], params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                                 user_attrs={**ATTRS, **extra_attrs}, system_attrs={TRAIN_CONFIG: {"epochs": 2, "lr": 0.01}}))
    return study, study.trials[0]


def test_model_info_says_how_to_rebuild_the_model_and_what_it_scored():
    study, trial = study_with_trial()
    info = model_info(study, trial, (1, 8, 8), 10)
    assert info == {
        "format": FORMAT, "study": "vision", "trial": 0, "reused_from": None, "arch_hash": "abc123",
        "summary": "p2/learned w8 mlp1", "sample_shape": [1, 8, 8], "num_classes": 10, "padded": False, "modality": "image",
        "dataset": SPACE["task"], "plugins": ["my_ops"],
        "objectives": [{"metric": "accuracy", "direction": "maximize", "value": 0.9},
                       {"metric": "flops", "direction": "minimize", "value": 67890.0}],
        "metrics": {k: ATTRS[k] for k in METRICS if k in ATTRS},  # the folds' figures only with cross-validation
        "costs": {"flops": 67890.0, "params": 12345.0},
        "train_config": {"epochs": 2, "lr": 0.01},
        "commands": ["iasf-search --space vision.yaml --trials 4"],
    }
    assert "pruned_at_epoch" not in info["metrics"]


def test_model_card_has_use_metrics_costs_data_and_provenance():
    study, trial = study_with_trial()
    card = model_card(model_info(study, trial, (1, 8, 8), 10), SPACE)
    assert card.startswith("# vision trial 0: p2/learned w8 mlp1\n")
    assert "Architecture `abc123` found by iasf-search; input shape (1, 8, 8), 10 classes, 12,345 parameters." in card
    assert "model = iasf_search.load_model('.')" in card and "# x: (batch, 1, 8, 8) -> (batch, 10)" in card
    assert "| val_accuracy | 0.9000 |" in card and "| epochs | 2 |" in card and "| params | 12345 |" in card
    assert "## Costs (measured before training)" in card and "| flops | 67,890 |" in card
    assert 'Dataset `digits` with options `{"shift": 0}`, split `{"val": 0.2}`' in card
    assert '`{"epochs": 2, "lr": 0.01}`' in card
    assert "\n    iasf-search --space vision.yaml --trials 4\n" in card
    assert "name `vision`" in card and "iasf-search train --arch arch.json" in card
    assert "The weights are those of trial" not in card
    assert card.endswith("\n") and not card.endswith("\n\n")


def test_model_card_of_a_reused_result_without_costs_or_commands():
    study, trial = study_with_trial(reused_from=3)
    info = model_info(study, trial, (1, 8, 8), 10)
    info["costs"], info["commands"] = {}, []
    card = model_card(info, SPACE)
    assert "The weights are those of trial 3, which trained the identical architecture." in card
    assert "## Costs" not in card
    assert "(the study does not record its commands)" in card


def test_model_card_without_a_parameter_count():
    study, trial = study_with_trial()
    info = model_info(study, trial, (1, 8, 8), 10)
    del info["metrics"]["params"]
    assert "input shape (1, 8, 8), 10 classes.\n" in model_card(info, SPACE)
