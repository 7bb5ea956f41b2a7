"""Built-in zero-cost proxies: training-free scores of an untrained model (higher: predicted better).

``search: {proxies: [zico, synflow, params]}`` records ``proxy.<name>`` on every trial;
``search: {prescreen: {proxy: zico, candidates: 16, keep: 1}}`` trains only the best-scored of many
sampled architectures (:mod:`iasf_search.search.prescreen`).

* ``params``: trainable parameters. The baseline every proxy should beat: ZiCo (Li et al., ICLR 2023)
  reports that most earlier proxies do not rank architectures better than their parameter count.
* ``synflow``: Synaptic Flow (Tanaka et al., NeurIPS 2020), the data-free score as the zero-cost
  NAS literature uses it (Abdelfattah et al., ICLR 2021): every weight and buffer replaced by its
  absolute value, an all-ones input of one sample, ``R`` the sum of the logits; the score is the
  sum over the layers' weights of ``|theta * dR/dtheta|``. Computed in float64 (an untrained deep
  network's ``R`` grows with the product of its layers' weight sums), in eval mode (the reference
  code builds the network without BatchNorm; at initialisation an eval-mode BatchNorm is the
  identity, while a train-mode one would zero a constant input). For text the all-ones input is the
  token id 1 at every position (the unknown word: a valid id of every vocabulary).
* ``zico``: ZiCo (Li et al., ICLR 2023; the authors' ``compute_zico.py``): the cross-entropy
  gradients of two mini-batches (the given samples halved); for each layer's weight, the mean over
  the batches of ``|g|`` divided by their standard deviation over the batches, summed over the
  entries with a non-zero deviation; the score is the sum over layers of the log of that sum
  (layers whose sum is 0 are skipped, as in the reference code). In train mode, as the reference.

"Layers" are, as in the reference implementations, the weights of ``nn.Linear`` and convolution
modules (the stems' patch convolutions and embeddings' projections included; an ``nn.Embedding``
table, biases and norm gains are not).

Every proxy works on a deep copy of the model, so the model is left exactly as it was (weights,
BatchNorm statistics, mode, no gradients).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import ZeroCostProxy

LAYER_TYPES = (nn.Linear, nn.modules.conv._ConvNd)
"""Modules whose ``weight`` the gradient-based proxies read (the reference code: ``Conv2d`` and ``Linear``)."""
ZICO_BATCHES = 2
"""Mini-batches ZiCo's gradient statistics are taken over (the paper uses two)."""


def layer_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(module name, weight)`` of every linear or convolution layer, in module order."""
    return [(name, module.weight) for name, module in model.named_modules()
            if isinstance(module, LAYER_TYPES) and isinstance(module.weight, nn.Parameter) and module.weight.requires_grad]


class Params(ZeroCostProxy):
    name = "params"
    description = "trainable parameters (the baseline a proxy must beat)"

    def score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
        return float(sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("aux_modules.")))


class Synflow(ZeroCostProxy):
    name = "synflow"
    description = "synaptic flow (Tanaka et al. 2020): sum of |theta * dR/dtheta| with |weights| and an all-ones input, float64"

    def score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
        net = copy.deepcopy(model).double().eval()
        with torch.no_grad():
            for tensor in net.state_dict().values():
                if tensor.is_floating_point():
                    tensor.abs_()
        dtype = torch.float64 if x.is_floating_point() else x.dtype  # token ids: id 1 everywhere
        ones = torch.ones((1, *x.shape[1:]), dtype=dtype, device=device)
        net.zero_grad(set_to_none=True)
        net(ones).sum().backward()
        with torch.no_grad():
            total = sum(float((w * w.grad).abs().sum()) for _, w in layer_weights(net) if w.grad is not None)
        return total if math.isfinite(total) else float("inf")


class ZiCo(ZeroCostProxy):
    name = "zico"
    description = "ZiCo (Li et al. 2023): sum over layers of log(sum of mean|g| / std(g)) over two mini-batches' gradients"

    def score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
        if len(x) < ZICO_BATCHES:
            raise ValueError(f"zico needs at least {ZICO_BATCHES} samples, got {len(x)}")
        net = copy.deepcopy(model).train()
        layers = layer_weights(net)
        grads: dict[str, list[torch.Tensor]] = {name: [] for name, _ in layers}
        for xb, yb in zip(x.chunk(ZICO_BATCHES), y.chunk(ZICO_BATCHES), strict=True):
            net.zero_grad(set_to_none=True)
            F.cross_entropy(net(xb.to(device)), yb.to(device)).backward()
            for name, weight in layers:
                grads[name].append(torch.zeros_like(weight) if weight.grad is None else weight.grad.detach().clone())
        total = 0.0
        for per_batch in grads.values():
            g = torch.stack(per_batch).reshape(len(per_batch), -1).double()
            std = g.std(dim=0, correction=0)
            nonzero = std > 0
            ratio = float((g.abs().mean(dim=0)[nonzero] / std[nonzero]).sum())
            if ratio > 0:
                total += math.log(ratio)
        return total


@hookimpl
def iasf_register_proxies(registry) -> None:
    for proxy in (Params(), Synflow(), ZiCo()):
        registry.register(proxy)
