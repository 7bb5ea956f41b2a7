"""Errors the CLI turns into one line and exit status 2 (iasf_search.errors), and the helpers that make their
messages name the close word and the allowed ones."""

from __future__ import annotations

import pytest

from iasf_search.errors import BadInput, SpaceError, allowed, did_you_mean


def test_space_error_names_file_and_key():
    error = SpaceError("tiny.yaml", "manifold.ops.mlpp", "unknown op")
    assert isinstance(error, BadInput) and isinstance(error, Exception)
    assert (error.file, error.key, error.problem) == ("tiny.yaml", "manifold.ops.mlpp", "unknown op")
    assert str(error) == "tiny.yaml: manifold.ops.mlpp: unknown op"


def test_space_error_without_a_key_names_the_file():
    error = SpaceError("tiny.yaml", "", "must hold a YAML mapping")
    assert str(error) == "tiny.yaml: must hold a YAML mapping" and error.key == ""


def test_bad_input_is_raised_and_caught_as_itself():
    with pytest.raises(BadInput, match="^--trials must be at least 1$"):
        raise BadInput("--trials must be at least 1")
    with pytest.raises(BadInput):
        raise SpaceError("s.yaml", "name", "missing")


@pytest.mark.parametrize(("word", "options", "expected"), [
    ("atention", ["attention", "conv", "mlp"], " (did you mean 'attention'?)"),
    ("mlpp", ["attention", "conv", "mlp"], " (did you mean 'mlp'?)"),
    ("zzz", ["attention", "conv", "mlp"], ""),
    ("x", [], ""),
    (128, [64, 127, 256], " (did you mean '127'?)"),  # numbers are compared as words
])
def test_did_you_mean_suggests_the_closest_option_only(word, options, expected):
    assert did_you_mean(word, options) == expected


def test_allowed_lists_options_sorted():
    assert allowed(["mlp", "attention", "conv"]) == "allowed: attention, conv, mlp"
    assert allowed({"b": 1, "a": 2}) == "allowed: a, b"
    assert allowed([3, 1, 2]) == "allowed: 1, 2, 3"
    assert allowed([]) == "allowed: "


def test_a_space_error_quoting_a_huge_value_stays_short():
    from iasf_search.errors import MAX_PROBLEM, SpaceError

    error = SpaceError("x.yaml", "name", f"expected letters, got {list(range(5000))!r}")
    assert len(error.problem) <= MAX_PROBLEM and error.problem.endswith("characters in all)")
    assert str(error).startswith("x.yaml: name: expected letters, got [0, 1, 2")


def test_errors_stay_one_line_whatever_they_quote():
    from iasf_search.errors import SpaceError, one_line

    assert one_line("a\nb\r\tc é 🧪 \x00\u2028") == "a\\nb\\r\\tc é 🧪 \\x00\\u2028"
    assert str(SpaceError("x.yaml", "task.\n", "unknown key 'a\nb'")) == "x.yaml: task.\\n: unknown key 'a\\nb'"
