"""The built-in readouts (plugins/readouts.py): what each computes from the output node's tokens and the
features it declares, each inside a model that trains, flatten over any token grid, sampling from
``manifold.readouts``, a search through the command line, and a plugin's own readout.
(The conformance kit over every registered readout: tests/test_testing.py; old graphs build and hash as
before: tests/test_build.py and tests/test_graph.py.)"""

from __future__ import annotations

import json

import optuna
import pytest
import torch

import iasf_search
from iasf_search import graph as arch
from iasf_search.build import build_model, count_parameters
from iasf_search.cli import main
from iasf_search.components import BuildContext, TokenLayout
from iasf_search.graph import OUTPUT
from iasf_search.params import parse_params
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.readouts import ClassAttention
from iasf_search.results.access import rebuild_trial_model, study_components
from iasf_search.results.artifacts import default_artifact_dir, open_artifact_store
from iasf_search.train import make_optimizer

COMPONENTS = load_components(autoload=False)
READOUTS = COMPONENTS.readouts
WIDTH = 8
CTX = BuildContext(width=WIDTH, layout=TokenLayout((2, 3)))
CASES = [("mean", {}), ("max", {}), ("mean_max", {}), ("class_token", {"heads": 2}), ("flatten", {})]
"""One configuration of every built-in readout."""


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 6, WIDTH, generator=torch.Generator().manual_seed(seed))  # (B, T, D) on the 2x3 grid


def with_readout(graph, name: str, config: dict | None = None):
    graph.nodes[OUTPUT].update(readout=name, readout_config=dict(config or {}))
    return graph


def test_builtin_readouts():
    assert READOUTS.names() == [name for name, _ in CASES]
    assert all(READOUTS.owner(n) == "iasf_search.plugins.readouts" for n in READOUTS)


def test_pooling_readouts_compute_what_they_say_and_declare_their_features():
    x = tokens()
    expected = {"mean": x.mean(1), "max": x.amax(1), "mean_max": torch.cat([x.mean(1), x.amax(1)], -1),
                "flatten": x.reshape(2, 6 * WIDTH)}
    for name, value in expected.items():
        readout = READOUTS.get(name)
        torch.testing.assert_close(readout.build({}, CTX)(x), value)
        assert readout.features({}, CTX) == value.shape[1]
        assert list(readout.build({}, CTX).parameters()) == []
    assert READOUTS.get("flatten").features({}, CTX) == 6 * WIDTH  # T from the layout: 2 x 3 tokens


def test_class_token_attends_over_every_token_in_any_order():
    torch.manual_seed(0)
    readout = READOUTS.get("class_token")
    module = readout.build({"heads": 2}, CTX)
    assert isinstance(module, ClassAttention) and module.heads == 2 and readout.features({"heads": 2}, CTX) == WIDTH
    x = tokens()
    out = module(x)
    assert out.shape == (2, WIDTH)
    torch.testing.assert_close(module(x[:, torch.randperm(6)]), out)  # a query over a set: order does not matter
    for t in range(6):  # every token is read
        changed = x.clone()
        changed[:, t, 0] += 1.0  # one channel (a constant added to a token is normalised away)
        assert not torch.allclose(module(changed), out), t
    assert not torch.allclose(module(tokens(1))[0], out[0])  # what it reads depends on the sample


def test_class_token_heads_must_divide_the_width():
    readout = READOUTS.get("class_token")
    with pytest.raises(ValueError, match="3 heads do not divide width 8"):
        readout.build({"heads": 3}, CTX)
    ranges = parse_params({"heads": [2, 3]}, dict(readout.params), "manifold.readouts.class_token", "class_token")
    assert readout.check_ranges(ranges, widths=(12,)) is None
    assert readout.check_ranges(ranges, widths=(8,)) == (
        "heads", "3 heads do not divide width 8 (manifold.width); choose heads that divide every width")


