"""``search.enqueue``: architectures turned into the parameters that sample them, checked at load time,
evaluated first and once."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import run

import iasf_search
from iasf_search import graph as arch
from iasf_search.errors import BadInput
from iasf_search.params import Range
from iasf_search.search.enqueue import ENQUEUED, NotInSpace, graph_params, middle
from iasf_search.session import open_session

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


@pytest.mark.parametrize("name", ["vision.yaml", "sequence.yaml", "timeseries.yaml", "text.yaml"])
def test_every_sampled_architecture_replays_to_itself(name):
    session = open_session(SPACES / name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        graph = arch.sample_graph(trial, session.space, session.components)
        params = graph_params(graph, session.space, session.components)
        assert params == {k: v for k, v in trial.params.items() if k in params}  # the values the sampler drew
        replayed = arch.sample_graph(optuna.trial.FixedTrial(params), session.space, session.components)
        assert arch.canonical_hash(replayed) == arch.canonical_hash(graph)
        study.tell(trial, 0.0)


def test_readouts_and_norms_replay_too(make_session):
    session = make_session({"manifold.readouts": ["mean", "max", "class_token"], "manifold.norms": ["layer", "batch"]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        graph = arch.sample_graph(trial, session.space, session.components)
        seen.add(graph.nodes[arch.OUTPUT]["readout"])
        params = graph_params(graph, session.space, session.components)
        replayed = arch.sample_graph(optuna.trial.FixedTrial(params), session.space, session.components)
        assert arch.same_architecture(replayed, graph)
        study.tell(trial, 0.0)
    assert len(seen) == 3


def test_what_the_space_cannot_sample_is_named(make_session):
    session = make_session()
    graph = session.components.architectures.get("cnn").graph(session.space, session.components)
    wide = graph.copy()
    wide.graph["width"] = 64
    with pytest.raises(NotInSpace, match=r"arch.width = 64 is not offered \(the space allows \[8, 16\]\)"):
        graph_params(wide, session.space, session.components)
    other_op = graph.copy()
    other_op.nodes["n0"]["op"] = "attention"
    other_op.nodes["n0"]["config"] = {"heads": 2, "pattern": "full"}
    with pytest.raises(NotInSpace, match=r"n0.op = 'attention' is not offered"):
        graph_params(other_op, session.space, session.components)


def test_middle_of_a_range():
    assert middle(Range(choices=(32, 64))) == 32
    assert middle(Range(low=1e-3, high=1e-1, log=True)) == pytest.approx(1e-2)
    assert middle(Range(low=2, high=9, is_int=True)) == 6 and middle(Range(fixed=0.1)) == 0.1


def test_enqueued_architectures_run_first_and_once(capsys, tmp_path, write_space, export_search):
    folder, _, url = export_search
    rc, _, err = run(capsys, "export", "--storage", url, "--study", "tiny", "--out", str(tmp_path / "exported"))
    assert rc == 0, err
    exported = arch.from_json((tmp_path / "exported" / "arch.json").read_text(encoding="utf-8"))
    space = write_space({"manifold.ops": {"attention": {"heads": 2, "pattern": ["full", "local"], "window": 3},
                                          "conv": {"kernel": 3}, "mlp": {"expansion": 2}},
                         "manifold.width": [8, 16], "training.lr": {"low": 0.001, "high": 0.01, "log": True},
                         "search.enqueue": ["cnn", "transformer", str(tmp_path / "exported")]})
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    rc, _, err = run(capsys, "--space", str(space), "--storage", storage, "--trials", "4")
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage=storage)
    first = sorted(study.trials, key=lambda t: t.number)[:3]
    assert [t.user_attrs.get(ENQUEUED) for t in first] == ["cnn", "transformer", str(tmp_path / "exported")]
    assert "enqueued" not in study.trials[3].user_attrs
    session = iasf_search.open_session(space)
    expected = [session.components.architectures.get(n).graph(session.space, session.components) for n in ("cnn", "transformer")]
    for t, graph in zip(first, [*expected, exported], strict=True):
        assert t.user_attrs["arch_hash"] == arch.canonical_hash(graph)
    assert first[0].params["train.lr"] == pytest.approx((0.001 * 0.01) ** 0.5)  # a baseline trains at the range's middle
    assert first[2].params["train.lr"] == json.loads((tmp_path / "exported" / "model.json").read_text())["train_config"]["lr"]

    rc, _, err = run(capsys, "--space", str(space), "--storage", storage, "--trials", "6")  # resumed: not queued again
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert sum(ENQUEUED in t.user_attrs for t in study.trials) == 3 and len(study.trials) == 6


def test_an_infeasible_entry_stops_the_search_before_anything_is_stored(capsys, tmp_path, write_space):
    space = write_space({"search.enqueue": ["cnn"], "constraints": {"params": {"max": 10}}})
    storage = tmp_path / "x.db"
    rc, out, err = run(capsys, "--space", str(space), "--storage", f"sqlite:///{storage}", "--trials", "2")
    assert rc == 2 and "Traceback" not in err
    assert err.strip().startswith(f"iasf-search: error: {space}: search.enqueue[0]: cnn is infeasible: params ")
    assert "> max 10 (constraints); remove it from search.enqueue or relax the constraint" in err


@pytest.mark.parametrize(("entries", "fragments"), [
    (["transformer"], ["search.enqueue[0]: transformer: needs the op(s) attention in manifold.ops"]),
    (["resnet"], ["search.enqueue[0]: resnet: neither a registered baseline architecture (", "cnn", "transformer"]),
    (["cnn", "missing/arch.json"], ["search.enqueue[1]: missing/arch.json: no such file missing/arch.json"]),
    ("cnn", ["search.enqueue: expected a list of baseline architecture names"]),
])
def test_bad_entries_are_load_time_errors(write_space, entries, fragments):
    path = write_space({"search.enqueue": entries})
    with pytest.raises(BadInput) as err:
        iasf_search.load_space(path)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert str(path) in str(err.value)


def test_the_resolved_space_keeps_the_entries(make_space):
    space = make_space({"search.enqueue": ["cnn"]})
    assert space.resolved()["search"]["enqueue"] == ["cnn"]
    assert yaml.safe_load(yaml.safe_dump(space.resolved()))["search"]["enqueue"] == ["cnn"]


@pytest.mark.parametrize(("model_json", "fragment"), [
    ("[1, 2]", "is not an export's model.json (a JSON object whose train_config is an object)"),
    ('{"train_config": [1]}', "is not an export's model.json"),
    ("{not json", "is not readable JSON (JSONDecodeError"),
])
def test_a_tampered_model_json_beside_an_arch_json_is_one_line(write_space, export_search, tmp_path, model_json, fragment):
    from iasf_search.cli import main as cli_main

    _, _, url = export_search
    exported = tmp_path / "exported"
    assert cli_main(["export", "--storage", url, "--study", "tiny", "--out", str(exported)]) == 0
    (exported / "model.json").write_text(model_json, encoding="utf-8")
    path = write_space({"manifold.ops": {"attention": {"heads": 2, "pattern": ["full", "local"], "window": 3},
                                         "conv": {"kernel": 3}}, "manifold.width": [8, 16], "search.enqueue": [str(exported)]})
    with pytest.raises(BadInput) as err:
        iasf_search.load_space(path)
    assert f"search.enqueue[0]: {exported}: {exported / 'model.json'} " in str(err.value) and fragment in str(err.value)
