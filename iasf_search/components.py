"""The contracts that plugins implement: node operations, fusions, readouts, norms, stems, datasets, samplers, pruners.

Each contract is a small abstract class. A plugin registers *instances* of them through the
``iasf_register_*`` hooks (see :mod:`iasf_search.hookspecs`). Every component has a ``name``
(the word used in space files) and a ``params`` mapping of :class:`~iasf_search.params.Param`
declarations that the space file may narrow; the core validates the space against these
declarations, samples them with Optuna and hands the sampled values back as a plain ``dict``.

**Padding.** A module's ``forward`` may take a ``mask`` keyword: for series padded to one length
(:attr:`TaskData.padded`) it then gets the padding mask ``(B, T)`` bool, True at real tokens (None for a batch
of a task without padding). A module without that keyword keeps working: it is called as before and sees
padded tokens as zeros (:mod:`iasf_search.build`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import optuna
import torch
from torch import nn

from iasf_search.params import Param, Range
from iasf_search.settings import SPLIT_PARAMS

if TYPE_CHECKING:
    import networkx as nx

    from iasf_search.plugin_manager import Components
    from iasf_search.space.spec import SearchSpace

Suggest = Callable[[str], Any]
"""``suggest(param_name)`` samples one declared parameter of a component in the current trial."""


@dataclass(frozen=True)
class TokenLayout:
    """How the tokens a stem emits are arranged.

    :param shape: the token grid: ``(T,)`` for a sequence, ``(H, W)`` for an image's patches.
        Ops that care about locality (convolution, local attention) use it; ``T = prod(shape)``.
    """

    shape: tuple[int, ...]

    @property
    def length(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def coordinates(self) -> torch.Tensor:
        """``(T, len(shape))`` integer grid coordinates of every token, in token order."""
        axes = [torch.arange(s) for s in self.shape]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(self.length, len(self.shape))


@dataclass(frozen=True)
class BuildContext:
    """What a component is told when it builds its module.

    :param width: the token width ``D`` every node reads and writes.
    :param layout: the token arrangement the stem produced.
    """

    width: int
    layout: TokenLayout


class Component(ABC):
    """Common part of every registered component: a ``name`` and its declared ``params``."""

    name: ClassVar[str]
    params: ClassVar[Mapping[str, Param]] = {}
    description: ClassVar[str] = ""

    def sample(self, ranges: Mapping[str, Range], suggest: Suggest) -> dict[str, Any]:
        """Return this component's configuration for one trial.

        The default samples every declared parameter. Override to make parameters conditional
        (for example ``window`` only for local attention); call ``suggest(name)`` for each one used.
        """
        return {name: suggest(name) for name in ranges}

    def check_ranges(self, ranges: Mapping[str, Range], *, widths: tuple[int, ...] | None) -> tuple[str, str] | None:
        """Cross-parameter check when the space is loaded: ``(param, problem)`` if some value the
        space allows could never build, else None. ``widths``: every width the space allows (None
        when it is too large a range to enumerate). The default accepts everything."""
        return None

    def describe(self, config: Mapping[str, Any]) -> str:
        """A short human label for a configured component, used in progress lines."""
        inner = ",".join(f"{v}" for v in config.values())
        return f"{self.name}({inner})" if inner else self.name


class NodeOp(Component):
    """A token-mixing operation: the module maps ``(B, T, D) -> (B, T, D)``.

    The core wraps it as ``x + op(norm(x))`` (pre-norm residual) unless ``residual`` is False,
    in which case the op's output replaces its input (``identity`` does this). Padding: see
    the module's docstring (``forward(x, mask=None)``).
    """

    residual: ClassVar[bool] = True

    @abstractmethod
    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        """Return a module ``(B, T, D) -> (B, T, D)`` for ``config`` (the sampled parameters)."""


class Fusion(Component):
    """A synthesis operator for a node with several inputs: ``list[(B, T, D)] -> (B, T, D)``. Padding: see
    the module's docstring (``forward(inputs, mask=None)``)."""

    @abstractmethod
    def build(self, config: Mapping[str, Any], n_inputs: int, ctx: BuildContext) -> nn.Module:
        """Return a module whose ``forward(inputs: list[Tensor])`` fuses ``n_inputs`` tensors."""