def test_describe_labels():
    assert [READOUTS.get(n).describe(c) for n, c in CASES] == ["mean", "max", "mean_max", "cls/h2", "flatten"]


@pytest.mark.parametrize(("name", "config"), CASES, ids=[c[0] for c in CASES])
def test_every_readout_heads_a_model_that_trains_a_step(make_graph, digits, train_config, name, config):
    graph = with_readout(make_graph([{"op": "mlp", "config": {"expansion": 2}},
                                     {"op": "conv", "config": {"kernel": 3, "dilation": 1}}], width=WIDTH), name, config)
    torch.manual_seed(0)
    model = build_model(graph, COMPONENTS, digits.sample_shape, digits.num_classes)
    ctx = BuildContext(width=WIDTH, layout=model.layout)
    assert model.head.in_features == READOUTS.get(name).features(config, ctx) and model.width == WIDTH
    x, y = digits.x_train[:64], digits.y_train[:64]
    assert model(x).shape == (64, digits.num_classes)
    optimizer = make_optimizer(model, train_config)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []  # the readout's own parameters too
    optimizer.step()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters() if n.startswith(("readout.", "head.")))
    assert torch.isfinite(model(x)).all()


def test_the_cases_cover_every_builtin_readout():
    assert {name for name, _ in CASES} == set(READOUTS)


FLATTEN_INPUTS = [
    ("image", (1, 8, 8), 2, (4, 4)),
    ("image", (3, 10, 7), 3, (4, 3)),  # padded to a multiple of the patch
    ("sequence", (40, 1), 1, (40,)),
    ("sequence", (151, 2), 4, (38,)),
    ("sequence", (7, 3), 4, (2,)),
]


@pytest.mark.parametrize(("modality", "sample_shape", "patch", "grid"), FLATTEN_INPUTS,
                         ids=[f"{m}-{'x'.join(map(str, s))}-p{p}" for m, s, p, _ in FLATTEN_INPUTS])
def test_flatten_serves_image_grids_and_sequences_of_any_length(make_graph, modality, sample_shape, patch, grid):
    graph = with_readout(make_graph([{"op": "mlp", "config": {"expansion": 1}}], width=WIDTH, modality=modality,
                                    stem={"patch": patch, "overlap": False, "position": "learned"}), "flatten")
    model = build_model(graph, COMPONENTS, sample_shape, 5)
    assert model.layout.shape == grid
    assert model.head.in_features == model.layout.length * WIDTH
    assert model(torch.randn(3, *sample_shape)).shape == (3, 5)


def test_flatten_over_text_tokens(make_graph):
    graph = with_readout(make_graph([{"op": "mlp", "config": {"expansion": 1}}], width=WIDTH, modality="text",
                                    stem={"vocabulary": 50, "position": "learned"}), "flatten")
    model = build_model(graph, COMPONENTS, (13,), 3)
    assert model.head.in_features == 13 * WIDTH
    assert model(torch.randint(0, 50, (2, 13))).shape == (2, 3)


