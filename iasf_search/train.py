"""The training loop: AdamW/Adam/SGD, warm-up + cosine or one-cycle schedule, bf16 autocast on CUDA, per-epoch reports.

Data stay on the training device for the whole run; batches are index slices, so there is no
per-batch host-to-device copy. With the same seed, configuration and device the result is the same.

On CUDA the step loop never waits for the GPU: the divergence check keeps each step's loss on the
device and reads them back once, at the end of the epoch (:class:`DivergenceWatch`); evaluation reads
its counts back once per split; AdamW and Adam use their fused CUDA kernels; cuDNN picks its fastest
convolution algorithms (``cudnn.benchmark``) and float32 matrix products may use TF32
(:func:`prepare_device`). ``training.compile`` trains through ``torch.compile``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from iasf_search.components import AuxObjective, TaskData
from iasf_search.settings import TRAINING_PARAMS

if TYPE_CHECKING:
    from iasf_search.build import ArchNet
    from iasf_search.plugin_manager import Components


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class TimeLimit(RuntimeError):
    """Training took longer than the trial's time limit."""


@dataclass
class TrainResult:
    val_accuracy: float
    val_loss: float
    epochs: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    """Optimiser steps taken (by each model, when several trained together)."""
    fold_val_accuracies: list[float] = field(default_factory=list)
    """Each model's final validation accuracy when several trained together (:func:`train_together`)."""


def steps_per_epoch(n: int, config: Mapping[str, Any]) -> tuple[int, int]:
    """``(batch size, steps per epoch)`` for ``n`` training samples: the batch is capped at ``n``; an
    epoch is one shuffled pass (``ceil(n / batch)`` steps), or more passes when that many steps in
    all epochs would stay under ``min_steps`` (a training split of 40 samples still trains)."""
    bs = max(1, min(config["batch_size"], n))
    return bs, max(math.ceil(n / bs), math.ceil(config.get("min_steps", 0) / config["epochs"]))


def epoch_batches(n: int, bs: int, steps: int, generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """The index batches of one epoch: shuffled passes over the ``n`` samples in batches of ``bs``
    (a pass's last batch may be smaller), as many passes as ``steps`` batches need."""
    batches: list[torch.Tensor] = []
    while len(batches) < steps:
        batches += torch.randperm(n, generator=generator).to(device, non_blocking=True).split(bs)
    return batches[:steps]


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given (checked)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return device


def prepare_device(device: torch.device) -> None:
    """Process-wide speed settings for training on ``device``: on CUDA, cuDNN benchmarks and caches
    the fastest convolution algorithm per shape (``cudnn.benchmark``) and float32 matrix products
    may use TF32 (most products already run in bf16 under :func:`autocast`). Nothing on CPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")


def autocast(device: torch.device):
    """bf16 autocast on CUDA; nothing on CPU (keeps CPU results exact and reproducible)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def make_optimizer(model: nn.Module, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Weight decay on matrices and conv kernels only; biases, norms, position tables excluded.
    AdamW and Adam use their fused kernel (one launch for all parameters) when the model is on CUDA."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2 and p.shape[0] != 1]
    ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": decay, "weight_decay": config["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    name, lr = config["optimizer"], config["lr"]
    fused = all(p.is_cuda and p.is_floating_point() for p in model.parameters())
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, fused=fused or None)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, fused=fused or None)
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)


SCHEDULES: tuple[str, ...] = TRAINING_PARAMS["schedule"].choices
"""The values of the ``schedule`` training setting (:func:`make_schedule`)."""