class Readout(Component):
    """How the head reads the output node: normalised tokens ``(B, T, D) -> (B, F)`` features, then
    ``Linear(F, classes)``. Chosen per architecture from ``manifold.readouts``; ``mean`` when a graph names none.
    Padding: see the module's docstring (``forward(x, mask=None)``); a readout that pools over tokens should take it.
    """

    def features(self, config: Mapping[str, Any], ctx: BuildContext) -> int:
        """``F``, the size of the feature vector the module returns; default ``ctx.width`` (``D``)."""
        return ctx.width

    @abstractmethod
    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        """Return a module ``(B, T, D) -> (B, F)``; ``ctx.layout.length`` is ``T``."""


class Norm(Component):
    """The normalisation a residual node applies before its op: ``x + op(norm(x))``. Chosen per node
    from ``manifold.norms``; ``layer`` when a node names none. Non-residual ops get no norm. Padding: see
    the module's docstring; a norm with statistics over tokens should take the mask."""

    @abstractmethod
    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        """Return a module ``(B, T, D) -> (B, T, D)``."""


class Stem(Component):
    """Turns a batch of raw inputs of one modality into tokens ``(B, T, D)``; ``name`` is the modality.

    A stem whose module also defines ``padding_mask(x) -> (B, T) bool`` (True at tokens covering real values;
    ``x`` still holds its NaN padding) takes padded tasks (:attr:`TaskData.padded`); the model sets the NaN to
    zero before calling ``forward``. The built-in ``sequence`` stem does.
    """

    @abstractmethod
    def layout(self, config: Mapping[str, Any], sample_shape: tuple[int, ...]) -> TokenLayout:
        """The token layout for inputs of ``sample_shape`` (one sample, without the batch axis)."""

    @abstractmethod
    def build(self, config: Mapping[str, Any], sample_shape: tuple[int, ...], width: int) -> nn.Module:
        """Return a module ``(B, *sample_shape) -> (B, T, width)``."""


@dataclass
class TaskData:
    """An in-memory classification task, split three ways.

    ``x_*`` are float tensors ``(N, *sample_shape)``, ``y_*`` int64 labels in ``[0, num_classes)``.
    Model selection uses ``val`` only; ``test`` is evaluated for reporting.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    modality: str
    info: dict[str, Any] = field(default_factory=dict)
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    """Optional training-time augmentation of a batch ``x`` (same shape out), drawn from ``generator``."""
    padded: bool = False
    """Samples ``(T, ...)`` of unequal lengths, padded to one length ``T`` with NaN at their end (every
    feature of a padded step is NaN; no other value is NaN): models are built to mask it (:mod:`iasf_search.build`)."""

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> TaskData:
        """A copy with every tensor on ``device`` (so batches need no host-to-device copy)."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return TaskData(**moved)


class Dataset(Component):
    """A dataset: loads (or generates) data offline and splits it.

    ``params`` here are *options* (fixed values such as a path), not searched ranges.
    """

    modality: ClassVar[str]

    @abstractmethod
    def load(self, options: Mapping[str, Any], split: SplitSpec) -> TaskData:
        """Return the task's splits; raise :class:`~iasf_search.errors.BadInput` for unusable data."""


@dataclass(frozen=True)
class SplitSpec:
    """Fractions of the data held out for validation and test, the shuffling seed, and cross-validation.

    A dataset plugin splits by ``val``, ``test`` and ``seed`` only. ``folds`` and ``repeats`` are the
    engine's: with ``folds`` set, it pools the training and validation splits a dataset returns and
    cross-validates over them (:mod:`iasf_search.trial.cross_validation`).
    """

    val: float = SPLIT_PARAMS["val"].default
    test: float = SPLIT_PARAMS["test"].default
    seed: int = SPLIT_PARAMS["seed"].default
    folds: int | None = SPLIT_PARAMS["folds"].default
    repeats: int = SPLIT_PARAMS["repeats"].default


class AuxObjective(Component):
    """An auxiliary training objective over the nodes' representations (seed: meta-representation levels).

    The training loss becomes ``cross_entropy + sum(weight * objective.loss(...))``; the reported
    metrics are never changed. Every objective declares a ``weight`` parameter (fixed or searched).
    After training, :meth:`measure` is called on a validation batch and its values are stored on
    the trial as ``aux.<name>.<key>``.
    """

    needs_fusion_inputs: ClassVar[bool] = False
    """Set True when :meth:`loss` or :meth:`measure` reads ``forward.fusion_inputs``."""
    needs_double_backward: ClassVar[bool] = False
    """Set True when :meth:`loss` differentiates gradients (``create_graph=True``): the forward
    pass then runs attention with the math kernel, the one with a second derivative on every device."""

    def build(self, config: Mapping[str, Any], forward: Any, width: int) -> nn.Module:
        """Trainable helper modules (e.g. decoders) for one model; ``forward`` is a
        :class:`~iasf_search.build.ForwardPass` of that model on a tiny batch. Default: none."""
        return nn.Module()

    @abstractmethod
    def loss(self, module: nn.Module, config: Mapping[str, Any], forward: Any, targets: torch.Tensor) -> torch.Tensor:
        """The objective's scalar term (before ``weight``) for one training batch."""

    def measure(self, module: nn.Module, config: Mapping[str, Any], forward: Any, targets: torch.Tensor) -> dict[str, float]:
        """Values recorded after training (on a validation batch); default ``{"loss": loss}``."""
        return {"loss": float(self.loss(module, config, forward, targets).detach())}


