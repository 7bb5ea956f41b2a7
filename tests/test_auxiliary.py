"""Auxiliary training objectives: meta-representation losses and the CDS score, through the hook."""

from __future__ import annotations

import optuna
import pytest
import torch

from iasf_search.build import build_model
from iasf_search.cli import main
from iasf_search.errors import SpaceError
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.cds import branch_alignment
from iasf_search.testing import check_aux_objective, check_cost_model
from iasf_search.train import AuxTerm, train

COMPONENTS = load_components(autoload=False)
CPU = torch.device("cpu")


@pytest.mark.parametrize("name", COMPONENTS.aux_objectives.names())
def test_builtin_aux_objectives_pass_the_kit(name, fused_model):
    check_aux_objective(COMPONENTS.aux_objectives.get(name), fused_model, torch.randn(5, 1, 8, 8), torch.arange(5))


def test_cds_of_a_sum_fusion_is_perfectly_aligned(make_graph):
    """A sum hands the same gradient to each input: cosine 1, inner product = squared norm."""
    torch.manual_seed(0)
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}},
                        {"op": "conv", "config": {"kernel": 3, "dilation": 1}, "inputs": ["input"]},
                        {"op": "mlp", "config": {"expansion": 2}, "inputs": ["n0", "n1"], "fusion": "sum"}], width=16)
    model = build_model(graph, COMPONENTS, (1, 8, 8), 10)
    forward = model.run(torch.randn(4, 1, 8, 8), capture_fusion_inputs=True)
    assert list(forward.fusion_inputs) == ["n2"]
    (cos, inner), = branch_alignment(forward, torch.arange(4), create_graph=False).values()
    assert float(cos) == pytest.approx(1.0, abs=1e-5)
    forward = model.run(torch.randn(4, 1, 8, 8), capture_fusion_inputs=True)
    g = torch.autograd.grad(torch.nn.functional.cross_entropy(forward.logits, torch.arange(4)), forward.fusion_inputs["n2"][0],
                            retain_graph=True)[0]
    (_, inner), = branch_alignment(forward, torch.arange(4), create_graph=False).values()
    assert float(inner) == pytest.approx(float(g.reshape(4, -1).pow(2).sum(-1).mean()), rel=1e-4)


def test_concat_branches_are_not_identical(fused_model):
    forward = fused_model.run(torch.randn(6, 1, 8, 8), capture_fusion_inputs=True)
    (cos, _), = branch_alignment(forward, torch.arange(6), create_graph=False).values()
    assert -1.0 <= float(cos) < 0.999


def test_zero_weight_leaves_training_unchanged_and_positive_weight_changes_it(make_graph, digits, train_config):
    def run(weight):
        torch.manual_seed(0)
        graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}, {"op": "conv", "config": {"kernel": 3, "dilation": 1}}],
                           width=16)
        model = build_model(graph, COMPONENTS, digits.sample_shape, digits.num_classes)
        objective = COMPONENTS.aux_objectives.get("reconstruction")
        config = {"weight": weight, "levels": "all"}
        module = objective.build(config, model.run(digits.x_train[:2]), 16) if weight is not None else None
        aux = [AuxTerm(objective, config, module)] if weight is not None else []
        if module is not None:
            model.aux_modules = torch.nn.ModuleList([module])
        return train(model, digits, train_config, device=CPU, seed=0, aux=aux).history

    plain = run(None)
    assert run(0.0) == plain
    assert run(1.0) != plain


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


# -- cost models ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPONENTS.cost_models.names())
def test_builtin_cost_models_pass_the_kit(name, fused_model):
    check_cost_model(COMPONENTS.cost_models.get(name), fused_model, torch.randn(3, 1, 8, 8))