def make_schedule(optimizer: torch.optim.Optimizer, config: Mapping[str, Any], epochs: int,
                  per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule of ``config["schedule"]`` (default ``cosine``) over ``epochs * per_epoch``
    optimiser steps, stepped once after each of them.

    Both warm up for ``warm = max(1, int(warmup * epochs * per_epoch))`` steps, so the peak ``lr`` falls on
    the same step (``warm - 1``) in both:

    * ``cosine``: linear warm-up to ``lr``, then cosine decay to 0 (``LambdaLR``).
    * ``one_cycle``: ``OneCycleLR`` (Smith & Topin 2019) with ``max_lr = lr``: cosine rise from ``lr / 25``
      to ``lr``, then cosine decay to ``lr / 2.5e5``; ``pct_start = warm / total``. OneCycleLR cannot rise
      over a single step (0/0) nor fall over none, so ``warm`` is at most ``total - 1`` and one warm-up
      step means none (``pct_start = 0``: the first step is ``1/total`` of the way down the fall; a run of
      one step takes it at the final rate). Momentum cycles as in the
      published policy and torch's default, in the opposite direction to the rate: from 0.95 down to 0.85
      at the peak and back to 0.95 (AdamW's and Adam's ``beta1``, SGD's momentum), a range centred on
      the 0.9 that the cosine schedule keeps fixed.
    """
    total = epochs * per_epoch
    warm = max(1, int(config["warmup"] * epochs * per_epoch))
    schedule = config.get("schedule", "cosine")  # a train_config recorded before the setting existed: cosine
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    if schedule == "one_cycle":
        warm = min(warm, total - 1)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"], total_steps=total,
                                                   pct_start=warm / total if warm > 1 else 0.0, anneal_strategy="cos",
                                                   cycle_momentum=True, base_momentum=0.85, max_momentum=0.95)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")


def measure_aux(model: nn.Module, aux: Sequence[AuxTerm], x: torch.Tensor, y: torch.Tensor,
                device: torch.device) -> dict[str, dict[str, float]]:
    """Each auxiliary objective's :meth:`measure` on the batch ``(x, y)`` (gradients enabled: some need them)."""
    if not aux:
        return {}
    model.eval()
    with torch.enable_grad(), autocast(device):
        forward = model.run(x, capture_fusion_inputs=any(a.objective.needs_fusion_inputs for a in aux))
        return {a.objective.name: a.objective.measure(a.module, a.config, forward, y) for a in aux}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 1024) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``model`` on ``(x, y)``."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in range(0, len(x), batch_size):
        with autocast(device):
            logits = model(x[i : i + batch_size]).float()
        yb = y[i : i + batch_size]
        correct += (logits.argmax(1) == yb).sum()
        loss += F.cross_entropy(logits, yb, reduction="sum").double()
    return int(correct) / len(x), float(loss) / len(x)  # the only reads from the device


@dataclass(frozen=True)
class AuxTerm:
    """One auxiliary objective attached to a model: the component, its sampled config, its helper modules."""

    objective: AuxObjective
    config: Mapping[str, Any]
    module: nn.Module


def aux_forward_context(objectives: Sequence[AuxObjective]):
    """The math attention kernel when an objective needs a second derivative, else nothing."""
    if any(o.needs_double_backward for o in objectives):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.MATH])
    return nullcontext()


def training_loss(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, label_smoothing: float,
                  aux: Sequence[AuxTerm] = ()) -> torch.Tensor:
    """Cross-entropy, plus ``weight * loss`` of every auxiliary objective with a non-zero weight."""
    active = [a for a in aux if a.config["weight"]]
    if not active:
        return F.cross_entropy(model(xb).float(), yb, label_smoothing=label_smoothing)
    with aux_forward_context([a.objective for a in active]):
        forward = model.run(xb, capture_fusion_inputs=any(a.objective.needs_fusion_inputs for a in active))
    loss = F.cross_entropy(forward.logits.float(), yb, label_smoothing=label_smoothing)
    for a in active:
        loss = loss + a.config["weight"] * a.objective.loss(a.module, a.config, forward, yb).float()
    return loss


@dataclass(frozen=True)
class Run:
    """One model to train on one task (its tensors already on the training device), with the terms of
    its auxiliary objectives (their helper modules already part of ``model``)."""

    model: nn.Module
    data: TaskData
    aux: Sequence[AuxTerm] = ()


