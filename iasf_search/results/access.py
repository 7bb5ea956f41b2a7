"""Reading a study's results: open a stored study, its finished and best trials, pick one, and get
back what a trial trained (architecture, plugins, data shape, weights, the model itself).

The CLI (``best``, ``export``, ``report``, ``analyze``, ``dashboard``), the report, the export and the
Python API all read results through here. A stored study is opened, with the space and data its search
recorded and the plugins its models need, through one door: :func:`open_stored_study` (or
:func:`stored_study` for a study already open), giving a :class:`StoredStudy`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import networkx as nx
import optuna
import safetensors.torch
import torch
from optuna.trial import FrozenTrial, TrialState

from iasf_search import graph as arch
from iasf_search.build import ArchNet, build_model
from iasf_search.errors import BadInput
from iasf_search.plugin_manager import DISABLE_AUTOLOAD_ENV, Components, load_components, plugins_to_load
from iasf_search.results.artifacts import CHECKPOINT, read_trial_file
from iasf_search.results.integrity import check_study
from iasf_search.results.records import (
    ARCHITECTURE,
    AUX_PREFIX,
    COST_PREFIX,
    METRIC_PREFIX,
    PARAMS,
    PROXY_PREFIX,
    REUSED_FROM,
    VAL_ACCURACY,
    VAL_LOSS,
    record,
    study_data,
    study_space,
)
from iasf_search.search.storage import open_storage, safe_url
from iasf_search.session import Session
from iasf_search.space import parse_space

if TYPE_CHECKING:
    from iasf_search.optuna_internals import ArtifactStore

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""The states a trial counts as finished in (towards a search's target)."""


def lead_trial(best: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The best trial, or of a Pareto set the one with the highest validation accuracy (lowest number on ties):
    the trial the report draws and the baselines are compared with."""
    if not best:
        return None
    return max(best, key=lambda t: (_number_or(t.user_attrs.get(VAL_ACCURACY), -math.inf), -t.number))


def _number_or(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


@dataclass(eq=False)
class StoredStudy:
    """A stored study opened for reading its results (:func:`open_stored_study`, :func:`stored_study`): the Optuna
    study, what its search recorded on it, and the plugins its architectures are built with.

    ``space`` and ``data`` are read once, when it opens. :attr:`components` are loaded on first use and then kept:
    a command loads its plugins at most once, and one that builds no model (``best``, ``analyze``) loads none.
    """

    study: optuna.Study
    space: dict[str, Any]
    """The resolved space the study was created from (:func:`~iasf_search.results.records.study_space`; empty if none)."""
    data: dict[str, Any]
    """The task's data fingerprint (:func:`~iasf_search.results.records.study_data`; empty if none)."""
    plugins: tuple[tuple[str, str], ...]
    """The ``(module, source)`` pairs :attr:`components` loads besides the built-in and installed plugins, in load
    order (:func:`~iasf_search.plugin_manager.plugins_to_load`): the extra modules asked for (``--plugin``,
    ``plugins=``) first, then the ``plugins:`` of the study's space."""
    loaded: Components | None = field(default=None, repr=False)
    """The plugins once loaded (or handed in already loaded): read them as :attr:`components`."""

    @property
    def components(self) -> Components:
        """The loaded plugins: built-ins, entry points, then :attr:`plugins` (loaded on first use, then kept)."""
        if self.loaded is None:
            self.loaded = load_components(self.plugins)
        return self.loaded

    @cached_property
    def session(self) -> Session:
        """The stored space validated against :attr:`components`, with them: the session the study's search ran,
        as :func:`~iasf_search.search.setup.load_task` takes it to load the study's task again.

        :raises BadInput: the study records no space, or it does not validate against the loaded plugins.
        """
        if not self.space:
            raise BadInput(f"study '{self.study.study_name}' does not record its space (it was not made by an iasf-search "
                           f"search)")
        space = parse_space(self.space, self.components, file=f"study '{self.study.study_name}' space")
        return Session(space, self.components)


def open_stored_study(storage: str, study_name: str, *, plugins: Sequence[str] = (),
                      session: Session | None = None) -> StoredStudy:
    """Open the stored study ``study_name`` in ``storage`` (:func:`load_results`) with its recorded space and data,
    and the plugins its models need (:class:`StoredStudy`): the one door ``best``, ``report``, ``export``,
    ``analyze`` and the dashboard open a study through.

    :param plugins: extra plugin modules (``--plugin``), loaded before the ``plugins:`` of the study's space.
    :param session: the session of the ``--space`` file the command already opened to find the study: its plugins
        are used, not loaded again, when it loaded the very modules the study needs, in the same order (and the
        installed plugins as :attr:`StoredStudy.components` would: unless :data:`DISABLE_AUTOLOAD_ENV` is set).
    :raises BadInput: no such storage or study.
    """
    opened = stored_study(load_results(storage, study_name), plugins=plugins)
    if session is not None and _same_plugins(opened, session):
        opened.loaded = session.components  # loaded once per command
    return opened


def stored_study(study: optuna.Study, *, plugins: Sequence[str] = (), components: Components | None = None) -> StoredStudy:
    """:func:`open_stored_study` for a study already open.

    :param components: plugins the caller already loaded for this study (used as they are); default: loaded on
        first use, ``plugins`` first, then the ``plugins:`` of the study's space.
    """
    space = study_space(study)
    return StoredStudy(study, space, study_data(study),
                       tuple(plugins_to_load(plugins, space.get("plugins", []), recorded_from="the study's space")), components)


def _same_plugins(opened: StoredStudy, session: Session) -> bool:
    """Whether ``session`` loaded what ``opened.components`` would load: the same modules in the same order, and
    the installed plugins alike."""
    loaded = plugins_to_load(session.space.extra_plugins, session.space.plugins)
    return ([module for module, _ in loaded] == [module for module, _ in opened.plugins]
            and session.space.autoload == (not os.environ.get(DISABLE_AUTOLOAD_ENV)))


def load_results(storage: str, study_name: str) -> optuna.Study:
    """Open an existing study read-only-in-spirit (for ``best`` and reports), its records checked once
    (:func:`~iasf_search.results.integrity.check_study`).

    :raises BadInput: no such storage or study, or a study whose records were changed outside iasf-search.
    """
    st = open_storage(storage, create=False)
    try:
        study = optuna.load_study(study_name=study_name, storage=st)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st)]
        raise BadInput(f"no study '{study_name}' in {safe_url(storage)}; studies there: {', '.join(names) or 'none'}") from None
    check_study(study)
    return study


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's complete and pruned trials."""
    return study.get_trials(deepcopy=False, states=FINISHED)


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (one objective) or the Pareto-optimal trials (several), best first; with constraints, among
    the feasible trials only (empty when no complete trial meets them).

    With one objective, complete feasible trials level with Optuna's best value are told apart by
    :func:`tie_break` (the lowest validation loss): a small validation set makes such ties common (4 of
    400 sequences wrong is 0.99 for every model that gets 4 wrong), and the first of them to finish is
    no better a pick than any other."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return []
    if len(study.directions) == 1:
        try:
            best = study.best_trial
        except ValueError:  # Optuna's best trial is a feasible one: every complete trial broke a constraint
            return []
        level = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if t.values == best.values and feasible(t)]
        return [min(level, key=tie_break)]  # Optuna's best is complete and feasible: it is among them
    return sorted(study.best_trials, key=lambda t: t.number)


