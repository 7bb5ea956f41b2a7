"""Space files: the shipped ones load, bad ones fail with the file and key path, resolved() round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import iasf_search
from iasf_search.errors import BadInput, SpaceError
from iasf_search.session import session_for
from iasf_search.space import SearchSpace, parse_space

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
SHIPPED = sorted(SPACES_DIR.glob("*.yaml"))


def test_vision_space_is_shipped():
    assert SPACES_DIR / "vision.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_space_loads(path):
    session = iasf_search.open_session(path)
    space, components = session.space, session.components
    assert isinstance(space, SearchSpace)
    assert space.name == path.stem  # (a loop in parse_space once overwrote it)
    assert space.dataset in components.datasets
    assert set(space.ops) <= set(components.ops)
    assert set(space.fusions) <= set(components.fusions)


def _as_written(value):
    """A space-file value as resolved() writes it back: a one-element list is a fixed value."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_space_matches_its_file(path):
    """Every value the file gives is what the validated space holds (the rest are defaults)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    space = iasf_search.load_space(path)
    resolved = space.resolved()
    assert resolved["name"] == raw["name"]
    assert resolved["task"]["dataset"] == raw["task"]["dataset"]
    for section in ("stem", "training"):
        for key, value in (raw.get(section) or {}).items():
            assert resolved[section][key] == _as_written(value), f"{section}.{key}"
    manifold = raw["manifold"]
    for key in ("nodes", "max_in_degree", "lookback", "width"):
        if key in manifold:
            assert resolved["manifold"][key] == _as_written(manifold[key]), f"manifold.{key}"
    assert list(space.ops) == list(manifold["ops"])
    for op, ranges in manifold["ops"].items():
        for key, value in (ranges or {}).items():
            assert resolved["manifold"]["ops"][op][key] == _as_written(value), f"manifold.ops.{op}.{key}"
    fusions = manifold.get("fusions", ["sum"])
    assert list(space.fusions) == list(fusions)
    for key, value in (raw.get("search") or {}).items():
        assert resolved["search"][key] == value, f"search.{key}"
    assert [o.metric for o in space.objectives] == [o["metric"] for o in raw.get("objectives", [{"metric": "accuracy"}])]


def test_vision_space_values():
    space = iasf_search.load_space(SPACES_DIR / "vision.yaml")
    assert space.dataset == "digits"
    assert space.modality == "image"
    assert space.ops["attention"]["pattern"].choices == ("full", "local", "dilated", "topk")
    assert space.training["lr"].log is True
    assert space.directions == ["maximize"]
    # every width is divisible by every head count (checked at load time)
    assert all(w % h == 0 for w in space.width.values() for h in space.ops["attention"]["heads"].values())


def test_defaults_are_filled(write_space):
    path = write_space(drop=["training", "search", "manifold.fusions", "manifold.lookback", "manifold.max_in_degree"])
    space = iasf_search.load_space(path)
    assert space.fusions == {"sum": {}}
    assert space.lookback is None and space.max_in_degree == 2
    assert space.training["epochs"].fixed == 20
    assert space.training["optimizer"].fixed == "adamw"
    assert (space.search.sampler, space.search.pruner, space.search.seed) == ("tpe", "median", 0)
    assert space.objectives[0].metric == "accuracy" and space.directions == ["maximize"]
    # an op's undeclared parameters take the op's defaults
    assert space.ops["conv"]["dilation"].fixed == 1
    assert space.readouts == {"mean": {}} and space.norms == {"layer": {}}  # as before they were choices


def test_readouts_and_norms_parse_like_fusions(write_space):
    """A list, or a mapping with each one's parameter ranges (null: its defaults); a readout's declared
    defaults fill what the space leaves out."""
    space = iasf_search.load_space(write_space({"manifold.readouts": ["mean", "max", "mean_max", "class_token", "flatten"],
                                                "manifold.norms": ["layer", "batch"]}))
    assert list(space.readouts) == ["mean", "max", "mean_max", "class_token", "flatten"]
    assert space.readouts["class_token"]["heads"].choices == (1, 2) and space.readouts["mean"] == {}
    assert space.norms == {"layer": {}, "batch": {}}
    space = iasf_search.load_space(write_space({"manifold.readouts": {"class_token": {"heads": 2}, "max": None}}))
    assert space.readouts["class_token"]["heads"].fixed == 2 and space.readouts["max"] == {}


def test_metrics_default_to_every_built_in_that_needs_no_extra(write_space):
    space = iasf_search.load_space(write_space())
    assert list(space.metrics) == ["attention_entropy", "attention_entropy_norm", "attention_distance", "oversmoothing",
                                   "effective_rank", "intrinsic_dimension"]
    assert space.metrics_batch == 256 and space.metrics_default
    assert "metrics" not in space.resolved()  # a study made before metrics were recorded resumes without a warning


def test_metrics_as_a_list_a_mapping_with_options_or_none(write_space):
    space = iasf_search.load_space(write_space({"metrics": ["oversmoothing", "effective_rank"]}))
    assert space.metrics == {"oversmoothing": {}, "effective_rank": {}} and space.metrics_batch == 256
    space = iasf_search.load_space(write_space({"metrics": {"batch": 64, "record": {"persistence_h1": {"subsample": 50}}}}))
    assert space.metrics == {"persistence_h1": {"subsample": 50, "seed": 0}} and space.metrics_batch == 64
    assert space.resolved()["metrics"] == {"batch": 64, "record": {"persistence_h1": {"subsample": 50, "seed": 0}}}
    assert parse_space(space.resolved(), session_for(space).components, file="resolved.yaml").resolved() == space.resolved()
    assert iasf_search.load_space(write_space({"metrics": {"record": []}})).metrics == {}


def test_metrics_named_by_objectives_and_constraints_are_recorded_with_their_direction_and_bounds(write_space):
    space = iasf_search.load_space(write_space({
        "metrics": {"record": []},
        "objectives": [{"metric": "accuracy"}, {"metric": "intrinsic_dimension"}, {"metric": "effective_rank"}],
        "constraints": {"oversmoothing": {"min": -0.5, "max": 0.9}, "params": {"min": 100, "max": 50000}}}))
    assert set(space.metrics) == {"intrinsic_dimension", "effective_rank", "oversmoothing"}
    assert space.directions == ["maximize", "minimize", "maximize"]
    smoothing, params = space.constraints
    assert (smoothing.kind, smoothing.min, smoothing.max) == ("metric", -0.5, 0.9)
    assert smoothing.violation(0.95) == pytest.approx(0.05) and smoothing.violation(-0.7) == pytest.approx(0.2)
    assert smoothing.violation(0.0) < 0 and smoothing.feasible(0.0) and not smoothing.feasible(1.0)
    assert smoothing.broken(1.0) == "oversmoothing 1 > max 0.9" and smoothing.broken(0.5) == ""
    assert params.kind == "cost" and params.violation(200) < 0  # relative for a cost: 1 - value / min, value / max - 1
    assert params.violation(50) == pytest.approx(1 - 50 / 100) and params.violation(100000) == pytest.approx(1.0)
    assert space.resolved()["constraints"] == {"oversmoothing": {"min": -0.5, "max": 0.9}, "params": {"min": 100.0, "max": 50000.0}}


def test_a_metric_that_needs_a_missing_extra_is_refused_with_the_install_command(write_space, monkeypatch):
    from iasf_search.plugins import representation_metrics

    monkeypatch.setattr(representation_metrics.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SpaceError) as err:
        iasf_search.load_space(write_space({"metrics": ["persistence_h1"]}))
    assert "metrics.record.persistence_h1" in str(err.value)
    assert "pip install 'iasf-search[topology]'" in str(err.value)
    assert "persistence_h0" not in iasf_search.load_space(write_space()).metrics  # not a default: no error without it


# Each case: (id, set, drop, raw text, expected key path, fragments the message must contain).
BAD_FILES = [
    ("misspelt-top-key", {"manifld": {"nodes": 1}}, [], None, "manifld", ["did you mean 'manifold'"]),
    ("unknown-op", {"manifold.ops": {"atention": {"heads": 2}, "mlp": None}}, [], None, "manifold.ops.atention",
     ["did you mean 'attention'"]),
    ("unknown-pattern", {"manifold.ops": {"attention": {"heads": 2, "pattern": ["ful", "local"]}}}, [], None,
     "manifold.ops.attention.pattern[0]", ["did you mean 'full'"]),
    ("missing-name", None, ["name"], None, "name", ["missing"]),
    ("bad-name-characters", {"name": "my study!"}, [], None, "name", ["letters, digits"]),
    ("empty-choice-list", {"manifold.width": []}, [], None, "manifold.width", ["empty"]),
    ("low-above-high", {"training.lr": {"low": 0.01, "high": 0.001}}, [], None, "training.lr", ["low <= high"]),
    ("unknown-dataset", {"task.dataset": "digts"}, [], None, "task.dataset", ["did you mean 'digits'"]),
    ("unknown-sampler", {"search.sampler": "rando"}, [], None, "search.sampler", ["did you mean 'random'"]),
    ("unknown-pruner", {"search.pruner": "medain"}, [], None, "search.pruner", ["did you mean 'median'"]),
    ("heads-do-not-divide-width", {"manifold.width": [8, 12], "manifold.ops": {"attention": {"heads": [2, 8]}}}, [], None,
     "manifold.ops.attention.heads", ["8 heads do not divide width 12"]),
    ("split-too-large", {"task.split": {"val": 0.5, "test": 0.45}}, [], None, "task.split", ["at least 10%"]),
    ("unknown-op-parameter", {"manifold.ops": {"conv": {"kernal": 3}}}, [], None, "manifold.ops.conv.kernal",
     ["did you mean 'kernel'"]),
    ("unknown-manifold-key", {"manifold.widht": [8]}, [], None, "manifold.widht", ["did you mean 'width'"]),
    ("no-ops", {"manifold.ops": []}, [], None, "manifold.ops", ["non-empty list"]),
    ("unknown-fusion", {"manifold.fusions": ["sum", "concatt"]}, [], None, "manifold.fusions.concatt",
     ["did you mean 'concat'"]),
    ("unknown-metric", {"objectives": [{"metric": "acuracy"}]}, [], None, "objectives[0].metric",
     ["did you mean 'accuracy'"]),
    ("unknown-training-key", {"training.epoch": 3}, [], None, "training.epoch", ["did you mean 'epochs'"]),
    ("invalid-yaml", None, [], "name: tiny\nmanifold:\n  width: [8, 16\n  nodes: 1\n", "", ["not valid YAML", "line "]),
    ("not-a-mapping", None, [], "- just\n- a list\n", "", ["YAML mapping"]),
    ("fusion-heads-do-not-divide-width", {"manifold.width": [8, 16], "manifold.fusions": {"cross_attention": {"heads": 3}}},
     [], None, "manifold.fusions.cross_attention.heads", ["3 heads do not divide width 8"]),
    ("nan-learning-rate", {"training.lr": float("nan")}, [], None, "training.lr", ["finite"]),
    ("exponent-without-dot", {"training.lr": "1e-3"}, [], None, "training.lr", ["YAML reads 1e-3 as a string", "1.0e-3"]),
    ("even-pool-kernel", {"manifold.ops": {"pool": {"kernel": [3, 4]}}}, [], None, "manifold.ops.pool.kernel[1]", ["odd"]),
    ("heads-do-not-divide-width-interval", {"manifold.width": {"low": 8, "high": 12, "step": 2},
                                            "manifold.ops": {"attention": {"heads": 4}}}, [], None,
     "manifold.ops.attention.heads", ["4 heads do not divide width 10"]),
    ("unknown-readout", {"manifold.readouts": ["mean", "maxx"]}, [], None, "manifold.readouts.maxx", ["did you mean 'max'"]),
    ("unknown-norm", {"manifold.norms": ["layer", "bach"]}, [], None, "manifold.norms.bach", ["did you mean 'batch'"]),
    ("repeated-readout", {"manifold.readouts": ["max", "max"]}, [], None, "manifold.readouts", ["repeat"]),
    ("no-readouts", {"manifold.readouts": []}, [], None, "manifold.readouts", ["non-empty list of readout names"]),
    ("unknown-readout-parameter", {"manifold.readouts": {"class_token": {"head": 2}}}, [], None,
     "manifold.readouts.class_token.head", ["did you mean 'heads'"]),
    ("class-token-heads-do-not-divide-width", {"manifold.width": [8, 12], "manifold.readouts": {"class_token": {"heads": [1, 8]}}},
     [], None, "manifold.readouts.class_token.heads", ["8 heads do not divide width 12"]),
]


@pytest.mark.parametrize(("set_", "drop", "text", "key", "fragments"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_space_file(write_space, set_, drop, text, key, fragments):
    path = write_space(set_, drop, filename="bad-space.yaml", text=text)
    with pytest.raises(SpaceError) as info:
        iasf_search.load_space(path)
    message = str(info.value)
    assert info.value.file == str(path)
    assert message.startswith(str(path))
    assert "bad-space.yaml" in message
    assert info.value.key == key
    if key:
        assert f": {key}: " in message
    for fragment in fragments:
        assert fragment in message


def test_invalid_yaml_names_the_line(write_space):
    path = write_space(text="name: tiny\nmanifold:\n  width: [8, 16\n  nodes: 1\n")
    with pytest.raises(SpaceError, match=r"not valid YAML: line \d+, column \d+"):
        iasf_search.load_space(path)


def test_missing_file_is_bad_input(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(BadInput) as info:
        iasf_search.load_space(missing)
    assert "nope.yaml" in str(info.value)
    assert "no such space file" in str(info.value)


def test_unknown_plugin_in_space_file(write_space):
    path = write_space({"plugins": ["plugin_samples.does_not_exist"]})
    with pytest.raises(BadInput, match="cannot load plugin module 'plugin_samples.does_not_exist' \\(from space file\\)"):
        iasf_search.load_space(path)


def test_plugins_must_be_a_list_of_names(write_space):
    path = write_space({"plugins": "plugin_samples.scale_op"})
    with pytest.raises(SpaceError) as info:
        iasf_search.load_space(path)
    assert info.value.key == "plugins"
