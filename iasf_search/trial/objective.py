"""One trial: sample an architecture and training settings, reuse or build, train, record.

What a trial records (user and system attributes, each name a constant of
:mod:`iasf_search.results.records`) is catalogued in ``docs/results.md`` ("What a trial records"),
generated from that module by ``scripts/generate_docs.py``.

Constraints reach the sampler through ``trial.set_constraint`` (Optuna 5); the same values are
also written as the older ``constraints`` list system attribute, the only form optuna-dashboard
0.21 shows (Optuna reads both, so every trial carries each violation twice — consistently, which
changes no sampler's ordering).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx
import optuna
import torch
from optuna.trial import TrialState
from torch import nn

from iasf_search import graph as arch
from iasf_search.build import build_model, count_parameters
from iasf_search.components import TaskData
from iasf_search.errors import DiskFull
from iasf_search.optuna_internals import trial_id
from iasf_search.plugin_manager import plugin_in_traceback
from iasf_search.results.records import (
    ARCH_HASH,
    ARCHITECTURE,
    AUX_PREFIX,
    CONSTRAINTS,
    COST_DETAILS_PREFIX,
    COST_PREFIX,
    EPOCHS,
    FAILED_PLUGIN,
    FAILURE_REASON,
    FOLD_VAL_ACCURACIES,
    GRAD_ACCUMULATION,
    INFEASIBLE,
    LEGACY_CONSTRAINTS,
    METRIC_DETAILS_PREFIX,
    METRIC_PREFIX,
    METRICS_SECONDS,
    MICRO_BATCH_SIZE,
    OOM_RETRIES,
    PARAMS,
    PRUNED_AT_EPOCH,
    REUSE_KEY,
    REUSED_FROM,
    STEPS,
    SUMMARY,
    TEST_ACCURACY,
    TRAIN_CONFIG,
    TRAIN_SECONDS,
    VAL_ACCURACY,
    VAL_ACCURACY_STD,
    VAL_LOSS,
    record,
    set_epoch_values,
    set_record,
)
from iasf_search.sampling import describe_graph, sample_trial
from iasf_search.search.interrupts import arrived, interruptible, raise_swallowed, reason
from iasf_search.search.prescreen import proxies_to_record, proxy_batch, record_proxies
from iasf_search.session import Session
from iasf_search.train import AuxTerm, Diverged, Run, TimeLimit, TrainResult, attach_aux, evaluate, measure_aux, train_together
from iasf_search.trial.cost_measurement import measure_costs
from iasf_search.trial.cross_validation import fold_tasks, pooled
from iasf_search.trial.representations import measure_metrics

AUX_BATCH = 256
"""Validation samples on which auxiliary objectives are measured after training."""

if TYPE_CHECKING:
    from iasf_search.optuna_internals import ArtifactStore

REUSED_ATTRS = (PARAMS, TRAIN_SECONDS, EPOCHS, STEPS, VAL_ACCURACY, VAL_LOSS, TEST_ACCURACY, OOM_RETRIES, MICRO_BATCH_SIZE,
                GRAD_ACCUMULATION, FOLD_VAL_ACCURACIES, VAL_ACCURACY_STD)


class Surplus(Exception):
    """The trial is beyond the study's target: it is failed at once, before sampling anything."""


