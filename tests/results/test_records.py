"""Per-trial records in Optuna's system attributes (:mod:`iasf_search.results.records`)."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from iasf_search.results.records import (
    ARCHITECTURE,
    EPOCH_VALUES,
    STUDY_COMMANDS,
    STUDY_DATA,
    STUDY_SPACE,
    TRAIN_CONFIG,
    epoch_values,
    record,
    set_epoch_values,
    set_record,
    study_commands,
    study_data,
    study_space,
)


def test_a_record_is_a_system_attribute_not_a_user_attribute():
    study = optuna.create_study()
    trial = study.ask()
    set_record(trial, TRAIN_CONFIG, {"epochs": 2, "lr": 0.01})
    assert record(trial, TRAIN_CONFIG) == {"epochs": 2, "lr": 0.01}  # read back from the running trial
    study.tell(trial, 0.5)
    (frozen,) = study.trials
    assert frozen.system_attrs[TRAIN_CONFIG] == {"epochs": 2, "lr": 0.01}
    assert TRAIN_CONFIG not in frozen.user_attrs  # the dashboard's attribute list stays short
    assert record(frozen, TRAIN_CONFIG) == {"epochs": 2, "lr": 0.01}


def test_older_studies_kept_records_as_user_attributes():
    old = optuna.trial.create_trial(value=1.0, user_attrs={ARCHITECTURE: '{"nodes": []}'})
    assert record(old, ARCHITECTURE) == '{"nodes": []}'
    both = optuna.trial.create_trial(value=1.0, user_attrs={ARCHITECTURE: "old"}, system_attrs={ARCHITECTURE: "new"})
    assert record(both, ARCHITECTURE) == "new"  # the system attribute wins


def test_a_missing_record_is_the_default():
    trial = optuna.trial.create_trial(value=1.0)
    assert record(trial, TRAIN_CONFIG) is None
    assert record(trial, TRAIN_CONFIG, {}) == {}


def test_epoch_values_accumulate_per_epoch_as_floats():
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    set_epoch_values(trial, 1, [0.5, 3])
    set_epoch_values(trial, 2, [0.75, 3])
    assert epoch_values(trial) == {1: [0.5, 3.0], 2: [0.75, 3.0]}
    set_epoch_values(trial, 2, [0.8, 3])  # an epoch written again replaces its vector
    study.tell(trial, [0.8, 3.0])
    (frozen,) = study.trials
    assert frozen.system_attrs[EPOCH_VALUES] == {"1": [0.5, 3.0], "2": [0.8, 3.0]}  # JSON: string keys
    assert epoch_values(frozen) == {1: [0.5, 3.0], 2: [0.8, 3.0]}
    assert all(isinstance(v, float) for vector in epoch_values(frozen).values() for v in vector)


def test_a_trial_without_epoch_values_has_none():
    assert epoch_values(optuna.trial.create_trial(value=1.0)) == {}


def test_epoch_values_are_read_through_records():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(state=TrialState.RUNNING, params={}, distributions={},
                                              system_attrs={EPOCH_VALUES: {"1": [0.5, 2.0]}}))
    trial = study.trials[-1]
    assert epoch_values(trial) == {1: [0.5, 2.0]}


def test_the_study_records_are_read_back_by_their_readers(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    space = {"name": "s", "plugins": ["my_ops"], "task": {"dataset": "digits"}}
    data = {"sample_shape": [1, 8, 8], "num_classes": 10, "modality": "image"}
    study.set_user_attr(STUDY_SPACE, space)
    study.set_user_attr(STUDY_DATA, data)
    study.set_user_attr(STUDY_COMMANDS, ["iasf-search --space s.yaml", "iasf-search --space s.yaml --trials 9"])
    stored = optuna.load_study(study_name="s", storage=url)  # as the results commands open it
    assert study_space(stored) == space and study_data(stored) == data
    assert study_commands(stored) == ["iasf-search --space s.yaml", "iasf-search --space s.yaml --trials 9"]
    assert (STUDY_SPACE, STUDY_DATA, STUDY_COMMANDS) == ("space", "data", "commands")  # the keys stored studies hold


def test_a_study_without_records_reads_as_empty():
    study = optuna.create_study()  # not made by a search
    assert study_space(study) == {} and study_data(study) == {} and study_commands(study) == []
    commands = study_commands(study)
    commands.append("changed")  # a fresh list: nothing is written back
    assert study_commands(study) == [] and STUDY_COMMANDS not in study.user_attrs
