"""Built-in samplers and pruners: thin factories over Optuna's own classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from iasf_search import hookimpl
from iasf_search.components import PrunerFactory, SamplerFactory
from iasf_search.params import Param


class TPE(SamplerFactory):
    name = "tpe"
    description = ("Optuna's TPESampler (multivariate, grouped for conditional graph parameters); "
                   "multi-objective TPE (MOTPE) when the space has several objectives")
    params = {
        "n_startup_trials": Param(8, int, low=0, help="random trials before TPE models the space"),
        "multivariate": Param(True, bool, help="model parameters jointly"),
        "group": Param(True, bool, help="split the conditional space into groups (needs multivariate)"),
    }

    def create(self, options: Mapping[str, Any], *, seed: int | None, n_objectives: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=options["n_startup_trials"],
                                          multivariate=options["multivariate"],
                                          group=options["group"] and options["multivariate"])


class Random(SamplerFactory):
    name = "random"
    description = "Optuna's RandomSampler"

    def create(self, options: Mapping[str, Any], *, seed: int | None, n_objectives: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)


class NSGA2(SamplerFactory):
    name = "nsga2"
    description = "Optuna's NSGAIISampler, for several objectives"
    params = {"population_size": Param(20, int, low=2, help="individuals per generation")}

    def create(self, options: Mapping[str, Any], *, seed: int | None, n_objectives: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=options["population_size"])


class Median(PrunerFactory):
    name = "median"
    description = "Optuna's MedianPruner on validation accuracy per epoch"
    params = {
        "n_startup_trials": Param(4, int, low=0, help="trials that are never pruned"),
        "warmup_fraction": Param(0.25, float, low=0.0, high=1.0, help="share of epochs before pruning may happen"),
    }

    def create(self, options: Mapping[str, Any], *, epochs: int) -> optuna.pruners.BasePruner:
        return optuna.pruners.MedianPruner(n_startup_trials=options["n_startup_trials"],
                                           n_warmup_steps=int(epochs * options["warmup_fraction"]))

    def may_prune(self, options: Mapping[str, Any], *, epochs: int, epoch: int, completed: int) -> bool:
        return completed >= max(1, options["n_startup_trials"]) and epoch >= int(epochs * options["warmup_fraction"])


class Hyperband(PrunerFactory):
    name = "hyperband"
    description = "Optuna's HyperbandPruner over epochs"
    params = {"reduction_factor": Param(3, int, low=2, help="keep 1/reduction_factor at each rung")}

    def create(self, options: Mapping[str, Any], *, epochs: int) -> optuna.pruners.BasePruner:
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs,
                                              reduction_factor=options["reduction_factor"])


class SuccessiveHalving(PrunerFactory):
    name = "successive_halving"
    description = "Optuna's SuccessiveHalvingPruner over epochs"
    params = {
        "min_resource": Param(1, int, low=1, help="epochs before the first rung"),
        "reduction_factor": Param(3, int, low=2, help="keep 1/reduction_factor at each rung; rungs at min_resource x factor^k epochs"),
    }

    def create(self, options: Mapping[str, Any], *, epochs: int) -> optuna.pruners.BasePruner:
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=options["min_resource"],
                                                      reduction_factor=options["reduction_factor"])

    def may_prune(self, options: Mapping[str, Any], *, epochs: int, epoch: int, completed: int) -> bool:
        return epoch >= options["min_resource"]  # the first rung


class NoPruner(PrunerFactory):
    name = "none"
    description = "never prune"
    multi_objective = True

    def create(self, options: Mapping[str, Any], *, epochs: int) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    def may_prune(self, options: Mapping[str, Any], *, epochs: int, epoch: int, completed: int) -> bool:
        return False


@hookimpl
def iasf_register_samplers(registry) -> None:
    for factory in (TPE(), Random(), NSGA2()):
        registry.register(factory)


@hookimpl
def iasf_register_pruners(registry) -> None:
    for factory in (Median(), Hyperband(), SuccessiveHalving(), NoPruner()):
        registry.register(factory)
