"""The meta-representation objectives (plugins/meta_representation.py): reconstruction of the level below and
consistency of consecutive levels, over all, the first or the last node; recorded by a search."""

from __future__ import annotations

import optuna
import pytest
import torch
import torch.nn.functional as F

from iasf_search.cli import main
from iasf_search.errors import SpaceError
from iasf_search.plugin_manager import load_components

COMPONENTS = load_components(autoload=False)
RECONSTRUCTION = COMPONENTS.aux_objectives.get("reconstruction")
CONSISTENCY = COMPONENTS.aux_objectives.get("consistency")


@pytest.mark.parametrize("levels", ["all", "first", "last"])
def test_meta_representation_levels(levels, fused_model):
    forward = fused_model.run(torch.randn(3, 1, 8, 8))
    objective = COMPONENTS.aux_objectives.get("reconstruction")
    module = objective.build({"weight": 0.1, "levels": levels}, forward, 16)
    loss = objective.loss(module, {"weight": 0.1, "levels": levels}, forward, torch.arange(3))
    loss.backward()
    with_grad = sorted(n for n in forward.order if module[n].weight.grad is not None)
    assert with_grad == {"all": ["n0", "n1", "n2"], "first": ["n0"], "last": ["n2"]}[levels]


def test_search_records_aux_measurements(tmp_path, write_space, capsys):
    write_space({"manifold.nodes": 3, "manifold.max_in_degree": 2, "manifold.fusions": ["concat"],
                 "auxiliary": {"reconstruction": {"weight": [0.0, 0.2]}, "consistency": {}, "cds": {"weight": 0.1}},
                 "search.trials": 4})
    url = f"sqlite:///{tmp_path / 'aux.db'}"
    assert main(["--space", "tiny.yaml", "--storage", url]) == 0, capsys.readouterr().err
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for t in trials:
        aux = t.system_attrs["train_config"]["auxiliary"]
        assert aux["reconstruction"]["weight"] in (0.0, 0.2) and aux["cds"] == {"weight": 0.1}
        assert t.params["aux.reconstruction.weight"] == aux["reconstruction"]["weight"]
        assert t.user_attrs["aux.reconstruction"]["loss"] >= 0
        assert 0 <= t.user_attrs["aux.consistency"]["loss"] <= 2
        fusion_nodes = [k[: -len(".cosine")] for k in t.user_attrs["aux.cds"] if k.endswith(".cosine")]
        for node in fusion_nodes:
            assert -1 <= t.user_attrs["aux.cds"][f"{node}.cosine"] <= 1
        assert bool(fusion_nodes) == ("|concat" in t.user_attrs["summary"] or "out<" in t.user_attrs["summary"])
    assert any("cosine" in t.user_attrs["aux.cds"] for t in trials)


def test_unknown_auxiliary_objective_is_named(write_space):
    import iasf_search

    path = write_space({"auxiliary": {"reconstuction": {}}})
    with pytest.raises(SpaceError, match=r"auxiliary.reconstuction: unknown auxiliary objective \(did you mean 'reconstruction'\?\)"):
        iasf_search.load_space(path)


def test_reconstruction_is_the_mean_squared_error_to_the_level_below(fused_model):
    forward = fused_model.run(torch.randn(3, 1, 8, 8))
    assert forward.sources == {"n0": ["input"], "n1": ["input"], "n2": ["n0", "n1"], "output": ["n2"]}
    module = RECONSTRUCTION.build({"weight": 0.1, "levels": "all"}, forward, 16)
    assert sorted(module) == ["n0", "n1", "n2"]
    with torch.no_grad():
        for decoder in module.values():  # identity decoders: the loss compares the levels themselves
            decoder.weight.copy_(torch.eye(16))
            decoder.bias.zero_()
    values = forward.values
    expected = (F.mse_loss(values["n0"], values["input"]) + F.mse_loss(values["n1"], values["input"])
                + F.mse_loss(values["n2"], values["n0"])) / 3  # each node's FIRST input is the level below
    loss = RECONSTRUCTION.loss(module, {"weight": 0.1, "levels": "all"}, forward, torch.arange(3))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    first = RECONSTRUCTION.loss(module, {"weight": 0.1, "levels": "first"}, forward, torch.arange(3))
    assert first.item() == pytest.approx(F.mse_loss(values["n0"], values["input"]).item(), rel=1e-5)


def test_consistency_is_one_minus_the_cosine_of_token_means(fused_model):
    forward = fused_model.run(torch.randn(4, 1, 8, 8))
    loss = CONSISTENCY.loss(torch.nn.Module(), {"weight": 0.1, "levels": "last"}, forward, torch.arange(4))
    upper, lower = forward.values["n2"].mean(1), forward.values["n0"].mean(1)
    expected = 1 - F.cosine_similarity(upper, lower, dim=-1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0.0 <= CONSISTENCY.loss(torch.nn.Module(), {"weight": 0.1, "levels": "all"}, forward, torch.arange(4)).item() <= 2.0


def test_the_lower_level_gets_no_gradient_from_the_term(fused_model):
    """The level below is a target: only the upper level (and what computes it) is pulled towards it."""
    tokens = torch.randn(2, 16, 16, requires_grad=True)
    forward = fused_model.run(torch.randn(2, 1, 8, 8))
    forward.values["input"] = tokens  # the level below n0
    upper = forward.values["n0"] = tokens * 2.0 + 1.0
    for objective in (RECONSTRUCTION, CONSISTENCY):
        module = objective.build({"weight": 0.1, "levels": "first"}, forward, 16)
        loss = objective.loss(module, {"weight": 0.1, "levels": "first"}, forward, torch.arange(2))
        grad_tokens, grad_upper = torch.autograd.grad(loss, [tokens, upper], retain_graph=True)
        torch.testing.assert_close(grad_tokens, 2.0 * grad_upper)  # all of it flows through n0, none through the target


def test_declared_parameters_and_no_helper_for_consistency():
    assert RECONSTRUCTION.params["weight"].default == 0.1 and RECONSTRUCTION.params["levels"].choices == ("all", "first", "last")
    assert CONSISTENCY.build({}, None, 16).state_dict() == {}  # nothing to train


def test_consistency_measure_is_its_loss(fused_model):
    forward = fused_model.run(torch.randn(3, 1, 8, 8))
    config = {"weight": 0.1, "levels": "all"}
    measured = CONSISTENCY.measure(torch.nn.Module(), config, forward, torch.arange(3))
    assert measured == {"loss": pytest.approx(CONSISTENCY.loss(torch.nn.Module(), config, forward, torch.arange(3)).item())}
