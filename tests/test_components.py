"""The contracts plugins implement (iasf_search.components): token layouts, the defaults every component
inherits, task data, measurements, and the flags the engine reads."""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest
import torch
from torch import nn

from iasf_search.components import (
    AuxObjective,
    BuildContext,
    Component,
    CostModel,
    Dataset,
    Fusion,
    Measurement,
    NodeOp,
    Norm,
    PrunerFactory,
    Readout,
    SamplerFactory,
    SpaceSection,
    SplitSpec,
    Stem,
    TaskData,
    TokenLayout,
)
from iasf_search.params import Param


def test_token_layout_length_and_row_major_coordinates():
    layout = TokenLayout((2, 3))
    assert layout.length == 6
    assert layout.coordinates().tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert TokenLayout((4,)).coordinates().tolist() == [[0], [1], [2], [3]]
    assert TokenLayout((4,)).length == 4 and TokenLayout(()).length == 1
    assert TokenLayout((2, 3)) == TokenLayout((2, 3)) and hash(TokenLayout((2, 3))) == hash(TokenLayout((2, 3)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.shape = (3, 2)
    assert BuildContext(width=8, layout=layout) == BuildContext(8, TokenLayout((2, 3)))


class _Op(NodeOp):
    name = "op"
    params = {"width": Param([1, 2], int), "kind": Param("a", str, choices=("a", "b"))}

    def build(self, config, ctx):
        return nn.Identity()


def test_component_defaults_sample_every_parameter_and_describe_values():
    asked = []
    config = _Op().sample({"width": None, "kind": None}, lambda name: asked.append(name) or f"<{name}>")
    assert config == {"width": "<width>", "kind": "<kind>"} and asked == ["width", "kind"]
    assert _Op().describe({"width": 2, "kind": "b"}) == "op(2,b)"
    assert _Op().describe({}) == "op"
    assert _Op().check_ranges({}, widths=(8,)) is None
    assert _Op.residual is True and Component.params == {} and Component.description == ""


@pytest.mark.parametrize("contract", [NodeOp, Fusion, Readout, Norm, Stem, Dataset, CostModel, SamplerFactory, PrunerFactory,
                                      AuxObjective])
def test_contracts_without_their_methods_cannot_be_instantiated(contract):
    incomplete = type("Incomplete", (contract,), {"name": "incomplete"})
    with pytest.raises(TypeError, match="abstract"):
        incomplete()


def test_a_readout_declares_the_width_as_its_features_by_default():
    class Pool(Readout):
        name = "pool"

        def build(self, config, ctx):
            return nn.Identity()

    assert Pool().features({}, BuildContext(width=12, layout=TokenLayout((3, 5)))) == 12


def test_a_space_section_needs_only_a_name_and_params():
    section = type("Logger", (SpaceSection,), {"name": "logger", "params": {"every": Param(1, int)}})()
    assert section.name == "logger" and set(section.params) == {"every"}


def _task(n: int = 6) -> TaskData:
    x = torch.arange(n * 4, dtype=torch.float32).reshape(n, 2, 2)
    y = torch.arange(n) % 2
    return TaskData(x, y, x[:2], y[:2], x[:3], y[:3], num_classes=2, modality="image", info={"k": 1},
                    augment=partial(torch.flip, dims=[-1]))


def test_task_data_sample_shape_and_copy_to_a_device():
    data = _task()
    assert data.sample_shape == (2, 2)
    moved = data.to("cpu")
    assert moved is not data and isinstance(moved, TaskData)
    assert all(torch.equal(getattr(moved, f), getattr(data, f)) for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"))
    assert (moved.num_classes, moved.modality, moved.info, moved.augment) == (2, "image", {"k": 1}, data.augment)
    assert TaskData(data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test, 2, "image").augment is None


def test_split_spec_is_a_frozen_value():
    default = SplitSpec()
    assert 0 < default.val < 1 and 0 < default.test < 1 and isinstance(default.seed, int)
    assert SplitSpec(val=0.2) != default and SplitSpec(val=0.2) == SplitSpec(val=0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.val = 0.5


class _Half(AuxObjective):
    name = "half"

    def loss(self, module, config, forward, targets):
        return torch.tensor(0.5, requires_grad=True) * 1.0


def test_aux_objective_defaults():
    objective = _Half()
    helper = objective.build({}, None, 8)
    assert isinstance(helper, nn.Module) and list(helper.parameters()) == []
    assert objective.measure(helper, {}, None, torch.arange(2)) == {"loss": 0.5}
    assert not objective.needs_fusion_inputs and not objective.needs_double_backward


def test_measurement_and_cost_model_defaults():
    m = Measurement(1.5)
    assert m.value == 1.5 and m.details == {}
    assert Measurement(2.0, {"repeats": 3}).details == {"repeats": 3}
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.value = 2.0
    assert CostModel.deterministic is True and CostModel.unit == ""
    assert PrunerFactory.multi_objective is False