@dataclass(frozen=True)
class Measurement:
    """What a :class:`CostModel` may return instead of a bare number: the ``value`` (the cost) and
    ``details`` about how it was obtained (e.g. the spread of repeated timings), recorded on the
    trial as the user attribute ``cost_details.<name>``."""

    value: float
    details: Mapping[str, Any] = field(default_factory=dict)


class CostModel(Component):
    """A cost of a built model (parameters, FLOPs, latency, memory, ...), measured before training.

    Costs named in the space's ``costs:`` list, used as an objective metric, or bounded in
    ``constraints:`` are recorded on every trial as ``cost.<name>``. Lower is cheaper.
    """

    unit: ClassVar[str] = ""
    deterministic: ClassVar[bool] = True
    """False for measured costs (latency) that vary from one measurement to the next."""

    @abstractmethod
    def measure(self, model: nn.Module, example: torch.Tensor, device: torch.device,
                options: Mapping[str, Any]) -> float | Measurement:
        """The cost of ``model`` (on ``device``, in eval mode) for ``example``, a batch of real inputs.

        ``options`` are the validated values of ``params`` from the space's ``costs:`` entry.
        Return a number, or a :class:`Measurement` to record details (spread, settings) beside it.
        The model must be left as it was found (same weights, eval mode, same device).
        """


@dataclass
class Representations:
    """What a trained model computes on a fixed validation batch, for :class:`RepresentationMetric`s.

    :param tokens: each node's output ``(B, T, D)`` in graph order: ``input`` (the stem's tokens), the
        hidden nodes ``n0, n1, ...``, and ``output`` (the fused input of the head), float32, no gradient.
    :param levels: each hidden node's level: the length of the longest path from the stem to it
        (``input`` is level 0); ``output`` (a fusion, no op) that of the deepest node it reads.
    :param ops: each hidden node's op name.
    :param pooled: the readout's features ``(B, F)``: the embedding the head classifies.
    :param attention: the attention probabilities ``(B, heads, T, T)`` of every node whose op exposes
        ``attention_weights`` (rows: queries; masked keys exactly 0).
    :param layout: the stem's token grid; ``layout.coordinates()`` places tokens for distances.
    :param labels: the batch's int64 labels ``(B,)``.
    :param cache: a scratch dict that metrics may share work through (e.g. one persistence
        diagram for two metrics); keys are the metric's own.
    :param mask: for padded series (:attr:`TaskData.padded`), ``(B, T)`` bool, True at real tokens (padded
        tokens are zeros in ``tokens``); None otherwise.
    """

    tokens: dict[str, torch.Tensor]
    levels: dict[str, int]
    ops: dict[str, str]
    pooled: torch.Tensor
    attention: dict[str, torch.Tensor]
    layout: TokenLayout
    labels: torch.Tensor
    cache: dict[str, Any] = field(default_factory=dict)
    mask: torch.Tensor | None = None


class RepresentationMetric(Component):
    """A measurement of a trained model's representations (seed 003's manifold vocabulary, made concrete).

    Measured after training on the space's fixed validation batch (``metrics.batch``), recorded on the
    trial as ``metric.<name>`` (the number) and ``metric_details.<name>`` (per node, and how it was
    measured); usable in ``objectives:`` (default direction :attr:`direction`) and ``constraints:``
    (``{min: ...}`` / ``{max: ...}``). Contract of :meth:`measure`:

    * read only what :class:`Representations` holds; everything is on the CPU, float32, no gradient;
    * return a :class:`Measurement` with a finite ``value`` (``details`` JSON-serialisable, e.g.
      ``{"per_node": {"n0": 0.4, ...}}``), or None when the metric does not apply to the architecture
      (``attention_entropy`` of a graph without attention); such a trial then records no value, and
      an objective or constraint on the metric fails it with that reason.
    """

    direction: ClassVar[str] = "maximize"
    """The direction an objective naming this metric takes when the space gives none."""
    default: ClassVar[bool] = False
    """Recorded on every trial of a space without a ``metrics:`` section (built-ins that need no extra package)."""

    def unavailable(self) -> str | None:
        """Why the metric cannot be measured on this installation (e.g. an extra package is missing), else None.
        A space naming an unavailable metric is refused when it loads, with this reason."""
        return None

    @abstractmethod
    def measure(self, reps: Representations, options: Mapping[str, Any]) -> Measurement | None:
        """The metric of the model that produced ``reps``; ``options``: the validated ``params`` from the space."""