class TrialObjective:
    """The Optuna objective for a search: ``objective(trial) -> value(s)`` in the space's objective order."""

    def __init__(self, session: Session, data: TaskData, device: torch.device, seed: int,
                 artifacts: ArtifactStore | None = None, target: int | None = None) -> None:
        self.session = session
        self.space, self.components = session.space, session.components
        self.hook = session.components.pm.hook
        self.data, self.device, self.seed = data, device, seed
        self.artifacts = artifacts
        self.target = target
        space = session.space
        task = {"dataset": space.dataset, "options": dict(space.dataset_options), "split": vars(space.split), "seed": seed}
        self.task_fingerprint = json.dumps(task, sort_keys=True, default=str)
        self.folds = fold_tasks(data, space.split) if space.split.folds else []
        """With cross-validation, one task per fold; the kept model then trains on ``self.pool``."""
        self.pool = pooled(data) if self.folds else data
        self.proxy_batch = proxy_batch(data, seed) if proxies_to_record(space) else None
        """The training samples the zero-cost proxies score every trial's model on (:mod:`iasf_search.search.prescreen`)."""
        self.stopping: DiskFull | None = None
        """An error that ends the search, not only the trial (a full disk); :func:`~iasf_search.search.study.run_search`
        raises it after Optuna has recorded the trial."""

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        try:
            with interruptible():  # Ctrl-C or SIGTERM stops training at once
                self._check_not_surplus(trial)
                self.hook.iasf_trial_start(study=trial.study, trial=trial)
                return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Surplus as exc:
            trial.set_user_attr(FAILURE_REASON, str(exc))
            raise
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM (iasf_search.search.interrupts)
            trial.set_user_attr(FAILURE_REASON, reason(stop))
            raise
        except DiskFull as exc:  # no room for the trial's files: the search stops (run_search raises it)
            self.stopping = exc
            trial.set_user_attr(FAILURE_REASON, f"disk full: {exc}"[:500])
            raise
        except torch.OutOfMemoryError as exc:
            trial.set_user_attr(FAILURE_REASON, f"out of memory: {str(exc).splitlines()[0] if str(exc) else ''}"[:500])
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the next trial starts with the memory this one held
            raise
        except Exception as exc:
            stop = arrived()
            if stop is not None:  # the stop signal was swallowed on its way and left this failure: stop anyway
                trial.set_user_attr(FAILURE_REASON, reason(stop))
                raise stop from exc
            plugin = plugin_in_traceback(self.components, exc.__traceback__)
            where = f"plugin '{plugin}' raised " if plugin else ""
            trial.set_user_attr(FAILURE_REASON, f"{where}{type(exc).__name__}: {exc}"[:500])
            if plugin:
                trial.set_user_attr(FAILED_PLUGIN, plugin)
            raise

    def _check_not_surplus(self, trial: optuna.Trial) -> None:
        """Parallel workers that start trials at the same moment could overshoot the target: a trial
        runs only while the trials numbered before it, unless failed, are fewer than the target."""
        if self.target is None:
            return
        ahead = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number and t.state != TrialState.FAIL]
        if len(ahead) >= self.target:
            raise Surplus(f"surplus: {len(ahead)} earlier trials already finish the target of {self.target} "
                          f"(another worker started at the same moment); not run")

    def _run(self, trial: optuna.Trial) -> float | list[float]:
        graph, train_config, aux_config = sample_trial(trial, self.space, self.components)
        key = self._record_architecture(trial, graph, train_config)
        torch.manual_seed(self.seed)
        model = build_model(graph, self.components, self.data.sample_shape, self.data.num_classes, padded=self.data.padded).to(self.device)
        if self.proxy_batch is not None:  # the untrained model, before anything else (reused trials too)
            record_proxies(trial, model, self.session, self.proxy_batch, self.device)
        previous = self._finished_twin(trial.study, key, graph)
        if previous is not None:
            return self._reuse(trial, previous, graph, model)
        costs = self._measure_and_check(trial, graph, model)
        aux = attach_aux(model, aux_config, self.components, self.data.x_train[:2], self.device)
        raise_swallowed()  # a stop signal caught by library code on the way here: do not train
        result = self._train(trial, model, train_config, costs, aux)
        return self._evaluate(trial, model, result, costs, aux)

    def _record_architecture(self, trial: optuna.Trial, graph: nx.DiGraph, train_config: Mapping[str, Any]) -> str:
        """Record the architecture, its hash and summary and the training settings; returns the reuse key
        (same architecture, settings and task: the same result)."""
        arch_hash = arch.canonical_hash(graph)
        key = hashlib.sha256(f"{arch_hash}|{json.dumps(train_config, sort_keys=True)}|{self.task_fingerprint}".encode()).hexdigest()[:32]
        for name, value in ((ARCH_HASH, arch_hash), (SUMMARY, describe_graph(graph, self.components)), (REUSE_KEY, key)):
            trial.set_user_attr(name, value)
        set_record(trial, ARCHITECTURE, arch.to_json(graph))
        set_record(trial, TRAIN_CONFIG, train_config)
        return key

    def _built(self, trial: optuna.Trial, graph: nx.DiGraph, model: nn.Module) -> None:
        self.hook.iasf_trial_built(trial=trial, graph=graph, model=model, space=self.space, components=self.components,
                                   artifacts=self.artifacts)

    def _reuse(self, trial: optuna.Trial, previous: optuna.trial.FrozenTrial, graph: nx.DiGraph,
               model: nn.Module) -> float | list[float]:
        """Copy the result of an identical finished trial instead of training again."""
        for name, value in previous.user_attrs.items():
            if name in REUSED_ATTRS or name.startswith((AUX_PREFIX, COST_PREFIX, COST_DETAILS_PREFIX, METRIC_PREFIX,
                                                        METRIC_DETAILS_PREFIX)):
                trial.set_user_attr(name, value)
        trial.set_user_attr(REUSED_FROM, previous.number)
        prefix = {"cost": COST_PREFIX, "metric": METRIC_PREFIX}
        self._set_constraints(trial, {c.name: previous.user_attrs.get(prefix[c.kind] + c.name) for c in self.space.constraints})
        self._built(trial, graph, model)
        return previous.values if len(previous.values) > 1 else previous.values[0]

    def _measure_and_check(self, trial: optuna.Trial, graph: nx.DiGraph, model: nn.Module) -> dict[str, float]:
        """Parameters and costs of the untrained model; an infeasible trial is pruned (after the
        ``iasf_trial_built`` hook) without measuring the costs no constraint bounds."""
        trial.set_user_attr(PARAMS, count_parameters(model))  # the deployable model, without auxiliary helpers
        bounded = [c.name for c in self.space.constraints if c.kind == "cost"]
        costs = self._measure_costs(trial, model, bounded)
        violated = self._set_constraints(trial, costs)
        if not violated:
            costs.update(self._measure_costs(trial, model, [name for name in self.space.costs if name not in bounded]))
        self._built(trial, graph, model)
        if violated:
            trial.set_user_attr(FAILURE_REASON, "infeasible: " + "; ".join(violated))
            raise optuna.TrialPruned("infeasible: " + "; ".join(violated))
        return costs

    def _train(self, trial: optuna.Trial, model: nn.Module, train_config: Mapping[str, Any], costs: Mapping[str, float],
               aux: list[AuxTerm]) -> TrainResult:
        """Train with per-epoch reports (cross-validated when the space has folds); a diverged or
        overlong trial is pruned with its reason."""
        report = self._reporter(trial, costs, train_config["epochs"])
        limit = self.space.search.max_trial_seconds
        try:
            if self.folds:
                return self._cross_validate(trial, model, train_config, report, aux)
            return self._train_with_oom_retry(trial, [Run(model, self.data, aux)], train_config, report, limit)
        except Diverged as exc:
            trial.set_user_attr(FAILURE_REASON, f"diverged: {exc}")
            raise optuna.TrialPruned(str(exc)) from None
        except TimeLimit as exc:
            trial.set_user_attr(FAILURE_REASON, f"time limit: {exc}")
            raise optuna.TrialPruned(str(exc)) from None

    def _cross_validate(self, trial: optuna.Trial, model: nn.Module, train_config: Mapping[str, Any],
                        report: Callable[[int, float, float], None], aux: list[AuxTerm]) -> TrainResult:
        """Train a copy of the untrained ``model`` on each fold, together, reporting the folds' mean at
        every epoch; then train ``model`` itself on all the folds' data (the pool), without
        validation. The result is the folds' (mean, per-fold accuracies) with the kept model's steps
        and the time of both; ``search.max_trial_seconds`` bounds both together."""
        runs = []
        for task in self.folds:
            twin = copy.deepcopy(model)  # same initial weights as the kept model, auxiliary helpers included
            helpers = getattr(twin, "aux_modules", [])
            runs.append(Run(twin, task, [AuxTerm(a.objective, a.config, helpers[i]) for i, a in enumerate(aux)]))
        limit = self.space.search.max_trial_seconds
        folds = self._train_with_oom_retry(trial, runs, train_config, report, limit)
        del runs  # the fold models are not kept
        remaining = None if limit is None else max(limit - folds.seconds, 1e-3)
        kept = self._train_with_oom_retry(trial, [Run(model, self.pool, aux)], train_config, None, remaining, validate=False)
        return TrainResult(folds.val_accuracy, folds.val_loss, folds.epochs, folds.seconds + kept.seconds, folds.history,
                           steps=kept.steps, fold_val_accuracies=folds.fold_val_accuracies)

    def _evaluate(self, trial: optuna.Trial, model: nn.Module, result: TrainResult, costs: Mapping[str, float],
                  aux: list[AuxTerm]) -> float | list[float]:
        """Test accuracy and auxiliary measurements recorded; the objective values returned. With
        cross-validation the kept model has trained on the validation split too, so what is measured
        on it after training (auxiliary objectives, the ``iasf_trial_trained`` hook's plugins) is
        measured on training samples."""
        test_acc, _ = evaluate(model, self.data.x_test, self.data.y_test, self.device)
        measured = measure_aux(model, aux, self.data.x_val[:AUX_BATCH], self.data.y_val[:AUX_BATCH], self.device)
        for name, values in measured.items():
            trial.set_user_attr(AUX_PREFIX + name, values)
        for name, value in ((TRAIN_SECONDS, round(result.seconds, 3)), (EPOCHS, result.epochs), (STEPS, result.steps),
                            (VAL_ACCURACY, result.val_accuracy), (VAL_LOSS, result.val_loss), (TEST_ACCURACY, test_acc)):
            trial.set_user_attr(name, value)
        if result.fold_val_accuracies:
            trial.set_user_attr(FOLD_VAL_ACCURACIES, result.fold_val_accuracies)
            trial.set_user_attr(VAL_ACCURACY_STD, float(torch.tensor(result.fold_val_accuracies).std(correction=0)))
        measured_metrics = self._measure_metrics(trial, model)
        self._set_constraints(trial, {c.name: measured_metrics.get(c.name) for c in self.space.constraints if c.kind == "metric"})
        metrics: dict[str, Any] = {"accuracy": result.val_accuracy, "loss": result.val_loss, **costs, **measured_metrics}
        missing = [o.metric for o in self.space.objectives if metrics[o.metric] is None]
        if missing:
            reason = f"objective {', '.join(missing)} does not apply to this architecture (not measured)"
            trial.set_user_attr(FAILURE_REASON, reason)
            raise optuna.TrialPruned(reason)
        values = [float(metrics[o.metric]) for o in self.space.objectives]
        if hasattr(model, "aux_modules"):
            del model.aux_modules  # training helpers are not part of the trained model
        model.eval()
        self.hook.iasf_trial_trained(trial=trial, model=model, data=self.data, space=self.space, components=self.components,
                                     values=values, artifacts=self.artifacts)
        return values[0] if len(values) == 1 else values

    def _reporter(self, trial: optuna.Trial, costs: Mapping[str, float], epochs: int) -> Callable[[int, float, float], None]:
        """The per-epoch report: Optuna's ``trial.report`` / ``should_prune`` with one objective;
        with several, the epoch's objective vector (:func:`~iasf_search.results.records.set_epoch_values`)
        and the pruner asked directly, when it handles several objectives (``PrunerFactory.multi_objective``).
        The pruner is asked only at epochs where its factory says it may prune (``PrunerFactory.may_prune``,
        given the COMPLETE trials when this trial started). A fully trained trial is never pruned; a cost
        does not change per epoch, so a cost as the only objective is not pruned; a representation metric is
        measured only after training, so objectives that include one have no per-epoch vector and are not pruned."""
        objectives = self.space.objectives
        several = len(objectives) > 1
        after_training = several and any(o.metric in self.components.metrics for o in objectives)
        if not any(o.metric in ("accuracy", "loss") for o in objectives) or after_training or (
                several and not self.components.pruners.get(self.space.search.pruner).multi_objective):
            return lambda epoch, val_acc, val_loss: None

        settings = self.space.search
        factory = self.components.pruners.get(settings.pruner)
        completed = len(trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

        def may_prune(epoch: int) -> bool:
            return epoch < epochs and factory.may_prune(settings.pruner_options, epochs=self.space.max_epochs, epoch=epoch,
                                                        completed=completed)

        def report(epoch: int, val_acc: float, val_loss: float) -> None:
            raise_swallowed()
            measured = {"accuracy": val_acc, "loss": val_loss, **costs}
            if several:
                set_epoch_values(trial, epoch, [measured[o.metric] for o in objectives])
                prune = may_prune(epoch) and trial.study.pruner.prune(trial.study, trial.storage.get_trial(trial_id(trial)))
            else:
                trial.report(measured[objectives[0].metric], epoch)
                prune = may_prune(epoch) and trial.should_prune()
            if prune:
                trial.set_user_attr(VAL_ACCURACY, val_acc)
                trial.set_user_attr(PRUNED_AT_EPOCH, epoch)
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        return report

    def _train_with_oom_retry(self, trial: optuna.Trial, runs: list[Run], train_config: Mapping[str, Any],
                              report: Callable[[int, float, float], None] | None, max_seconds: float | None,
                              validate: bool = True) -> TrainResult:
        """Train ``runs`` together (:func:`~iasf_search.train.train_together`); when the device runs out of
        memory (``torch.OutOfMemoryError``, what CUDA raises), start again from the same initial weights
        with half the micro-batch and twice the gradient accumulation, so the effective batch (and the
        optimisation) stays the same. Each retry is recorded in ``oom_retries``; out of memory at a
        micro-batch of 1 fails the trial."""
        initial = [{k: v.detach().to("cpu", copy=True) for k, v in run.model.state_dict().items()} for run in runs]
        micro, retries = train_config["batch_size"], list(trial.user_attrs.get(OOM_RETRIES, []))
        while True:
            try:
                return train_together(runs, train_config, device=self.device, seed=self.seed, report=report,
                                      max_seconds=max_seconds, micro_batch_size=micro, validate=validate)
            except torch.OutOfMemoryError as exc:
                if micro == 1:
                    raise
                error = str(exc).splitlines()[0] if str(exc) else "out of memory"
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                micro = max(1, micro // 2)
                accumulation = -(-train_config["batch_size"] // micro)
                retries.append({"micro_batch_size": micro, "grad_accumulation": accumulation, "error": error[:200]})
                trial.set_user_attr(OOM_RETRIES, retries)
                trial.set_user_attr(MICRO_BATCH_SIZE, micro)
                trial.set_user_attr(GRAD_ACCUMULATION, accumulation)
                for run, weights in zip(runs, initial, strict=True):
                    run.model.load_state_dict(weights)

    def _measure_costs(self, trial: optuna.Trial, model: nn.Module, names: list[str]) -> dict[str, float]:
        """The costs ``names`` (of the space's), before training (:func:`~iasf_search.trial.cost_measurement.measure_costs`);
        each recorded as ``cost.<name>`` (and ``cost_details.<name>``)."""
        costs = {}
        for name, result in measure_costs(model, names, self.space, self.components, self.data.x_val, self.device).items():
            costs[name] = float(result.value)
            trial.set_user_attr(COST_PREFIX + name, costs[name])
            if result.details:
                trial.set_user_attr(COST_DETAILS_PREFIX + name, dict(result.details))
        return costs

    def _set_constraints(self, trial: optuna.Trial, measured: Mapping[str, float | None]) -> list[str]:
        """Give the sampler the value of every constraint whose cost or metric is in ``measured``
        (``set_constraint``, and the list the dashboard reads), adding them to the ``constraints`` user
        attribute; a metric measured as None (it does not apply) breaks its constraint. Cost constraints
        are set before training, metric constraints after it. Returns the violations, worded
        ``"latency_ms 7.31 > max 5"``."""
        bounded = [c for c in self.space.constraints if c.name in measured]
        if not bounded:
            return []
        table = dict(trial.user_attrs.get(CONSTRAINTS) or {})
        violated = []
        for c in bounded:
            value = measured[c.name]
            violation = 1.0 if value is None else c.violation(float(value))
            trial.set_constraint(c.name, violation)
            table[c.name] = {"value": value, **c.bounds(), "feasible": value is not None and c.feasible(float(value))}
            if not table[c.name]["feasible"]:
                violated.append(c.broken(float(value)) if value is not None else f"{c.name} not measured (does not apply)")
        trial.storage.set_trial_system_attr(trial_id(trial), LEGACY_CONSTRAINTS, [
            1.0 if table[c.name]["value"] is None else c.violation(float(table[c.name]["value"]))
            for c in self.space.constraints if c.name in table])
        trial.set_user_attr(CONSTRAINTS, table)
        broken = [c.name for c in self.space.constraints if c.name in table and not table[c.name]["feasible"]]
        if broken:
            trial.set_user_attr(INFEASIBLE, broken)
        return violated

    def _measure_metrics(self, trial: optuna.Trial, model: nn.Module) -> dict[str, float | None]:
        """The space's representation metrics of the trained model on the first ``metrics.batch`` validation
        samples (:func:`~iasf_search.trial.representations.measure_metrics`), each recorded as ``metric.<name>`` and
        ``metric_details.<name>``, their time together as ``metrics_seconds``; None for a metric that does not apply
        (nothing recorded)."""
        batch = self.space.metrics_batch
        start = time.perf_counter()
        measured = measure_metrics(model, self.data.x_val[:batch], self.data.y_val[:batch], self.space.metrics, self.components)
        if measured:
            trial.set_user_attr(METRICS_SECONDS, round(time.perf_counter() - start, 4))
        values: dict[str, float | None] = {}
        for name, result in measured.items():
            values[name] = None if result is None else float(result.value)
            if result is not None:
                trial.set_user_attr(METRIC_PREFIX + name, values[name])
                trial.set_user_attr(METRIC_DETAILS_PREFIX + name, {"batch": min(batch, len(self.data.x_val)), **result.details})
        return values

    @staticmethod
    def _finished_twin(study: optuna.Study, key: str, graph: nx.DiGraph) -> optuna.trial.FrozenTrial | None:
        """A COMPLETE trial with the same reuse key whose architecture is exactly isomorphic, if any."""
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.user_attrs.get(REUSE_KEY) == key and arch.same_architecture(arch.from_json(record(t, ARCHITECTURE)), graph):
                return t
        return None
