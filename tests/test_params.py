"""Range.parse (scalar, list, {low, high, log, step}), its errors, and Range.suggest through Optuna."""

from __future__ import annotations

import math

import optuna
import pytest

from iasf_search.errors import SpaceError
from iasf_search.params import Param, Range, parse_params

INT = Param(2, int, low=1, high=64)
FLOAT = Param(1.0e-3, float, low=0.0)
STR = Param("full", str, choices=("full", "local", "dilated", "topk"))
BOOL = Param(False, bool)


def parse(value, param=INT, key="manifold.ops.attention.heads"):
    return Range.parse(value, param, "space.yaml", key)


def raises_space_error(value, param=INT, key="a.b"):
    with pytest.raises(SpaceError) as info:
        Range.parse(value, param, "space.yaml", key)
    return info.value


# -- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "param"), [(4, INT), (0.5, FLOAT), ("local", STR), (True, BOOL)])
def test_scalar_is_fixed(value, param):
    r = parse(value, param)
    assert r.is_fixed
    assert r.fixed == value
    assert r.values() == (value,)
    assert r.to_yaml() == value


def test_int_scalar_for_float_param_becomes_float():
    r = parse(1, FLOAT)
    assert r.fixed == 1.0 and isinstance(r.fixed, float)


def test_list_is_categorical_choice():
    r = parse([1, 2, 4])
    assert not r.is_fixed
    assert r.choices == (1, 2, 4)
    assert r.values() == (1, 2, 4)
    assert r.to_yaml() == [1, 2, 4]


def test_single_element_list_is_fixed():
    r = parse(["full"], STR)
    assert r.is_fixed and r.fixed == "full"


def test_int_interval():
    r = parse({"low": 2, "high": 8, "step": 2})
    assert (r.low, r.high, r.step, r.log, r.is_int) == (2, 8, 2, False, True)
    assert r.values() == (2, 4, 6, 8)
    assert r.to_yaml() == {"low": 2, "high": 8, "step": 2}


def test_float_log_interval():
    r = parse({"low": 1.0e-4, "high": 1.0e-2, "log": True}, FLOAT, key="training.lr")
    assert (r.low, r.high, r.log, r.is_int) == (1.0e-4, 1.0e-2, True, False)
    assert r.to_yaml() == {"low": 1.0e-4, "high": 1.0e-2, "log": True}


def test_equal_bounds_are_allowed():
    r = parse({"low": 3, "high": 3})
    assert (r.low, r.high) == (3, 3)


# -- errors -----------------------------------------------------------------------------------------


def test_empty_list():
    err = raises_space_error([], key="manifold.width")
    assert err.key == "manifold.width"
    assert "empty" in str(err)
    assert str(err).startswith("space.yaml: manifold.width:")


def test_repeated_choice():
    err = raises_space_error([2, 2])
    assert "repeat" in str(err)


def test_low_greater_than_high():
    err = raises_space_error({"low": 0.1, "high": 0.01}, FLOAT, key="training.lr")
    assert err.key == "training.lr"
    assert "low <= high" in str(err)
    assert "low=0.1" in str(err) and "high=0.01" in str(err)


@pytest.mark.parametrize("low", [0.0, -1.0e-3])
def test_log_range_needs_positive_low(low):
    unbounded = Param(1.0, float)
    err = raises_space_error({"low": low, "high": 1.0, "log": True}, unbounded, key="training.lr")
    assert err.key == "training.lr.low"
    assert "low > 0" in str(err)


def test_unknown_range_key_suggests_the_close_one():
    err = raises_space_error({"low": 1, "hihg": 4}, key="manifold.nodes")
    assert err.key == "manifold.nodes.hihg"
    assert "did you mean 'high'" in str(err)


def test_range_missing_high():
    err = raises_space_error({"low": 1})
    assert "missing 'high'" in str(err)