def tie_break(trial: FrozenTrial | optuna.Trial) -> tuple[float, int]:
    """The order among trials with the same objective value, first is best: the lower validation loss (the
    model that is more sure of its right answers and less of its wrong ones), then the lower number."""
    return _number_or(trial.user_attrs.get(VAL_LOSS), math.inf), trial.number


def feasible(trial: FrozenTrial) -> bool:
    """Whether a complete trial met every constraint it was checked against (Optuna's rule: no value above 0)."""
    return all(v <= 0 for v in trial.constraints.values())


def pick_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial ``number`` (must be complete), or the best trial / first of the Pareto set."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise BadInput(f"study '{study.study_name}' has no completed trial yet; run the search first")
    if number is None:
        best = best_trials(study)
        if not best:
            raise BadInput(f"no completed trial of study '{study.study_name}' meets the space's constraints; "
                           f"pick one with --trial N (completed trials: {trial_numbers(complete)})")
        return best[0]
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            if t.state != TrialState.COMPLETE:
                raise BadInput(f"--trial {number}: trial #{number} is {t.state.name}, not COMPLETE; "
                               f"completed trials: {trial_numbers(complete)}")
            return t
    raise BadInput(f"--trial {number}: no such trial in study '{study.study_name}'; completed trials: {trial_numbers(complete)}")


def trial_numbers(trials: Sequence[FrozenTrial], limit: int = 20) -> str:
    """``"0, 2, 5"``: the trials' numbers for a message, the first ``limit`` of them then ``...``."""
    shown = ", ".join(str(t.number) for t in trials[:limit])
    return shown + (", ..." if len(trials) > limit else "")


def objective_names(study: optuna.Study) -> list[str]:
    """The objectives' names the search gave the study (``study.metric_names``: ``val accuracy``,
    ``val loss`` or a cost's name), else ``objective 1``, ``objective 2``, ..."""
    names = study.metric_names
    if names is None or len(names) != len(study.directions):
        names = [f"objective {i + 1}" for i in range(len(study.directions))]
    return list(names)