def test_a_space_offering_several_readouts_samples_them(make_space):
    space = make_space({"manifold.readouts": {"mean": None, "max": None, "class_token": {"heads": [1, 2]}, "flatten": None}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        graph = arch.sample_graph(trial, space, COMPONENTS)
        out = graph.nodes[OUTPUT]
        seen.add(out["readout"])
        assert trial.params["output.readout"] == out["readout"]
        assert ("output.class_token.heads" in trial.params) == (out["readout"] == "class_token")  # only when chosen
        assert out["readout_config"] == ({"heads": trial.params["output.class_token.heads"]} if out["readout"] == "class_token" else {})
        study.tell(trial, 0.0)
    assert len(seen) > 1 and seen <= set(space.readouts)


def test_the_default_space_samples_no_readout(make_space):
    """``[mean]`` alone: nothing is sampled and nothing stored, so graphs are what they were before readouts."""
    trial = optuna.create_study().ask()
    graph = arch.sample_graph(trial, make_space(), COMPONENTS)
    assert "readout" not in graph.nodes[OUTPUT] and not any(p.startswith("output.") for p in trial.params)
    one = optuna.create_study().ask()
    graph = arch.sample_graph(one, make_space({"manifold.readouts": {"class_token": {"heads": 2}}}), COMPONENTS)
    assert graph.nodes[OUTPUT]["readout"] == "class_token" and "output.readout" not in one.params  # one choice: not a parameter


def test_a_search_over_every_readout_and_norm_completes(tmp_path, write_space, capsys):
    """The command line end to end on the tiny space; every trial's checkpoint rebuilds its model."""
    write_space({"manifold.readouts": ["mean", "max", "mean_max", "class_token", "flatten"], "manifold.norms": ["layer", "batch"],
                 "artifacts": {"checkpoints": "all", "heatmaps": "none"}})
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["--space", "tiny.yaml", "--storage", url, "--trials", "8", "-q"]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="tiny", storage=url)
    trials = study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 8
    graphs = [arch.from_json(t.system_attrs["architecture"]) for t in trials]
    readouts = {g.nodes[OUTPUT]["readout"] for g in graphs}
    norms = {g.nodes[n].get("norm") for g in graphs for n in arch.hidden_nodes(g)}
    assert len(readouts) > 1 and norms == {"layer", "batch"}
    for t, g in zip(trials, graphs, strict=True):
        assert ("head=" in t.user_attrs["summary"]) == (g.nodes[OUTPUT]["readout"] != "mean")
    store = open_artifact_store(default_artifact_dir(url), create=False)
    components = study_components(study)
    for t in trials:
        model = rebuild_trial_model(study, t, store, components)
        assert count_parameters(model) == t.user_attrs["params"]
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert json.dumps(study.user_attrs["space"]["manifold"]["readouts"])  # recorded with the study


def test_a_plugin_registers_its_own_readout(make_graph, write_space):
    """``plugin_samples.every_hook`` registers ``first_token``: a space lists it, the head reads the first token only."""
    session = iasf_search.open_session(write_space({"plugins": ["plugin_samples.every_hook"],
                                                    "manifold.readouts": ["first_token", "mean"]}))
    components = session.components
    assert components.readouts.owner("first_token") == "plugin_samples.every_hook"
    assert list(session.space.readouts) == ["first_token", "mean"]
    graph = with_readout(make_graph([{"op": "mlp", "config": {"expansion": 1}}], width=WIDTH), "first_token")
    torch.manual_seed(0)
    model = build_model(graph, components, (1, 8, 8), 10).eval()
    assert model.head.in_features == WIDTH
    tokens = model.run(torch.randn(2, 1, 8, 8)).values[OUTPUT]
    torch.testing.assert_close(model.head(model.readout(model.norm(tokens))), model.head(model.norm(tokens)[:, 0]))
    assert "head=first_token" in arch.summary(graph)


@pytest.mark.parametrize("name", ["mean", "max", "mean_max", "class_token"])
def test_a_masked_readout_reads_the_real_tokens_only(name):
    """Padded tokens, whatever they hold, do not change a masked readout's output: it equals the readout of the real tokens."""
    readout = COMPONENTS.readouts.get(name)
    ctx = BuildContext(width=WIDTH, layout=TokenLayout((12,)))
    torch.manual_seed(0)
    module = readout.build({"heads": 2} if name == "class_token" else {}, ctx).eval()
    real = torch.randn(3, 5, WIDTH)
    padded = torch.cat([real, 100 * torch.randn(3, 7, WIDTH)], dim=1)  # 7 padded tokens of large values
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[:, :5] = True
    with torch.no_grad():
        torch.testing.assert_close(module(padded, mask=mask), module(real), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(module(padded), module(real), atol=1e-3)  # unmasked, the padding would count