class DivergenceWatch:
    """Finds the first NaN or infinite training loss of an epoch and raises :class:`Diverged` naming it
    and the epoch. Without ``defer`` each loss is checked as it is added (on the CPU reading a value
    costs nothing). With ``defer`` (on CUDA) the losses stay on the device and :meth:`check` reads them
    back in one transfer at the end of the epoch, so the step loop never waits for the GPU; a trial
    that diverges then trains on to the end of that epoch before it is stopped."""

    def __init__(self, *, defer: bool, label: str = "") -> None:
        self.defer, self.label = defer, label
        self._losses: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor, epoch: int) -> None:
        if self.defer:
            self._losses.append(loss.detach())
        elif not torch.isfinite(loss):
            self._raise(loss.item(), epoch)

    def check(self, epoch: int) -> None:
        """Raise :class:`Diverged` if a loss added since the last check was not finite."""
        if not self._losses:
            return
        losses, self._losses = torch.stack(self._losses).float().cpu(), []
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            self._raise(losses[int(bad[0, 0])].item(), epoch)

    def _raise(self, value: float, epoch: int) -> None:
        raise Diverged(f"training loss became {value} at epoch {epoch}{self.label}")


class _EpochLoop:
    """One run's optimiser, learning-rate schedule and batch order; trains it an epoch at a time."""

    def __init__(self, run: Run, config: Mapping[str, Any], *, device: torch.device, seed: int,
                 micro_batch_size: int | None, label: str) -> None:
        self.run, self.config, self.device = run, config, device
        run.model.to(device)
        self.optimizer = make_optimizer(run.model, config)
        self.n = len(run.data.x_train)
        self.batch, self.per_epoch = steps_per_epoch(self.n, config)
        self.schedule = make_schedule(self.optimizer, config, config["epochs"], self.per_epoch)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.augment = run.data.augment if config["augment"] else None
        self.micro_batch_size = micro_batch_size
        self.forward = torch.compile(run.model) if config.get("compile") else run.model
        """What the step loop calls: the model, or its ``torch.compile`` wrapper (same parameters)."""
        self.watch = DivergenceWatch(defer=device.type == "cuda", label=label)

    def epoch(self, epoch: int, check_time: Callable[[int], None]) -> None:
        """Train one epoch (:func:`steps_per_epoch` steps), then check its losses were finite
        (:class:`DivergenceWatch`); ``check_time(epoch)`` after every step may raise."""
        self.steps(epoch, check_time)
        self.watch.check(epoch)

    def steps(self, epoch: int, check_time: Callable[[int], None]) -> None:
        """The optimiser steps of one epoch; on CUDA nothing here reads from the device."""
        model, data, config = self.run.model, self.run.data, self.config
        model.train()
        for idx in epoch_batches(self.n, self.batch, self.per_epoch, self.generator, self.device):
            self.optimizer.zero_grad(set_to_none=True)
            for micro in idx.split(self.micro_batch_size or len(idx)):
                xb, yb = data.x_train[micro], data.y_train[micro]
                if self.augment is not None:
                    xb = self.augment(xb, self.generator)
                with autocast(self.device):
                    loss = training_loss(self.forward, xb, yb, config["label_smoothing"], self.run.aux)
                self.watch.add(loss, epoch)
                (loss * (len(micro) / len(idx)) if len(micro) < len(idx) else loss).backward()
            if config["grad_clip"] > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config["grad_clip"])
            self.optimizer.step()
            self.schedule.step()
            check_time(epoch)


