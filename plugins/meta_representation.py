"""Meta-representation objectives (seed 000 §2.2): each node is a level R_i built on the level below.

* ``reconstruction``: a small linear decoder per node reconstructs the node's first input (the
  level below, gradient stopped) from the node's output: ``||g_i(R_i) - R_{i-1}||^2``.
* ``consistency``: consecutive levels agree: ``1 - cos(mean_T R_i, mean_T R_{i-1})`` (the lower
  level's gradient stopped).

Both average over the chosen nodes (``levels``: all, the first or the last) and shape training only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import AuxObjective
from iasf_search.params import Param

WEIGHT = Param(0.1, float, low=0.0, help="weight of the term in the training loss (0: measured only)")
LEVELS = Param("all", str, choices=("all", "first", "last"), help="which nodes the term covers")


def _levels(forward: Any, which: str) -> list[tuple[str, str]]:
    """``(node, first input)`` for the chosen hidden nodes: all of them, the first or the last."""
    nodes = {"all": forward.order, "first": forward.order[:1], "last": forward.order[-1:]}[which]
    return [(n, forward.sources[n][0]) for n in nodes]


class Reconstruction(AuxObjective):
    name = "reconstruction"
    description = "per-node linear decoder reconstructs the level below (MSE, lower level detached)"
    params = {"weight": WEIGHT, "levels": LEVELS}

    def build(self, config: Mapping[str, Any], forward: Any, width: int) -> nn.Module:
        return nn.ModuleDict({n: nn.Linear(width, width) for n in forward.order})

    def loss(self, module: nn.Module, config: Mapping[str, Any], forward: Any, targets: torch.Tensor) -> torch.Tensor:
        terms = [F.mse_loss(module[n](forward.values[n]).float(), forward.values[below].detach().float())
                 for n, below in _levels(forward, config["levels"])]
        return torch.stack(terms).mean()


class Consistency(AuxObjective):
    name = "consistency"
    description = "consecutive levels' token-mean representations point the same way (1 - cosine)"
    params = {"weight": WEIGHT, "levels": LEVELS}

    def loss(self, module: nn.Module, config: Mapping[str, Any], forward: Any, targets: torch.Tensor) -> torch.Tensor:
        terms = [1 - F.cosine_similarity(forward.values[n].mean(1).float(), forward.values[below].detach().mean(1).float(), dim=-1).mean()
                 for n, below in _levels(forward, config["levels"])]
        return torch.stack(terms).mean()


@hookimpl
def iasf_register_aux_objectives(registry) -> None:
    registry.register(Reconstruction())
    registry.register(Consistency())