@pytest.mark.parametrize(
    ("value", "param", "key"),
    [
        ("four", INT, "a.b"),
        (2.5, INT, "a.b"),
        (True, INT, "a.b"),  # a bool is not an int here
        (1, STR, "a.b"),
        ("yes", BOOL, "a.b"),
        ([1, "two"], INT, "a.b[1]"),
        ({"low": 1, "high": "9"}, INT, "a.b.high"),
    ],
)
def test_wrong_type(value, param, key):
    err = raises_space_error(value, param)
    assert err.key == key
    assert f"expected {param.kind.__name__}" in str(err)


def test_interval_for_a_string_parameter():
    err = raises_space_error({"low": "a", "high": "b"}, STR)
    assert "needs a number parameter" in str(err)


def test_choice_not_allowed_suggests_the_close_one():
    err = raises_space_error(["full", "locl"], STR, key="manifold.ops.attention.pattern")
    assert err.key == "manifold.ops.attention.pattern[1]"
    assert "did you mean 'local'" in str(err)
    assert "allowed: dilated, full, local, topk" in str(err)


def test_value_outside_declared_bounds():
    assert "below the minimum" in str(raises_space_error(0))
    assert "above the maximum" in str(raises_space_error(65))
    assert "below the minimum" in str(raises_space_error({"low": 0, "high": 4}))


def test_step_and_log_cannot_be_combined():
    err = raises_space_error({"low": 1.0e-3, "high": 1.0, "log": True, "step": 0.1}, FLOAT)
    assert "cannot be combined" in str(err)


@pytest.mark.parametrize("step", [0, -1, "2", True])
def test_step_must_be_positive_number(step):
    err = raises_space_error({"low": 1, "high": 8, "step": step})
    assert err.key == "a.b.step"


def test_integer_parameter_needs_integer_step():
    err = raises_space_error({"low": 1, "high": 8, "step": 0.5})
    assert "integer step" in str(err)


def test_parse_params_fills_defaults_and_rejects_unknown():
    declared = {"heads": Param([1, 2], int, low=1), "pattern": Param("full", str, choices=("full", "local"))}
    ranges = parse_params({"heads": 4}, declared, "space.yaml", "manifold.ops.attention")
    assert ranges["heads"].fixed == 4
    assert ranges["pattern"].fixed == "full"  # the default
    with pytest.raises(SpaceError) as info:
        parse_params({"haeds": 4}, declared, "space.yaml", "manifold.ops.attention")
    assert info.value.key == "manifold.ops.attention.haeds"
    assert "did you mean 'heads'" in str(info.value)


def test_parse_params_for_a_component_without_parameters():
    with pytest.raises(SpaceError, match="it takes no parameters"):
        parse_params({"x": 1}, {}, "space.yaml", "manifold.ops.identity")


# -- suggest ----------------------------------------------------------------------------------------


@pytest.fixture
def trials():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return lambda n: [study.ask() for _ in range(n)]


def test_suggest_values_lie_in_their_ranges(trials):
    int_range = parse({"low": 2, "high": 10, "step": 2})
    log_range = parse({"low": 1.0e-4, "high": 1.0e-2, "log": True}, FLOAT)
    float_step = parse({"low": 0.0, "high": 1.0, "step": 0.25}, FLOAT)
    choice = parse(["full", "local"], STR)
    for trial in trials(50):
        i = int_range.suggest(trial, "i")
        assert isinstance(i, int) and 2 <= i <= 10 and i % 2 == 0
        f = log_range.suggest(trial, "f")
        assert 1.0e-4 <= f <= 1.0e-2
        s = float_step.suggest(trial, "s")
        assert s in (0.0, 0.25, 0.5, 0.75, 1.0)
        c = choice.suggest(trial, "c")
        assert c in ("full", "local")
        assert set(trial.params) == {"i", "f", "s", "c"}
        assert trial.params["i"] == i and math.isclose(trial.params["f"], f)


def test_suggest_fixed_value_creates_no_trial_parameter(trials):
    (trial,) = trials(1)
    assert parse(4).suggest(trial, "heads") == 4
    assert parse(["local"], STR).suggest(trial, "pattern") == "local"
    assert trial.params == {}
    assert trial.distributions == {}