class ZeroCostProxy(Component):
    """A training-free score of an untrained model: higher means predicted better after training.

    Proxies named in ``search.proxies`` are recorded on every trial as ``proxy.<name>``; the one named
    in ``search.prescreen`` ranks sampled candidates so that only the best are trained (see
    :mod:`iasf_search.search.prescreen`). Contract of :meth:`score`:

    * ``model`` is freshly initialised, on ``device``, in train mode;
    * the proxy must not change it: no weight, buffer (BatchNorm statistics) or mode change and no
      gradient left behind. Work on ``copy.deepcopy(model)`` (or restore what you change);
    * ``x`` is a batch of real training samples in the dataset's layout (``(B, C, H, W)`` images,
      ``(B, T, F)`` sequences, ``(B, T)`` int64 token ids for text), ``y`` their int64 labels;
      a proxy that builds other inputs (synflow's all-ones input) must keep token ids valid ids;
    * return a finite float; the global random state is saved and restored by the engine.
    """

    @abstractmethod
    def score(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
        """The proxy's value for ``model`` (higher: predicted better) on the batch ``(x, y)``."""


class SpaceSection(Component):
    """A top-level section of the space file owned by a plugin (e.g. a logger's settings).

    ``name`` is the section's key; ``params`` declare its keys (fixed values: type, allowed values,
    defaults). The validated values are in ``space.sections[name]`` for the plugin's hooks.
    """


class SamplerFactory(Component):
    """Builds an Optuna sampler by name (``search.sampler`` in the space).

    Options that constrain each other (e.g. a tournament no larger than the population) are checked
    when the space is loaded by :meth:`~Component.check_ranges`, given each option as a fixed range.
    """

    needs_session: ClassVar[bool] = False
    """Set True for a sampler that needs the space and its plugins (e.g. to build whole architectures
    itself, as ``evolution`` does): :meth:`create` is then also given ``session=`` (an
    :class:`iasf_search.session.Session`). Factories without it keep the plain signature."""

    @abstractmethod
    def create(self, options: Mapping[str, Any], *, seed: int | None, n_objectives: int) -> optuna.samplers.BaseSampler:
        """Return a fresh sampler; ``options`` are the space's ``search.sampler_options``."""


class PrunerFactory(Component):
    """Builds an Optuna pruner by name (``search.pruner`` in the space).

    Optuna's pruners read one intermediate value per step and refuse studies with several
    objectives. A factory whose pruner works with several objectives sets ``multi_objective``:
    in such studies the engine records, after every epoch, one value per objective (validation
    metric at that epoch; costs, which do not change) with :func:`iasf_search.results.records.set_epoch_values`
    and calls the pruner's ``prune(study, trial)`` itself; the pruner reads them with
    :func:`iasf_search.results.records.epoch_values`.
    """

    multi_objective: ClassVar[bool] = False
    """True when the pruner decides from ``records.epoch_values`` (several objectives)."""

    @abstractmethod
    def create(self, options: Mapping[str, Any], *, epochs: int) -> optuna.pruners.BasePruner:
        """Return a fresh pruner; ``epochs`` is the largest step a trial reports."""

    def may_prune(self, options: Mapping[str, Any], *, epochs: int, epoch: int, completed: int) -> bool:
        """False when the pruner cannot prune at ``epoch`` of a trial that started while the study held
        ``completed`` COMPLETE trials (its warm-up epochs, its start-up trials): the engine then does not
        ask it, since every question reads the study from the storage. The default: it may."""
        return True


class BaselineArchitecture(Component):
    """A hand-designed architecture, sized to a space, that a search can evaluate before its sampler
    proposes anything (``search.enqueue: [name]``): what a user would try by hand without a search."""

    @abstractmethod
    def graph(self, space: SearchSpace, components: Components) -> nx.DiGraph:
        """The architecture for ``space``, built from what it offers (its widths, stem values, ops, node
        bounds; :mod:`iasf_search.search.enqueue` checks the result is in the space).

        :raises ValueError: saying what the space lacks (e.g. an op it does not offer).
        """
