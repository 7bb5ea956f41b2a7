"""Measuring a model's costs as a search does: the one place that calls the cost models, used by the
trial objective, the ``search.enqueue`` feasibility check and the prescreen's feasibility ranking."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from iasf_search.components import Measurement

if TYPE_CHECKING:
    from iasf_search.plugin_manager import Components
    from iasf_search.space.spec import SearchSpace

COST_BATCH = 32
"""Validation samples on which cost models measure a model."""


def measure_costs(model: nn.Module, names: Sequence[str], space: SearchSpace, components: Components,
                  x_val: torch.Tensor, device: torch.device) -> dict[str, Measurement]:
    """Each cost of ``names`` (with the space's options for it), measured on the first :data:`COST_BATCH`
    samples of ``x_val`` with ``model`` in eval mode (its mode is restored), as a :class:`Measurement`."""
    was_training = model.training
    model.eval()
    try:
        out = {}
        for name in names:
            result: Any = components.cost_models.get(name).measure(model, x_val[:COST_BATCH], device, space.costs[name])
            out[name] = result if isinstance(result, Measurement) else Measurement(float(result))
        return out
    finally:
        model.train(was_training)


def violations(model: nn.Module, space: SearchSpace, components: Components, x_val: torch.Tensor,
               device: torch.device) -> list[str]:
    """The space's cost constraints ``model`` breaks, worded ``"params 1.2e+06 > max 1e+06"`` (empty without any);
    constraints on representation metrics need the trained model and are not checked here."""
    bounded = [c for c in space.constraints if c.kind == "cost"]
    measured = measure_costs(model, [c.name for c in bounded], space, components, x_val, device)
    return [broken for c in bounded if (broken := c.broken(float(measured[c.name].value)))]