def test_kit_catches_a_cost_model_that_trains_the_model(fused_model):
    from iasf_search.components import CostModel
    from iasf_search.testing import ContractError

    class Meddler(CostModel):
        name = "meddler"

        def measure(self, model, example, device, options):
            with torch.no_grad():
                next(model.parameters()).add_(1.0)
            return 1.0

    with pytest.raises(ContractError, match="'meddler'.*changed the model's parameters"):
        check_cost_model(Meddler(), fused_model, torch.randn(3, 1, 8, 8))


@pytest.mark.parametrize("levels", ["all", "first", "last"])
def test_meta_representation_levels(levels, fused_model):
    forward = fused_model.run(torch.randn(3, 1, 8, 8))
    objective = COMPONENTS.aux_objectives.get("reconstruction")
    module = objective.build({"weight": 0.1, "levels": levels}, forward, 16)
    loss = objective.loss(module, {"weight": 0.1, "levels": levels}, forward, torch.arange(3))
    loss.backward()
    with_grad = sorted(n for n in forward.order if module[n].weight.grad is not None)
    assert with_grad == {"all": ["n0", "n1", "n2"], "first": ["n0"], "last": ["n2"]}[levels]


def test_flops_of_an_mlp_node_match_the_formula(make_graph):
    """Linear layers cost 2 * in * out FLOPs per token; the stem conv and head are counted too."""
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}], width=8,
                       stem={"patch": 2, "overlap": False, "position": "none"})
    model = build_model(graph, COMPONENTS, (1, 8, 8), 10).eval()
    flops = COMPONENTS.cost_models.get("flops").measure(model, torch.zeros(4, 1, 8, 8), CPU, {})
    tokens = 16
    stem = 2 * tokens * (1 * 2 * 2) * 8  # 2x2 conv, 1 -> 8 channels, per token
    mlp = 2 * tokens * (8 * 16 + 16 * 8)
    head = 2 * 8 * 10
    assert flops == stem + mlp + head


def test_flops_count_attention(make_graph):
    def flops(op):
        graph = make_graph([op], width=8, stem={"patch": 2, "overlap": False, "position": "none"})
        model = build_model(graph, COMPONENTS, (1, 8, 8), 10).eval()
        return COMPONENTS.cost_models.get("flops").measure(model, torch.zeros(2, 1, 8, 8), CPU, {})

    attention = flops({"op": "attention", "config": {"heads": 2, "pattern": "full"}})
    projections_only = flops({"op": "mlp", "config": {"expansion": 2}})  # qkv+proj = 4 D^2 = mlp(2) FLOPs
    assert attention - projections_only == 2 * 2 * 16 * 16 * 8  # QK^T and AV: 2 matmuls of (T x T x D), 2 FLOPs each


def test_costs_are_recorded_and_usable_as_objectives(tmp_path, write_space, capsys):
    write_space({"costs": ["params"], "objectives": [{"metric": "accuracy"}, {"metric": "flops"}],
                 "search.sampler": "nsga2", "search.trials": 3})
    url = f"sqlite:///{tmp_path / 'costs.db'}"
    assert main(["--space", "tiny.yaml", "--storage", url]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="tiny", storage=url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in study.trials:
        assert t.user_attrs["cost.params"] == t.user_attrs["params"]
        assert t.values[1] == t.user_attrs["cost.flops"] > 0
    rc = main(["best", "--space", "tiny.yaml", "--storage", url])
    out = capsys.readouterr().out
    assert rc == 0 and "Pareto set" in out and "flops" in out


def test_cost_options_must_be_fixed(write_space):
    import iasf_search

    path = write_space({"costs": {"params": {}, "flops": {}}, "plugins": ["plugin_samples.every_hook"]})
    assert set(iasf_search.load_space(path).costs) == {"params", "flops"}
    path = write_space({"costs": {"tokens": {"scale": [1, 2]}}, "plugins": ["plugin_samples.every_hook"]})
    with pytest.raises(SpaceError, match="costs.tokens.scale: options here are fixed values"):
        iasf_search.load_space(path)
