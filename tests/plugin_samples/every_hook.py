"""A third-party plugin that implements every registration hook: a new modality end to end.

``flat`` inputs are feature vectors ``(F,)``: the stem makes one token per feature. The dataset
``flat_digits`` serves digits as 64-vectors; ``negate`` is an op, ``maximum`` a fusion,
``first_token`` a readout, ``rms`` a norm (with a parameter), ``seeded_random`` a sampler, ``never``
a pruner, ``smoothness`` an auxiliary objective, ``tokens`` a cost model, ``output_spread`` a zero-cost
proxy and ``flat_logger`` a section of the space file.
"""

from __future__ import annotations

import optuna
import torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import (
    AuxObjective,
    CostModel,
    Dataset,
    Fusion,
    NodeOp,
    Norm,
    PrunerFactory,
    Readout,
    SamplerFactory,
    SpaceSection,
    Stem,
    TokenLayout,
    ZeroCostProxy,
)
from iasf_search.data import split_arrays
from iasf_search.params import Param


class FlatTokens(nn.Module):
    def __init__(self, features: int, width: int) -> None:
        super().__init__()
        self.embed = nn.Linear(1, width)
        self.pos = nn.Parameter(torch.zeros(1, features, width))

    def forward(self, x):  # (B, F) -> (B, F, D)
        return self.embed(x[..., None]) + self.pos


class FlatStem(Stem):
    name = "flat"

    def layout(self, config, sample_shape):
        return TokenLayout((sample_shape[0],))

    def build(self, config, sample_shape, width):
        return FlatTokens(sample_shape[0], width)


class FlatDigits(Dataset):
    name = "flat_digits"
    modality = "flat"

    def load(self, options, split):
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        return split_arrays(x / 16.0, y, split, modality=self.modality)


class Negate(NodeOp):
    name = "negate"

    def build(self, config, ctx):
        return nn.Sequential(nn.Linear(ctx.width, ctx.width), _Neg())


class _Neg(nn.Module):
    def forward(self, x):
        return -x


class Maximum(Fusion):
    name = "maximum"

    def build(self, config, n_inputs, ctx):
        return _Max()


class _Max(nn.Module):
    def forward(self, xs):
        return torch.stack(xs).amax(0)


class FirstToken(Readout):
    """The head reads the first token only (F = D)."""

    name = "first_token"

    def build(self, config, ctx):
        return _First()


class _First(nn.Module):
    def forward(self, x):  # (B, T, D) -> (B, D)
        return x[:, 0]


class RMS(Norm):
    """Root-mean-square norm over each token's channels, with or without a learned gain."""

    name = "rms"
    params = {"learned": Param([True, False], bool)}

    def build(self, config, ctx):
        return nn.RMSNorm(ctx.width, elementwise_affine=config["learned"])


class Smoothness(AuxObjective):
    """Neighbouring tokens of the last node should be similar (a toy auxiliary objective)."""

    name = "smoothness"
    params = {"weight": Param(0.05, float, low=0.0)}

    def loss(self, module, config, forward, targets):
        last = forward.values[forward.order[-1]]
        return (last[:, 1:] - last[:, :-1]).pow(2).mean()


class TokenCount(CostModel):
    name = "tokens"

    def measure(self, model, example, device, options):
        return float(model.run(example).values["input"].shape[1] * options["scale"])

    params = {"scale": Param(1, int, low=1)}


class OutputSpread(ZeroCostProxy):
    """The spread of the untrained model's logits over the batch (a toy proxy)."""

    name = "output_spread"

    def score(self, model, x, y, device):
        with torch.no_grad():
            return float(model(x.to(device)).std())


class FlatLogger(SpaceSection):
    """A plugin-owned top-level section of the space file."""

    name = "flat_logger"
    params = {"prefix": Param("flat", str), "every": Param(1, int, low=1)}


class SeededRandom(SamplerFactory):
    name = "seeded_random"

    def create(self, options, *, seed, n_objectives):
        return optuna.samplers.RandomSampler(seed=seed)


class Never(PrunerFactory):
    name = "never"

    def create(self, options, *, epochs):
        return optuna.pruners.NopPruner()


@hookimpl
def iasf_register_ops(registry):
    registry.register(Negate())


@hookimpl
def iasf_register_fusions(registry):
    registry.register(Maximum())


@hookimpl
def iasf_register_readouts(registry):
    registry.register(FirstToken())


@hookimpl
def iasf_register_norms(registry):
    registry.register(RMS())


@hookimpl
def iasf_register_stems(registry):
    registry.register(FlatStem())


@hookimpl
def iasf_register_datasets(registry):
    registry.register(FlatDigits())


@hookimpl
def iasf_register_aux_objectives(registry):
    registry.register(Smoothness())


@hookimpl
def iasf_register_cost_models(registry):
    registry.register(TokenCount())


@hookimpl
def iasf_register_space_sections(registry):
    registry.register(FlatLogger())


@hookimpl
def iasf_register_samplers(registry):
    registry.register(SeededRandom())


@hookimpl
def iasf_register_pruners(registry):
    registry.register(Never())


@hookimpl
def iasf_register_proxies(registry):
    registry.register(OutputSpread())