def train(model: nn.Module, data: TaskData, config: Mapping[str, Any], *, device: torch.device, seed: int,
          report: Callable[[int, float, float], None] | None = None, aux: Sequence[AuxTerm] = (),
          max_seconds: float | None = None, micro_batch_size: int | None = None, validate: bool = True) -> TrainResult:
    """Train ``model`` on ``data.x_train`` and evaluate on ``data.x_val`` after each epoch.

    :param data: a task whose tensors are already on ``device``.
    :param config: sampled training settings (the keys of :data:`iasf_search.settings.TRAINING_PARAMS`).
    :param seed: seeds batch order and augmentation.
    :param report: ``report(epoch, val_accuracy, val_loss)`` after each epoch, 1-based; it may raise
        (e.g. ``optuna.TrialPruned``) to stop training.
    :param aux: auxiliary objectives; their helper modules must already be part of ``model``
        (so that the optimiser trains them). They shape training only, never the reported metrics.
    :param max_seconds: stop with :class:`TimeLimit` when training has taken longer (checked every step).
    :param micro_batch_size: split each batch of ``config["batch_size"]`` samples into micro-batches
        of this size and accumulate their gradients (same samples and steps, less memory; the loss
        of each micro-batch is weighted by its share of the batch). Default: no split.
    :param validate: evaluate on the validation split after each epoch; without it nothing is
        reported and the result's validation accuracy and loss are NaN.
    :raises Diverged: at the first non-finite training loss.
    :raises TimeLimit: past ``max_seconds``.
    """
    return train_together([Run(model, data, aux)], config, device=device, seed=seed, report=report,
                          max_seconds=max_seconds, micro_batch_size=micro_batch_size, validate=validate)


def train_together(runs: Sequence[Run], config: Mapping[str, Any], *, device: torch.device, seed: int,
                   report: Callable[[int, float, float], None] | None = None, max_seconds: float | None = None,
                   micro_batch_size: int | None = None, validate: bool = True) -> TrainResult:
    """Train several models with the same settings epoch by epoch in lockstep (the folds of a
    cross-validation): each trains one epoch, then all are evaluated on their own validation splits
    and ``report`` gets the mean accuracy and loss, so that a pruner judges the mean at every epoch.
    Each run's batches are drawn from its own generator seeded with ``seed``; one run trains exactly
    as :func:`train` does. Arguments as :func:`train`; ``max_seconds`` bounds all runs together.

    :returns: the mean validation accuracy and loss of the last epoch, each run's own final accuracy
        in ``fold_val_accuracies`` (with more than one run), and the most optimiser steps of any run.
    """
    start = time.perf_counter()
    prepare_device(device)

    def check_time(epoch: int) -> None:
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            raise TimeLimit(f"stopped after {time.perf_counter() - start:.1f} s in epoch {epoch} "
                            f"(search.max_trial_seconds: {max_seconds:g})")

    loops = [_EpochLoop(run, config, device=device, seed=seed, micro_batch_size=micro_batch_size,
                        label=f" (fold {i + 1} of {len(runs)})" if len(runs) > 1 else "") for i, run in enumerate(runs)]
    epochs = config["epochs"]
    history: list[dict[str, Any]] = []
    val_acc = val_loss = float("nan")
    scores: list[tuple[float, float]] = []
    for epoch in range(1, epochs + 1):
        for loop in loops:
            loop.epoch(epoch, check_time)
        if not validate:
            continue
        scores = [evaluate(run.model, run.data.x_val, run.data.y_val, device) for run in runs]
        val_acc, val_loss = (sum(s[i] for s in scores) / len(scores) for i in (0, 1))
        history.append({"epoch": epoch, "val_accuracy": val_acc, "val_loss": val_loss,
                        **({"fold_val_accuracies": [s[0] for s in scores]} if len(runs) > 1 else {})})
        if report is not None:
            report(epoch, val_acc, val_loss)
    return TrainResult(val_acc, val_loss, epochs, time.perf_counter() - start, history,
                       steps=epochs * max(loop.per_epoch for loop in loops),
                       fold_val_accuracies=[s[0] for s in scores] if len(runs) > 1 else [])


def attach_aux(model: ArchNet, aux_config: Mapping[str, Mapping[str, Any]], components: Components,
               probe: torch.Tensor, device: torch.device) -> list[AuxTerm]:
    """Build each auxiliary objective's helper modules and make them part of ``model`` (so they train).

    :param probe: a tiny input batch the helpers are sized on.
    """
    if not aux_config:
        return []
    with torch.no_grad():
        forward = model.run(probe)
    objectives = components.aux_objectives
    terms = [AuxTerm(objectives.get(name), config, objectives.get(name).build(config, forward, model.width))
             for name, config in aux_config.items()]
    model.aux_modules = nn.ModuleList(t.module for t in terms).to(device)
    return terms
