"""The ``evolution`` sampler: graph-aware regularized evolution (Real et al., 2019).

``search: {sampler: evolution, sampler_options: {population: 20, tournament: 5}}`` in a space.

Each new trial is a *child*: its parent is the best of ``tournament`` trials drawn uniformly at
random among the last ``population`` finished trials of the study (read from the storage for every
trial, so workers on one machine or many share one population; older trials age out). Finished
means COMPLETE, or PRUNED with a value (its last reported epoch's, as Optuna records it; with one
objective): a pruner that stops most trials early must not starve the population. In a tournament a
COMPLETE trial beats every pruned one, a feasible trial every one that broke a constraint. The child
is the parent's architecture with exactly one mutation of the graph (:data:`MUTATIONS`): add a node
(spliced into the parent's chain where it can be), remove a node, change one node's op, change one
setting (of an op, the stem, the width, a fusion), rewire one input (a node's first input, or one
of its extra inputs), or change a fusion (a node's or the output's); with probability
``mutate_training`` one training setting (``train.*`` or ``aux.*``) is drawn again as well.

The child is built by running the engine's own sampling code
(:func:`iasf_search.sampling.sample_trial`) on a :class:`Proposal`, which answers every
parameter with the mutated parent's value when the asked distribution holds it, and with a fresh
random value otherwise (a new node, a new op's parameters, a value outside a changed candidate
list). So a child always lies inside the space's bounds and conditions, and the parameters the
sampler serves are exactly those the trial asks for.

No architecture is proposed twice: a child whose :func:`iasf_search.graph.canonical_hash` equals
the ``arch_hash`` of a COMPLETE, PRUNED or RUNNING trial is discarded and another one is made (up
to :data:`MUTATION_ATTEMPTS`), then random architectures are tried (up to :data:`RANDOM_ATTEMPTS`);
only when all of them repeat one — the space seems exhausted — is a duplicate accepted (the
objective then reuses the finished twin's result when the training settings match too). Two
workers choosing at the same instant may still propose the same architecture, since neither has
recorded its hash yet. Until ``n_startup_trials`` trials are finished (default: ``population``),
trials are random architectures, duplicates avoided the same way.

Every proposed trial records the user attributes ``evolution_parent`` (the parent's trial number;
absent for a random architecture) and ``evolution_mutation`` (one line, e.g. ``change op of n1: conv
-> attention``). A trial with enqueued parameters (``fixed_params``, e.g. a retried trial) gets them,
with random values for any parameter they lack, and records neither.

Proposals are deterministic for a given seed and study state: each trial's choices come from a
generator seeded with ``(seed, trial number)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from iasf_search import graph as arch
from iasf_search import hookimpl
from iasf_search.components import SamplerFactory
from iasf_search.optuna_internals import storage_of
from iasf_search.params import Param, Range
from iasf_search.results.records import ARCH_HASH
from iasf_search.sampling import sample_trial

if TYPE_CHECKING:
    from iasf_search.plugin_manager import Components
    from iasf_search.session import Session
    from iasf_search.space import SearchSpace

EVOLUTION_PARENT = "evolution_parent"
"""User attribute: the trial number of the child's parent (absent for a random architecture)."""
EVOLUTION_MUTATION = "evolution_mutation"
"""User attribute: one line saying how the child differs from its parent (or why it is random)."""
MUTATIONS = ("add_node", "remove_node", "change_op", "change_setting", "rewire", "change_fusion")
"""The kinds of graph mutation; a child gets exactly one."""
MUTATION_ATTEMPTS = 50
"""Children made (each from a new tournament) before falling back to random architectures."""
RANDOM_ATTEMPTS = 500
"""Random architectures tried before a duplicate is accepted (the space seems exhausted). Each costs a
millisecond or two, and all are tried only when nearly every architecture has been: in a space of 18
architectures where the rarest has a chance of 1 in 32 to be drawn, the last one is then missed
with a chance of 1 in 10 million."""
SEEN_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
"""Trials whose architecture is never proposed again."""

_NODE_PARAM = re.compile(r"^(n\d+)\.(.+)$")
_MISSING = object()


# -- distributions ----------------------------------------------------------------------------------


