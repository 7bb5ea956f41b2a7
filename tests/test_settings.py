"""The plain settings tables: each default stated once, and what the space, SplitSpec and the resolved space use."""

from __future__ import annotations

import dataclasses

import pytest

from iasf_search.components import SplitSpec
from iasf_search.params import Param
from iasf_search.settings import SEARCH_PARAMS, SPLIT_PARAMS, TRAINING_PARAMS


@pytest.mark.parametrize("table", [TRAINING_PARAMS, SPLIT_PARAMS, SEARCH_PARAMS], ids=["training", "split", "search"])
def test_every_key_is_declared_with_a_help_line(table):
    for key, param in table.items():
        assert isinstance(param, Param) and param.help, key


def test_split_spec_takes_its_defaults_from_the_table():
    assert dataclasses.asdict(SplitSpec()) == {k: p.default for k, p in SPLIT_PARAMS.items()}


def test_a_space_without_search_or_split_sections_resolves_to_the_table_defaults(make_space):
    resolved = make_space(drop=["search", "task.split"]).resolved()
    assert resolved["task"]["split"] == {k: p.default for k, p in SPLIT_PARAMS.items()}
    expected = {k: p.default for k, p in SEARCH_PARAMS.items() if k != "pruner"}
    assert {k: resolved["search"][k] for k in expected} == expected
    assert resolved["search"]["pruner"] == "median"  # the default for one objective


def test_a_space_without_training_resolves_to_the_training_defaults(make_space):
    resolved = make_space(drop=["training"]).resolved()
    assert resolved["training"] == {k: p.default for k, p in TRAINING_PARAMS.items()}
