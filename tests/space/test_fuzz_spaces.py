"""Property-based fuzzing of space documents (Hypothesis): a shipped space with one part dropped, retyped, pushed out
of range, replaced by an unknown key, a huge number, unicode or deep nesting either validates or fails with one line
(:class:`~iasf_search.errors.BadInput`) naming the file, in bounded time; never another exception.

CI runs a fixed, seeded budget (:data:`EXAMPLES` per shipped space). A longer run:

    IASF_FUZZ_EXAMPLES=5000 python -m pytest -q tests/space/test_fuzz_spaces.py
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from iasf_search.errors import BadInput
from iasf_search.plugin_manager import load_components
from iasf_search.space import parse_space
from iasf_search.space.parser import read_space_file

ROOT = Path(__file__).resolve().parents[2]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))
EXAMPLES = int(os.environ.get("IASF_FUZZ_EXAMPLES", "150"))
"""Mutated documents tried per shipped space (the fixed budget CI runs)."""
MAX_MESSAGE = 2000
"""The longest one-line error a mutated document may get."""
COMPONENTS = load_components(autoload=False)

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**18, max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20) | st.sampled_from(["", "🧪", "\x00", "a" * 300]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
"""Any value a YAML document can hold, nested a few levels."""


def paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path of a document's mappings and lists (``("manifold", "ops", "conv", "kernel")``, ...)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield (*prefix, i)
            yield from paths(value, (*prefix, i))


def mutate(doc: dict, path: tuple, how: str, value: Any) -> dict:
    """``doc`` with the part at ``path`` dropped, replaced by ``value``, or given an unknown sibling key."""
    out = copy.deepcopy(doc)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if how == "drop":
        del parent[last]
    elif how == "replace":
        parent[last] = value
    elif isinstance(parent, dict):
        parent[f"unknown_{last}"] = value
    else:
        parent.append(value)
    return out


@pytest.mark.parametrize("space_file", SPACES, ids=[p.stem for p in SPACES])
def test_a_mutated_shipped_space_validates_or_is_one_line(space_file):
    doc = read_space_file(space_file)
    every_path = list(paths(doc))

    @seed(0)
    @settings(max_examples=EXAMPLES, deadline=2000, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(path=st.sampled_from(every_path), how=st.sampled_from(["drop", "replace", "add"]), value=values)
    def check(path, how, value):
        mutated = mutate(doc, path, how, value)
        try:
            parse_space(mutated, COMPONENTS, file=str(space_file), autoload=False)
        except BadInput as exc:
            message = str(exc)
            assert "\n" not in message and len(message) <= MAX_MESSAGE, (path, how, message[:300])
            assert message.startswith(str(space_file)) or "space" in message, message[:300]

    check()
