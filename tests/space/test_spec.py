"""The space as plain data (iasf_search.space.spec): resolved() fills every default in, leaves out the defaults
that older studies did not record, and parses back to the same space."""

from __future__ import annotations

from pathlib import Path

import pytest

import iasf_search
from iasf_search.session import session_for
from iasf_search.space import SearchSpace, parse_space

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
SHIPPED = sorted(SPACES_DIR.glob("*.yaml"))


def _roundtrip(space: SearchSpace) -> None:
    resolved = space.resolved()
    again = parse_space(resolved, session_for(space).components, file="resolved.yaml")
    assert again.resolved() == resolved
    for field in ("name", "dataset", "dataset_options", "split", "stem", "nodes", "max_in_degree", "lookback", "width",
                  "ops", "fusions", "readouts", "norms", "training", "objectives", "search"):
        assert getattr(again, field) == getattr(space, field), field


def test_resolved_leaves_out_the_default_readouts_and_norms(write_space):
    """A study made before readouts and norms were choices stored a space without them: the same space
    must resolve to the same document, or resuming it would warn of a different space."""
    default = iasf_search.load_space(write_space()).resolved()["manifold"]
    assert "readouts" not in default and "norms" not in default
    chosen = iasf_search.load_space(write_space({"manifold.readouts": {"mean": None, "class_token": {"heads": 2}},
                                                 "manifold.norms": ["batch"]}))
    assert chosen.resolved()["manifold"]["readouts"] == {"mean": {}, "class_token": {"heads": 2}}
    assert chosen.resolved()["manifold"]["norms"] == {"batch": {}}
    _roundtrip(chosen)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_resolved_roundtrips_for_shipped_space(path):
    _roundtrip(iasf_search.load_space(path))


def test_resolved_roundtrips_with_ranges_and_options(write_space):
    path = write_space({
        "manifold.nodes": {"low": 1, "high": 5},
        "manifold.width": {"low": 8, "high": 32, "step": 8},
        "manifold.lookback": None,
        "manifold.ops": {"mlp": {"expansion": {"low": 1, "high": 4}}, "pool": None, "identity": {}},
        "manifold.fusions": {"sum": None, "gated": None},
        "training.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
        "training.warmup": {"low": 0.0, "high": 0.5, "step": 0.1},
        "training.optimizer": ["adamw", "sgd"],
        "training.augment": [True, False],
        "objectives": [{"metric": "accuracy"}, {"metric": "params"}],
        "search": {"sampler": "nsga2", "sampler_options": {"population_size": 4}, "pruner": "pareto_halving",
                   "pruner_options": {"reduction_factor": 2}, "timeout": 60},
    })
    space = iasf_search.load_space(path)
    assert space.directions == ["maximize", "minimize"]
    assert space.search.sampler_options == {"population_size": 4}
    _roundtrip(space)