def representation_metrics(trial: FrozenTrial) -> dict[str, float]:
    """``{"aux.cds.cosine": value, "metric.oversmoothing": value, ...}``: the trial's numeric ``aux.*`` measurements,
    flattened, and its representation metrics (``metric.*``)."""
    out = {}
    for key, value in sorted(trial.user_attrs.items()):
        if key.startswith(METRIC_PREFIX) and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
        if not key.startswith(AUX_PREFIX):
            continue
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for sub, v in items:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[key if sub is None else f"{key}.{sub}"] = float(v)
    return out


MEASURED_PREFIXES = (METRIC_PREFIX, COST_PREFIX, PROXY_PREFIX)
"""Prefixes of the user attributes that each hold one measured number (``metric_details.*`` and
``cost_details.*`` are other prefixes: the explanations beside them, not measurements)."""


def measurements(trial: FrozenTrial) -> dict[str, float]:
    """Every finite number the trial measured, by attribute name: ``metric.*``, ``cost.*``, ``proxy.*``,
    ``params`` (unless ``cost.params`` holds it) and the flattened ``aux.*`` (:func:`representation_metrics`). Booleans, non-numbers and
    NaN or infinite values are left out."""
    out = {key: float(value) for key, value in trial.user_attrs.items()
           if (key == PARAMS or key.startswith(MEASURED_PREFIXES)) and finite_number(value) is not None}
    if COST_PREFIX + PARAMS in out:
        out.pop(PARAMS, None)  # the same number twice: keep the cost the space asked for
    out.update((key, value) for key, value in representation_metrics(trial).items() if math.isfinite(value))
    return dict(sorted(out.items()))


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite int or float (not a bool), else None."""
    number = _number_or(value, math.nan)
    return number if math.isfinite(number) else None


def trial_architecture(trial: FrozenTrial) -> nx.DiGraph:
    """The architecture graph a trial trained (from its ``architecture`` record).

    :raises BadInput: the record is missing or is not an architecture (changed outside iasf-search).
    """
    try:
        return arch.from_json(record(trial, ARCHITECTURE))
    except (arch.GraphError, TypeError) as exc:
        raise BadInput(f"trial #{trial.number}: its recorded architecture is damaged ({exc}); the study was changed "
                       f"outside iasf-search: restore its database from a backup, or choose another trial") from None


def trained_source(study: optuna.Study, trial: FrozenTrial) -> FrozenTrial:
    """The trial that actually trained ``trial``'s weights (itself, or the one it reused)."""
    number = trial.user_attrs.get(REUSED_FROM)
    if number is None:
        return trial
    return study.get_trials(deepcopy=False)[number]


def trial_weights(study: optuna.Study, trial: FrozenTrial, store: ArtifactStore) -> dict[str, torch.Tensor] | None:
    """The trial's trained weights from its checkpoint artifact, or None when it has none.

    :raises BadInput: the checkpoint is there but damaged (truncated, overwritten): one line naming the trial.
    """
    source = trained_source(study, trial)
    data = read_trial_file(study, source, store, CHECKPOINT)
    if data is None:
        return None
    try:
        return safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError (and others) on a damaged file
        raise BadInput(f"trial #{source.number}'s {CHECKPOINT} is damaged ({type(exc).__name__}: {str(exc)[:200]}); pick "
                       f"another trial with --trial N, or search again to train it anew") from None


def study_components(study: optuna.Study, plugins: Sequence[str] = ()) -> Components:
    """The plugins the study's space names (plus ``plugins``), with built-ins and entry points: the
    :attr:`StoredStudy.components` of :func:`stored_study`, loaded now."""
    return stored_study(study, plugins=plugins).components


def data_shape(study: optuna.Study) -> tuple[tuple[int, ...], int]:
    """``(sample_shape, num_classes)`` the study's models were built for."""
    data = study_data(study)
    if not data:
        raise BadInput(f"study '{study.study_name}' does not record its data shape (it was made by an older iasf-search); "
                       f"rerun its search with --study NEW_NAME")
    return tuple(data["sample_shape"]), int(data["num_classes"])


def data_padded(study: optuna.Study) -> bool:
    """Whether the study's samples are series padded to one length (:attr:`~iasf_search.components.TaskData.padded`)."""
    return bool(study_data(study).get("padded", False))


def rebuild_trial_model(study: optuna.Study, trial: FrozenTrial, store: ArtifactStore, components: Components) -> ArchNet | None:
    """The trial's trained model in eval mode on the CPU, or None when it kept no checkpoint."""
    weights = trial_weights(study, trial, store)
    if weights is None:
        return None
    sample_shape, num_classes = data_shape(study)
    model = build_model(trial_architecture(trial), components, sample_shape, num_classes, padded=data_padded(study))
    model.load_state_dict(weights)
    return model.eval()
