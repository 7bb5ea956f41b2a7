"""A stored study's records are checked against their kinds before anything reads them: a damaged record is one line
naming the study, the trial and the record; a study as a search records it passes."""

from __future__ import annotations

import json

import optuna
import pytest

from iasf_search.errors import BadInput
from iasf_search.results.integrity import check_study, damaged


def test_a_study_as_a_search_records_it_passes(export_search):
    _, _, url = export_search
    check_study(optuna.load_study(study_name="tiny", storage=url))  # every record of a real search is of its kind


def study_with(user: dict | None = None, system: dict | None = None, study_attrs: dict | None = None) -> optuna.Study:
    study = optuna.create_study(study_name="s")
    for key, value in (study_attrs or {}).items():
        study.set_user_attr(key, value)
    trial = optuna.trial.create_trial(value=0.5, user_attrs={"val_accuracy": 0.5, **(user or {})}, system_attrs=system or {})
    study.add_trial(trial)
    return study


@pytest.mark.parametrize(("attrs", "fragment"), [
    ({"user": {"val_accuracy": [0.5]}}, "trial #0: the record 'val_accuracy' holds [0.5], not a number"),
    ({"user": {"params": -3}}, "'params' holds -3, not a whole number"),
    ({"user": {"params": True}}, "'params' holds True, not a whole number"),
    ({"user": {"cost.flops": "many"}}, "'cost.flops' holds 'many', not a number or null"),
    ({"user": {"constraints": {"params": {"value": 3}}}}, "not a mapping of constraints"),
    ({"system": {"architecture": 7}}, "'architecture' holds 7, not text"),
    ({"system": {"epoch_values": {"one": [1.0]}}}, "not a mapping of epochs to objective values"),
    ({"system": {"artifacts:abc": "{}"}}, "not Optuna's JSON record of an uploaded file"),
    ({"study_attrs": {"space": ["x"]}}, "study 's': the record 'space' holds ['x'], not a mapping"),
    ({"study_attrs": {"data": {"sample_shape": [8, "8"], "num_classes": 10}}}, "not a data fingerprint"),
    ({"study_attrs": {"baselines": {"1nn": {"val_accuracy": 0.9}}}}, "not a mapping of baselines"),
    ({"study_attrs": {"commands": "iasf-search"}}, "not a list of command lines"),
])
def test_a_damaged_record_is_one_line_naming_it(attrs, fragment):
    with pytest.raises(BadInput) as info:
        check_study(study_with(**attrs))
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert message.endswith("the study was changed outside iasf-search; restore its database from a backup, or run the "
                            "search under a new --study name")


def test_records_of_their_kind_and_unknown_records_pass():
    check_study(study_with(user={"cost.latency": None, "metric.rank": float("nan"), "my_own_note": [1, "x"],
                                 "constraints": {"params": {"value": None, "max": 10, "feasible": False}}},
                           system={"epoch_values": {"1": [0.5, 3.0]}, "artifacts:x": json.dumps(
                               {"artifact_id": "x", "filename": "a.svg", "mimetype": "image/svg+xml", "encoding": None})},
                           study_attrs={"data": {}, "baselines": {"data": {"train": 3}}}))


def test_a_long_value_is_cut_and_a_line_break_escaped():
    problem = damaged({"summary": ["a\nb"] * 100}, {"summary": (lambda v: isinstance(v, str), "text")})
    assert problem is not None and problem[0] == "summary"
    with pytest.raises(BadInput) as info:
        check_study(study_with(user={"summary": ["a\nb"] * 100}))
    assert "\n" not in str(info.value) and "..." in str(info.value)
