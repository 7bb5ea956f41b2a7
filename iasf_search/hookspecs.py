"""Every hook iasf-search calls, grouped by phase. Plugins implement them with ``@iasf_search.hookimpl``.

Registration hooks receive a :class:`~iasf_search.registry.Registry` and call its ``register``
for each component they contribute; they return nothing. They are called once, when the plugin
set is loaded, for every plugin (built-in ones first, then entry points, ``--plugin`` modules and
the space file's ``plugins:``).

Life-cycle hooks are called for every plugin; their results are ignored. They are meant for
loggers, progress displays and artifact writers: they may attach user attributes, notes and
artifacts to the running trial, but must not change a trial's parameters, values or state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import networkx as nx
    import optuna
    from torch import nn

    from iasf_search.components import TaskData
    from iasf_search.optuna_internals import ArtifactStore
    from iasf_search.plugin_manager import Components
    from iasf_search.registry import Registry
    from iasf_search.space.spec import SearchSpace

hookspec = pluggy.HookspecMarker("iasf_search")
hookimpl = pluggy.HookimplMarker("iasf_search")
"""Decorator for hook implementations; import it as ``from iasf_search import hookimpl``."""


# -- start-up: what a plugin contributes ----------------------------------------------------------


@hookspec
def iasf_register_ops(registry: Registry) -> None:
    """Register node operations (:class:`~iasf_search.components.NodeOp` instances).

    :param registry: call ``registry.register(op)`` for each op; its ``name`` is the key used
        under ``manifold.ops`` in a space file.
    """


@hookspec
def iasf_register_architectures(registry: Registry) -> None:
    """Register baseline architectures that ``search.enqueue`` can name (evaluated before the sampler's trials).

    :param registry: call ``registry.register(architecture)`` with
        :class:`~iasf_search.components.BaselineArchitecture` instances.
    """


@hookspec
def iasf_register_fusions(registry: Registry) -> None:
    """Register fusion (cross-domain synthesis) operators for nodes with several inputs.

    :param registry: call ``registry.register(fusion)`` with :class:`~iasf_search.components.Fusion`
        instances; names are used in ``manifold.fusions``.
    """


@hookspec
def iasf_register_readouts(registry: Registry) -> None:
    """Register readouts (:class:`~iasf_search.components.Readout`): how the head turns the output
    node's normalised tokens ``(B, T, D)`` into the features ``(B, F)`` its linear layer classifies.

    :param registry: call ``registry.register(readout)``; names are used in ``manifold.readouts``.
    """


@hookspec
def iasf_register_norms(registry: Registry) -> None:
    """Register norms (:class:`~iasf_search.components.Norm`): what a residual node applies to its
    input before its op, ``x + op(norm(x))``.

    :param registry: call ``registry.register(norm)``; names are used in ``manifold.norms``.
    """


@hookspec
def iasf_register_stems(registry: Registry) -> None:
    """Register stems (:class:`~iasf_search.components.Stem`), one per modality.

    :param registry: call ``registry.register(stem)``; the stem's ``name`` is the modality it
        serves (a dataset's ``modality`` picks its stem).
    """


@hookspec
def iasf_register_datasets(registry: Registry) -> None:
    """Register datasets (:class:`~iasf_search.components.Dataset`), named in ``task.dataset``.

    :param registry: call ``registry.register(dataset)``.
    """


@hookspec
def iasf_register_aux_objectives(registry: Registry) -> None:
    """Register auxiliary training objectives (:class:`~iasf_search.components.AuxObjective`).

    :param registry: call ``registry.register(objective)``; names are the keys of the space
        file's ``auxiliary:`` section. Each objective must declare a ``weight`` parameter.
    """


@hookspec
def iasf_register_cost_models(registry: Registry) -> None:
    """Register cost models (:class:`~iasf_search.components.CostModel`).

    :param registry: call ``registry.register(cost_model)``; names are used in the space's
        ``costs:`` list, as objective metrics and in ``constraints:``. ``measure`` returns a number
        or a :class:`~iasf_search.components.Measurement` (value and details such as a timing's
        spread, recorded as ``cost_details.<name>``).
    """


@hookspec
def iasf_register_space_sections(registry: Registry) -> None:
    """Register top-level space-file sections that a plugin owns (:class:`~iasf_search.components.SpaceSection`).

    :param registry: call ``registry.register(section)``; the core validates the section's keys
        and values like its own, before anything runs, and exposes them as ``space.sections``.
    """


@hookspec
def iasf_register_samplers(registry: Registry) -> None:
    """Register Optuna sampler factories (:class:`~iasf_search.components.SamplerFactory`).

    :param registry: call ``registry.register(factory)``; names are used in ``search.sampler``.
    """


@hookspec
def iasf_register_pruners(registry: Registry) -> None:
    """Register Optuna pruner factories (:class:`~iasf_search.components.PrunerFactory`).

    :param registry: call ``registry.register(factory)``; names are used in ``search.pruner``.
        A factory with ``multi_objective = True`` serves studies with several objectives: the
        engine records each epoch's objective vector (``iasf_search.results.records.epoch_values``) and
        calls its pruner's ``prune(study, trial)`` itself, since Optuna's ``trial.report`` refuses
        such studies.
    """


@hookspec
def iasf_register_proxies(registry: Registry) -> None:
    """Register zero-cost proxies (:class:`~iasf_search.components.ZeroCostProxy`): training-free
    scores of an untrained model, higher meaning predicted better.

    :param registry: call ``registry.register(proxy)``; names are used in ``search.proxies``
        (recorded on every trial as ``proxy.<name>``) and ``search.prescreen.proxy``.
    """


@hookspec
def iasf_register_metrics(registry: Registry) -> None:
    """Register representation metrics (:class:`~iasf_search.components.RepresentationMetric`):
    measurements of a trained model's token representations on a fixed validation batch.

    :param registry: call ``registry.register(metric)``; names are used in the space's ``metrics:``
        section (recorded on every trial as ``metric.<name>``), as objective metrics and in ``constraints:``.
    """


# -- study life cycle -----------------------------------------------------------------------------


@hookspec
def iasf_study_start(study: optuna.Study, space: SearchSpace, components: Components, target: int,
                     timeout: float | None, worker: int) -> None:
    """Called once per search run, after the study is created or loaded and before any trial.

    :param study: the Optuna study (may already hold trials when a search resumes).
    :param space: the validated search space (plain data).
    :param components: the loaded plugins' registries (``components.ops.get(name)``, ...).
    :param target: the number of finished (complete or pruned) trials the run aims for.
    :param timeout: seconds from now after which the run starts no new trial (None: no limit).
    :param worker: this process's index among the processes searching the study together (``--workers N``,
        ``--worker i/N``); 0 for a search in one process. A record of the whole study that only one process should
        write while the search goes on (the dashboard's study page) is written by worker 0.
    """


@hookspec
def iasf_trial_start(study: optuna.Study, trial: optuna.Trial) -> None:
    """Called when a trial of this run starts, before its architecture is sampled.

    :param study: the study.
    :param trial: the running Optuna trial (``trial.number``; do not suggest parameters here).
    """


@hookspec
def iasf_trial_built(trial: optuna.Trial, graph: nx.DiGraph, model: nn.Module, space: SearchSpace, components: Components,
                     artifacts: ArtifactStore | None) -> None:
    """Called when a trial's model is built and its costs measured, before training (also for a
    trial whose result is reused from an identical one; it is then not trained).

    :param trial: the running trial: ``user_attrs`` hold the architecture, its summary and the
        ``cost.*`` values; attributes, notes and artifacts may still be attached to it.
    :param graph: the sampled architecture graph.
    :param model: the built, untrained :class:`~iasf_search.build.ArchNet` on the trial's device.
    :param space: the validated search space (``space.sections`` holds plugin-owned settings).
    :param components: the loaded plugins' registries (e.g. each op's ``describe`` for labels).
    :param artifacts: the study's artifact store (``optuna.artifacts.upload_artifact``), or None
        when the run keeps no artifacts.
    """


@hookspec
def iasf_trial_trained(trial: optuna.Trial, model: nn.Module, data: TaskData, space: SearchSpace, components: Components,
                       values: list[float], artifacts: ArtifactStore | None) -> None:
    """Called after a trial trained to the end and was evaluated, while it is still running
    (pruned, diverged and failed trials do not get here).

    :param trial: the running trial, with its metrics in ``user_attrs`` (``val_accuracy``,
        ``test_accuracy``, ...); attributes, notes and artifacts may still be attached to it.
    :param model: the trained model in eval mode, on the trial's device.
    :param data: the task's splits, on the trial's device.
    :param space: the validated search space.
    :param components: the loaded plugins' registries.
    :param values: the trial's objective values, in the order of ``space.objectives``.
    :param artifacts: the study's artifact store, or None when the run keeps no artifacts.
    """


@hookspec
def iasf_trial_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Called after each trial of this run has finished, whatever its state.

    :param study: the study.
    :param trial: the finished trial; ``trial.user_attrs`` hold the architecture, its hash,
        metrics and, for failed or pruned trials, ``failure_reason``.
    """


@hookspec
def iasf_study_end(study: optuna.Study, space: SearchSpace, components: Components) -> None:
    """Called once when a search run stops (target reached, timeout, interrupted or terminated).

    :param study: the study.
    :param space: the validated search space.
    :param components: the loaded plugins' registries.
    """