def contains(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` (external representation) is one ``distribution`` can give: a listed choice
    (of the same type: ``1`` is not ``True``), or a number within the bounds and on the step."""
    if isinstance(distribution, CategoricalDistribution):
        return any(type(c) is type(value) and c == value for c in distribution.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(distribution, IntDistribution):
        return isinstance(value, int) and distribution.low <= value <= distribution.high and (
            value - distribution.low) % distribution.step == 0
    if isinstance(distribution, FloatDistribution):
        if not math.isfinite(value) or not distribution.low <= value <= distribution.high:
            return False
        if distribution.step is None:
            return True
        k = (value - distribution.low) / distribution.step
        return abs(k - round(k)) < 1.0e-8
    return False


def draw(distribution: BaseDistribution, rng: np.random.Generator) -> Any:
    """A random value of ``distribution``: uniform over choices or steps, log-uniform for ``log`` ranges."""
    d = distribution
    if isinstance(d, CategoricalDistribution):
        return d.choices[int(rng.integers(len(d.choices)))]
    if isinstance(d, IntDistribution):
        if d.log:
            value = round(math.exp(rng.uniform(math.log(d.low - 0.5), math.log(d.high + 0.5))))
            return int(min(max(value, d.low), d.high))
        return int(d.low + d.step * int(rng.integers((d.high - d.low) // d.step + 1)))
    if isinstance(d, FloatDistribution):
        if d.log:
            return float(min(max(math.exp(rng.uniform(math.log(d.low), math.log(d.high))), d.low), d.high))
        if d.step is not None:
            return float(min(d.low + d.step * int(rng.integers(round((d.high - d.low) / d.step) + 1)), d.high))
        return float(rng.uniform(d.low, d.high))
    raise TypeError(f"unsupported distribution {d!r}")


def other_value(distribution: BaseDistribution, current: Any, rng: np.random.Generator) -> Any:
    """A random value of ``distribution`` other than ``current``, or ``_MISSING`` if it has none."""
    if isinstance(distribution, CategoricalDistribution):
        others = [c for c in distribution.choices if not (type(c) is type(current) and c == current)]
        return others[int(rng.integers(len(others)))] if others else _MISSING
    for _ in range(100):
        value = draw(distribution, rng)
        if value != current:
            return value
    return _MISSING


def _single_value(distribution: BaseDistribution) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[0]
    return distribution.low


# -- proposals --------------------------------------------------------------------------------------


class Proposal:
    """Stands in for an ``optuna.Trial`` while :func:`~iasf_search.sampling.sample_trial` runs.

    Each asked parameter gets ``values[name]`` when the asked distribution contains it, else a fresh
    random value (:func:`draw`, recorded in ``drawn``). What was asked is kept in ``params`` and
    ``distributions``, in the order asked.
    """

    def __init__(self, values: Mapping[str, Any], rng: np.random.Generator) -> None:
        self.values = values
        self.rng = rng
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}
        self.drawn: list[str] = []

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._suggest(name, CategoricalDistribution(tuple(choices)))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return self._suggest(name, IntDistribution(low, high, log=log, step=step))

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        return self._suggest(name, FloatDistribution(low, high, log=log, step=step))

    def _suggest(self, name: str, distribution: BaseDistribution) -> Any:
        if name in self.params:
            return self.params[name]
        if distribution.single():
            value = _single_value(distribution)
        elif name in self.values and contains(distribution, self.values[name]):
            value = self.values[name]
        else:
            value = draw(distribution, self.rng)
            self.drawn.append(name)
        self.params[name] = value
        self.distributions[name] = distribution
        return value


@dataclass
class Candidate:
    """A complete proposal: every parameter the trial will ask, and the architecture they give."""

    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    graph: nx.DiGraph
    arch_hash: str
    drawn: list[str]
    """Parameters that got a fresh random value (not taken from the values given)."""


def build(values: Mapping[str, Any], space: SearchSpace, components: Components, rng: np.random.Generator) -> Candidate:
    """Run the space's sampling code on a :class:`Proposal` of ``values`` ({}: a random architecture)."""
    proposal = Proposal(values, rng)
    graph, _, _ = sample_trial(proposal, space, components)
    return Candidate(proposal.params, proposal.distributions, graph, arch.canonical_hash(graph), proposal.drawn)


# -- mutations --------------------------------------------------------------------------------------


@dataclass
class Mutation:
    """A mutated parent's parameter values (not yet a valid proposal) and what changed, in words."""

    kind: str
    values: dict[str, Any]
    text: str
    new_node: str | None = None


@dataclass
class Child:
    """A proposed trial: its candidate, its parent's trial number (None when random), how it was made."""

    candidate: Candidate
    parent: int | None
    kind: str
    """One of :data:`MUTATIONS`, or ``random``."""
    text: str


def param_kind(name: str) -> str:
    """What a parameter is for a mutation: ``nodes`` (``arch.nodes``), ``op``, ``wiring`` (``n<i>.in0``,
    ``n<i>.in.<src>``), ``fusion`` (``n<i>.fusion``, ``output.fusion``), ``training`` (``train.*``,
    ``aux.*``), or ``setting`` (anything else: width, stem, op and fusion parameters)."""
    if name == "arch.nodes":
        return "nodes"
    if name.startswith(("train.", "aux.")):
        return "training"
    if name == "output.fusion":
        return "fusion"
    m = _NODE_PARAM.match(name)
    if m:
        rest = m.group(2)
        if rest == "op":
            return "op"
        if rest == "fusion":
            return "fusion"
        if rest == "in0" or rest.startswith("in."):
            return "wiring"
    return "setting"


def _mutable(parent: Candidate, kind: str) -> list[str]:
    """The parent's asked parameters of ``kind`` that can take another value."""
    return [n for n, d in parent.distributions.items() if param_kind(n) == kind and not d.single()]


def _node_count(parent: Candidate) -> int:
    return len(arch.hidden_nodes(parent.graph))


def _resizable(parent: Candidate, delta: int) -> bool:
    dist = parent.distributions.get("arch.nodes")
    return dist is not None and contains(dist, _node_count(parent) + delta)


def applicable(parent: Candidate) -> list[str]:
    """The mutation kinds that can change ``parent`` (in :data:`MUTATIONS` order)."""
    can = {"add_node": _resizable(parent, 1), "remove_node": _resizable(parent, -1),
           "change_op": bool(_mutable(parent, "op")), "change_setting": bool(_mutable(parent, "setting")),
           "rewire": bool(_mutable(parent, "wiring")), "change_fusion": bool(_mutable(parent, "fusion"))}
    return [k for k in MUTATIONS if can[k]]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _change(parent: Candidate, kind: str, rng: np.random.Generator) -> tuple[str, Any, Any] | None:
    """One parameter of ``kind`` given another value: ``(name, old, new)``, or None when none can change."""
    names = _mutable(parent, kind)
    if not names:
        return None
    name = _pick(names, rng)
    new = other_value(parent.distributions[name], parent.params[name], rng)
    return None if new is _MISSING else (name, parent.params[name], new)


def renumber(values: Mapping[str, Any], rename: Mapping[str, str], drop: str | None = None) -> dict[str, Any]:
    """``values`` with node names changed by ``rename`` (old name -> new name), both in parameter names
    (``n<i>.*``, the source in ``n<i>.in.<src>``) and in first-input values (``n<i>.in0``); the
    parameters of node ``drop`` removed. Extra-input flags that come to name one source are OR-ed."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        m = _NODE_PARAM.match(name)
        if not m:
            out[name] = value
            continue
        node, rest = m.group(1), m.group(2)
        if node == drop:
            continue
        node = rename.get(node, node)
        if rest == "in0":
            value = rename.get(value, value) if isinstance(value, str) else value
        elif rest.startswith("in."):
            rest = "in." + rename.get(rest[3:], rest[3:])
            value = bool(value) or bool(out.get(f"{node}.{rest}", False))
        out[f"{node}.{rest}"] = value
    return out


def _add_node(parent: Candidate, rng: np.random.Generator) -> Mutation:
    """Insert a node at a random position, reading the node before it; the node after it, when it
    read that one first, reads the new node instead (spliced into the chain). Later nodes are
    renumbered and do not read the new node otherwise; its op and settings are drawn at random."""
    n = _node_count(parent)
    i = int(rng.integers(n + 1))
    new, prev = arch.node_name(i), arch.INPUT if i == 0 else arch.node_name(i - 1)
    values = renumber(parent.params, {arch.node_name(j): arch.node_name(j + 1) for j in range(i, n)})
    values["arch.nodes"] = n + 1
    values[f"{new}.in0"] = prev
    for src in [arch.INPUT, *(arch.node_name(j) for j in range(i))]:
        values[f"{new}.in.{src}"] = False
    text = f"add node {new} after {prev}"
    if i < n and arch.inputs_of(parent.graph, arch.node_name(i))[0] == prev:
        after = arch.node_name(i + 1)
        values[f"{after}.in0"] = new
        values[f"{after}.in.{prev}"] = False
        text += f", before {after}"
    for j in range(i + 1, n + 1):
        values.setdefault(f"{arch.node_name(j)}.in.{new}", False)
    return Mutation("add_node", values, text, new_node=new)


def _remove_node(parent: Candidate, rng: np.random.Generator) -> Mutation:
    """Remove a random node; later nodes are renumbered and what read it reads its first input."""
    n = _node_count(parent)
    k = int(rng.integers(n))
    gone = arch.node_name(k)
    first = arch.inputs_of(parent.graph, gone)[0]
    rename = {gone: first, **{arch.node_name(j): arch.node_name(j - 1) for j in range(k + 1, n)}}
    values = renumber(parent.params, rename, drop=gone)
    values["arch.nodes"] = n - 1
    return Mutation("remove_node", values, f"remove node {gone} ({parent.graph.nodes[gone]['op']})")


def _owner(name: str) -> str:
    """The node a parameter belongs to (``n1``, ``output``), or its first part."""
    return name.split(".", 1)[0]


Mutator = Callable[[Candidate, np.random.Generator], Mutation | None]
"""``mutator(parent, rng)``: the mutated values and their description (None: no change found)."""


def _one_change(kind: str, param: str, describe: Callable[[str, Any, Any], str]) -> Mutator:
    """A mutator giving one parameter of kind ``param`` another value, described by ``describe(name, old, new)``."""

    def mutate(parent: Candidate, rng: np.random.Generator) -> Mutation | None:
        change = _change(parent, param, rng)
        if change is None:
            return None
        name, old, new = change
        return Mutation(kind, {**parent.params, name: new}, describe(name, old, new))

    return mutate


def _describe_wiring(name: str, old: Any, new: Any) -> str:
    node, rest = name.split(".", 1)
    if rest == "in0":
        return f"rewire {node}: first input {old} -> {new}"
    return f"rewire {node}: {'add' if new else 'drop'} extra input {rest[3:]}"


MUTATORS: dict[str, Mutator] = {
    "add_node": _add_node,
    "remove_node": _remove_node,
    "change_op": _one_change("change_op", "op", lambda name, old, new: f"change op of {_owner(name)}: {old} -> {new}"),
    "change_setting": _one_change("change_setting", "setting", lambda name, old, new: f"change {name}: {_fmt(old)} -> {_fmt(new)}"),
    "rewire": _one_change("rewire", "wiring", _describe_wiring),
    "change_fusion": _one_change("change_fusion", "fusion",
                                 lambda name, old, new: f"change fusion of {_owner(name)}: {old} -> {new}"),
}
"""Mutation kind -> its mutator."""


def mutate(parent: Candidate, space: SearchSpace, components: Components, rng: np.random.Generator, *,
           mutate_training: float = 0.2, kind: str | None = None) -> Child | None:
    """A child of ``parent`` (a :func:`build` of the parent's parameters): one graph mutation of a kind
    drawn among the :func:`applicable` ones (or ``kind``), and with probability ``mutate_training`` one
    training setting drawn again. None when the mutation leaves the architecture unchanged (its hash
    equals the parent's) or no mutation applies. ``Child.parent`` is left None for the caller to set."""
    kinds = applicable(parent)
    if kind is None:
        if not kinds:
            return None
        kind = _pick(kinds, rng)
    elif kind not in kinds:
        return None
    mutation = MUTATORS[kind](parent, rng)
    if mutation is None:
        return None
    training = ""
    if rng.random() < mutate_training:
        change = _change(parent, "training", rng)  # a graph mutation leaves the training settings as they were
        if change is not None:
            name, old, new = change
            mutation.values[name] = new
            training = f"; {name}: {_fmt(old)} -> {_fmt(new)}"
    child = build(mutation.values, space, components, rng)
    if child.arch_hash == parent.arch_hash:
        return None
    text = mutation.text
    if mutation.new_node is not None:
        text += f" ({child.graph.nodes[mutation.new_node]['op']})"
    return Child(child, None, kind, text + training)


# -- parent selection -------------------------------------------------------------------------------


def _signed(trial: FrozenTrial, directions: Sequence[StudyDirection]) -> tuple[float, ...]:
    """The trial's values, negated where minimised (larger is better in every position)."""
    return tuple(v if d == StudyDirection.MAXIMIZE else -v for v, d in zip(trial.values, directions, strict=True))


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def in_population(trial: FrozenTrial) -> bool:
    """Whether a trial can be a parent: COMPLETE, or PRUNED with values (Optuna gives a pruned trial of a
    one-objective study its last reported value)."""
    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.PRUNED and trial.values is not None)


def tournament_winner(contestants: Sequence[FrozenTrial], directions: Sequence[StudyDirection],
                      rng: np.random.Generator) -> FrozenTrial:
    """The best of ``contestants``: with one objective the best value; with several, one of those no
    other contestant dominates (non-dominated rank 0 within the tournament). Contestants that break a
    constraint (a representation metric's bound, checked after training) take part only when all do,
    pruned ones (valued at an early epoch) only when no complete one is left. Ties are broken at random."""
    feasible = [t for t in contestants if all(v <= 0 for v in t.constraints.values())]
    contestants = feasible or contestants
    complete = [t for t in contestants if t.state == TrialState.COMPLETE]
    contestants = complete or contestants
    scores = [_signed(t, directions) for t in contestants]
    if len(directions) == 1:
        best = max(scores)
        front = [t for t, s in zip(contestants, scores, strict=True) if s == best]
    else:
        front = [t for t, s in zip(contestants, scores, strict=True) if not any(_dominates(o, s) for o in scores)]
    return front[int(rng.integers(len(front)))]


# -- the sampler ------------------------------------------------------------------------------------


class EvolutionSampler(optuna.samplers.BaseSampler):
    """Regularized evolution over architecture graphs (see the module docstring for the contract).

    :param session: the space and its plugins (the child is built with the space's own sampling code).
    :param population: the last this many finished trials (complete, or pruned with a value) are the population.
    :param tournament: contestants drawn from the population; the best is the parent.
    :param mutate_training: probability that a child also draws one training setting again.
    :param n_startup_trials: random architectures until this many trials are finished (None: ``population``).
    :param seed: seeds every choice, with the trial number.
    """

    def __init__(self, session: Session, *, population: int = 20, tournament: int = 5, mutate_training: float = 0.2,
                 n_startup_trials: int | None = None, seed: int | None = None) -> None:
        if not 1 <= tournament <= population:
            raise ValueError(f"tournament must be between 1 and population ({population}), got {tournament}")
        self.space, self.components = session.space, session.components
        self.population, self.tournament, self.mutate_training = population, tournament, mutate_training
        self.n_startup_trials = population if n_startup_trials is None else n_startup_trials
        self._seed = _seed(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._proposals: dict[tuple[str, int], dict[str, Any]] = {}

    def reseed_rng(self) -> None:
        self._seed = _seed(None)
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """The proposal's value when the asked distribution contains it, else a random one."""
        values = self._proposals.get((study.study_name, trial.number), {})
        if param_name in values and contains(param_distribution, values[param_name]):
            return values[param_name]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Build the whole proposal of ``trial`` (kept until :meth:`after_trial`) and record how it was made."""
        rng = np.random.default_rng([self._seed, trial.number])
        fixed = trial.system_attrs.get("fixed_params")
        if fixed:  # enqueued (or retried): its own values, random ones for what it lacks
            self._proposals[(study.study_name, trial.number)] = build(fixed, self.space, self.components, rng).params
            return
        child = self.propose(study, rng)
        self._proposals[(study.study_name, trial.number)] = child.candidate.params
        _record(study, trial.number, child)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._proposals.pop((study.study_name, trial.number), None)

    def propose(self, study: optuna.Study, rng: np.random.Generator) -> Child:
        """The next trial's proposal given the study's trials as the storage holds them now."""
        trials = _all_trials(study)
        seen = {t.user_attrs.get(ARCH_HASH) for t in trials if t.state in SEEN_STATES} - {None}
        finished = sorted((t for t in trials if in_population(t)),
                          key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number))
        why = f"startup ({len(finished)}/{self.n_startup_trials} finished)"
        if finished and len(finished) >= self.n_startup_trials:
            child = self._evolve(finished[-self.population:], study.directions, seen, rng)
            if child is not None:
                return child
            why = f"no new child in {MUTATION_ATTEMPTS} mutations"
        return self._random_child(seen, rng, why)

    def _evolve(self, population: Sequence[FrozenTrial], directions: Sequence[StudyDirection], seen: set[str],
                rng: np.random.Generator) -> Child | None:
        """A child of a tournament winner whose architecture is not in ``seen`` (a new tournament each try)."""
        for _ in range(MUTATION_ATTEMPTS):
            picks = rng.choice(len(population), size=min(self.tournament, len(population)), replace=False)
            parent = tournament_winner([population[int(i)] for i in picks], directions, rng)
            base = build(parent.params, self.space, self.components, rng)
            child = mutate(base, self.space, self.components, rng, mutate_training=self.mutate_training)
            if child is not None and child.candidate.arch_hash not in seen:
                child.parent = parent.number
                return child
        return None

    def _random_child(self, seen: set[str], rng: np.random.Generator, why: str) -> Child:
        """A random architecture not in ``seen``; after :data:`RANDOM_ATTEMPTS` repeats, a repeated one."""
        for _ in range(RANDOM_ATTEMPTS):
            candidate = build({}, self.space, self.components, rng)
            if candidate.arch_hash not in seen:
                return Child(candidate, None, "random", f"random: {why}")
        return Child(candidate, None, "random",
                     f"random: {why}; a repeated architecture (every one of {RANDOM_ATTEMPTS} tries was): the space seems exhausted")


def _seed(seed: int | None) -> int:
    """A non-negative seed for numpy (any int; None: a fresh one)."""
    return int(np.random.SeedSequence().entropy) % 2**63 if seed is None else seed % 2**63


def _all_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Every trial of the study, as the storage holds it now (all brackets, every worker's)."""
    storage = storage_of(study)
    return storage.get_all_trials(storage.get_study_id_from_name(study.study_name), deepcopy=False)


def _record(study: optuna.Study, number: int, child: Child) -> None:
    """Write ``evolution_parent`` (unless random) and ``evolution_mutation`` on trial ``number``."""
    storage = storage_of(study)
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)
    if child.parent is not None:
        storage.set_trial_user_attr(trial_id, EVOLUTION_PARENT, child.parent)
    storage.set_trial_user_attr(trial_id, EVOLUTION_MUTATION, child.text)


# -- the factory ------------------------------------------------------------------------------------


class Evolution(SamplerFactory):
    name = "evolution"
    description = ("graph-aware regularized evolution: the best of a random tournament among the last finished "
                   "trials is mutated once (add/remove a node, change an op, a setting, an input or a fusion); "
                   "no architecture is proposed twice")
    needs_session = True
    params = {
        "population": Param(20, int, low=2, help="the last this many finished trials are the population"),
        "tournament": Param(5, int, low=1, help="contestants drawn from the population; the best is the parent"),
        "mutate_training": Param(0.2, float, low=0.0, high=1.0,
                                 help="probability that a child also draws one training setting again"),
        "n_startup_trials": Param(None, int, low=0, nullable=True,
                                  help="random architectures until this many trials are finished (null: population)"),
    }

    def check_ranges(self, ranges: Mapping[str, Range], *, widths: tuple[int, ...] | None) -> tuple[str, str] | None:
        tournament, population = ranges["tournament"].fixed, ranges["population"].fixed
        if tournament > population:
            return "tournament", f"{tournament} is larger than the population ({population}); give at most {population}"
        return None

    def create(self, options: Mapping[str, Any], *, seed: int | None, n_objectives: int,
               session: Session | None = None) -> optuna.samplers.BaseSampler:
        if session is None:
            raise TypeError("the evolution sampler needs session= (the space and its plugins)")
        return EvolutionSampler(session, population=options["population"], tournament=options["tournament"],
                                mutate_training=options["mutate_training"], n_startup_trials=options["n_startup_trials"],
                                seed=seed)


@hookimpl
def iasf_register_samplers(registry) -> None:
    registry.register(Evolution())
