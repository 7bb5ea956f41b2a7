"""The plugin-author test kit, run over every registered built-in, and against broken components."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from iasf_search.components import BuildContext, Fusion, NodeOp, Norm, Readout
from iasf_search.plugin_manager import load_components
from iasf_search.testing import (
    ContractError,
    check_aux_objective,
    check_cost_model,
    check_dataset,
    check_fusion,
    check_norm,
    check_op,
    check_readout,
    check_stem,
    sample_configs,
)

COMPONENTS = load_components(autoload=False)
SAMPLE_SHAPES = {"image": (1, 8, 8), "sequence": (40, 1), "text": (12,)}


@pytest.mark.parametrize("name", COMPONENTS.ops.names())
def test_builtin_ops_pass_the_kit(name):
    check_op(COMPONENTS.ops.get(name))


@pytest.mark.parametrize("name", COMPONENTS.fusions.names())
def test_builtin_fusions_pass_the_kit(name):
    check_fusion(COMPONENTS.fusions.get(name))


@pytest.mark.parametrize("name", COMPONENTS.readouts.names())
def test_builtin_readouts_pass_the_kit(name):
    check_readout(COMPONENTS.readouts.get(name))


@pytest.mark.parametrize("name", COMPONENTS.norms.names())
def test_builtin_norms_pass_the_kit(name):
    check_norm(COMPONENTS.norms.get(name))


@pytest.mark.parametrize("name", COMPONENTS.stems.names())
def test_builtin_stems_pass_the_kit(name):
    check_stem(COMPONENTS.stems.get(name), SAMPLE_SHAPES[name], integer_inputs=50 if name == "text" else None)


@pytest.mark.parametrize("name", COMPONENTS.datasets.names())
def test_builtin_datasets_pass_the_kit(name):
    dataset = COMPONENTS.datasets.get(name)
    options = {k: p.default for k, p in dataset.params.items()}
    if name == "mnist1d":
        options["samples"] = 1000  # a quarter of the default: faster, same code path
    if name in ("text_file", "timeseries_file", "cifar10", "image_folder"):
        pytest.skip("reads a user's files: covered with written files in tests/plugins/test_text.py, test_timeseries.py and "
                    "test_datasets.py")
    check_dataset(dataset, options)


@pytest.mark.parametrize("name", COMPONENTS.aux_objectives.names())
def test_builtin_aux_objectives_pass_the_kit(name, fused_model):
    check_aux_objective(COMPONENTS.aux_objectives.get(name), fused_model, torch.randn(5, 1, 8, 8), torch.arange(5))


@pytest.mark.parametrize("name", COMPONENTS.cost_models.names())
def test_builtin_cost_models_pass_the_kit(name, fused_model):
    check_cost_model(COMPONENTS.cost_models.get(name), fused_model, torch.randn(3, 1, 8, 8))


def test_sample_configs_cover_every_attention_pattern():
    patterns = {c["pattern"] for c in sample_configs(COMPONENTS.ops.get("attention"))}
    assert patterns == {"full", "local", "dilated", "topk"}


class _Shrink(NodeOp):
    name = "shrink"

    def build(self, config, ctx: BuildContext) -> nn.Module:
        return nn.Linear(ctx.width, ctx.width // 2)


class _Detached(NodeOp):
    name = "detached"

    def build(self, config, ctx: BuildContext) -> nn.Module:
        class Detach(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = nn.Linear(ctx.width, ctx.width)

            def forward(self, x):
                return self.w(x.detach()) * 0 + torch.randn_like(x)

        return Detach()


class _FirstOnly(Fusion):
    name = "first_only"

    def build(self, config, n_inputs, ctx):
        class First(nn.Module):
            def forward(self, xs):
                return torch.cat(xs, dim=-1)

        return First()


def test_kit_names_an_op_that_changes_the_shape():
    with pytest.raises(ContractError, match=r"_Shrink 'shrink' with \{\}: maps \(1, 16, 8\) to \(1, 16, 4\)"):
        check_op(_Shrink())


def test_kit_names_an_op_that_cuts_the_gradient_or_is_random():
    with pytest.raises(ContractError, match="'detached'.*(no gradient flows back|different outputs)"):
        check_op(_Detached())


def test_kit_names_a_fusion_that_changes_the_shape():
    with pytest.raises(ContractError, match="'first_only'.*must keep"):
        check_fusion(_FirstOnly())


class _Undeclared(Readout):
    """Returns the mean and the max but declares the default F = D."""

    name = "undeclared"

    def build(self, config, ctx):
        class Both(nn.Module):
            def forward(self, x):
                return torch.cat([x.mean(1), x.amax(1)], dim=-1)

        return Both()


class _Pooling(Norm):
    """Pools the tokens away: not a norm."""

    name = "pooling"

    def build(self, config, ctx):
        class Pool(nn.Module):
            def forward(self, x):
                return x.mean(1, keepdim=True)

        return Pool()


def test_kit_names_a_readout_whose_features_are_not_what_it_declares():
    with pytest.raises(ContractError, match=r"_Undeclared 'undeclared' with \{\}: maps \(1, 16, 8\) \(grid \(4, 4\)\) to \(1, 16\), "
                                            r"expected \(1, 8\)"):
        check_readout(_Undeclared())


def test_kit_names_a_norm_that_changes_the_shape():
    with pytest.raises(ContractError, match="'pooling'.*must keep"):
        check_norm(_Pooling())


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
