"""Built-in cost models: trainable parameters, forward FLOPs per sample, latency and peak memory.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` while attention runs on the
math kernel: the fused CPU kernel of ``F.scaled_dot_product_attention`` has no FLOP formula and
would count as zero. Multiply-adds count as 2 FLOPs.

``latency_ms`` and ``peak_memory_mb`` run the model on the trial's device. Both use a batch of
``batch_size`` samples cycled from the validation example; the sequence length (or image size) is
the task's, fixed by the dataset the model was built for, so a space sets it through the
dataset's options. On CUDA both run under the bf16 autocast training uses
(:func:`iasf_search.train.autocast`): they measure the model as it is trained and evaluated.
Neither changes the model: same weights, eval mode, no gradients, same device.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from iasf_search import hookimpl
from iasf_search.components import CostModel, Measurement
from iasf_search.hardware.timing import batch_of, synchronize, time_call
from iasf_search.params import Param
from iasf_search.torch_internals import mem_tracker_class
from iasf_search.train import autocast

MB = 2**20
"""Bytes in the "MB" of ``peak_memory_mb``: a mebibyte, as ``torch.cuda.memory_summary`` and nvidia-smi count."""


class Params(CostModel):
    name = "params"
    unit = "parameters"
    description = "trainable parameters of the deployable model"

    def measure(self, model: nn.Module, example: torch.Tensor, device: torch.device, options: Mapping[str, Any]) -> float:
        return float(sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("aux_modules.")))


class Flops(CostModel):
    name = "flops"
    unit = "FLOP per sample"
    description = "forward FLOPs per sample (torch FlopCounterMode, attention counted on the math kernel)"

    def measure(self, model: nn.Module, example: torch.Tensor, device: torch.device, options: Mapping[str, Any]) -> float:
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
            model(example)
        return float(counter.get_total_flops()) / len(example)


class Latency(CostModel):
    """Median wall time of one inference forward pass of a ``batch_size`` batch on the trial's device.

    ``warmup`` untimed calls, then ``repeats`` calls each timed between device synchronisations
    (:func:`iasf_search.hardware.timing.time_call`), under ``torch.inference_mode`` (and bf16 autocast on CUDA).
    Details: the timing summary (median, IQR, coefficient of variation, min, max, repeats),
    ``batch_size``, ``device``, ``threads`` (``torch.get_num_threads()``) and ``autocast``.
    """

    name = "latency_ms"
    unit = "ms"
    deterministic = False
    description = "median inference latency of a batch on the trial's device (warm-up, synchronised repeats)"
    params = {
        "batch_size": Param(32, int, low=1, help="samples per timed forward pass"),
        "warmup": Param(5, int, low=0, help="untimed forward passes before timing"),
        "repeats": Param(20, int, low=1, help="timed forward passes; the median is the cost"),
    }

    def measure(self, model: nn.Module, example: torch.Tensor, device: torch.device, options: Mapping[str, Any]) -> Measurement:
        batch_size = options["batch_size"]
        x = batch_of(example, batch_size).to(device)
        with torch.inference_mode(), autocast(device):
            timing = time_call(lambda: model(x), device, warmup=options["warmup"], repeats=options["repeats"])
        return Measurement(timing.median_ms, details={**timing.summary(), "batch_size": batch_size, "device": str(device),
                                                      "threads": torch.get_num_threads(),
                                                      "autocast": "bf16" if device.type == "cuda" else None})


class PeakMemory(CostModel):
    """Peak memory, in MB of 2**20 bytes, of one inference forward pass or one training step of a batch.

    Everything the step needs is counted, weights included (what sizing a device needs): the
    parameters and buffers, the input batch, activations, and for ``phase: train`` (forward,
    cross-entropy on random labels, backward, one AdamW step, on a deep copy of the model) also
    gradients and the optimizer's state.

    * CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated``) during the step, less
      what was allocated before it (the dataset or other models resident on the device), plus the
      bytes of the model's parameters and buffers (already resident). Includes kernel workspaces;
      a library workspace allocated for the first time in the process can make two measurements differ.
    * CPU has no allocator peak: the measure is the peak of the bytes of live tensor storages during
      the step, tracked for every tensor the dispatcher sees by ``torch``'s ``MemTracker``
      (``torch.distributed._tools.mem_tracker``, through :mod:`iasf_search.torch_internals`).
      Scratch memory a kernel allocates internally and the allocator's own overhead are not
      counted. Deterministic for a given model and batch.

    Details: ``bytes`` (the exact peak), ``phase``, ``batch_size``, ``device``, ``method``
    (``"cuda allocator peak"`` or ``"live tensor storages"``), and on CPU ``breakdown_mb`` (the
    parameters, gradients, activations, ... live at the peak).
    """

    name = "peak_memory_mb"
    unit = "MB (2**20 bytes)"
    description = "peak memory of an inference pass or a training step (CUDA allocator peak; live tensor storages on CPU)"
    params = {
        "phase": Param("inference", str, choices=("inference", "train"),
                       help="inference: one forward pass; train: forward, backward and an AdamW step"),
        "batch_size": Param(32, int, low=1, help="samples in the measured batch"),
    }

    def measure(self, model: nn.Module, example: torch.Tensor, device: torch.device, options: Mapping[str, Any]) -> Measurement:
        phase, batch_size = options["phase"], options["batch_size"]
        details: dict[str, Any] = {"phase": phase, "batch_size": batch_size, "device": str(device)}
        if device.type == "cuda":
            peak = _cuda_peak(model, example, device, phase, batch_size)
            details["method"] = "cuda allocator peak"
        else:
            peak, breakdown = _tracked_peak(model, example, device, phase, batch_size)
            details.update(method="live tensor storages", breakdown_mb={k: round(v / MB, 4) for k, v in breakdown.items()})
        details["bytes"] = peak
        return Measurement(peak / MB, details=details)


def _prepare(model: nn.Module, phase: str) -> tuple[nn.Module, torch.optim.Optimizer | None]:
    """What the step runs: the model itself for inference; for training, a deep copy in train mode
    (the trial's model keeps its weights, mode and empty gradients) and an AdamW optimizer for it."""
    if phase == "inference":
        return model, None
    trainee = copy.deepcopy(model).train()
    trainee.zero_grad(set_to_none=True)
    return trainee, torch.optim.AdamW([p for p in trainee.parameters() if p.requires_grad])


def _step(module: nn.Module, optimizer: torch.optim.Optimizer | None, x: torch.Tensor, device: torch.device) -> None:
    """Without ``optimizer`` one inference forward pass; with it one training step: forward,
    cross-entropy on random (seeded) labels of the output's classes, backward, optimizer step."""
    if optimizer is None:
        with torch.inference_mode(), autocast(device):
            module(x)
        return
    with torch.enable_grad():
        with autocast(device):
            logits = module(x)
        labels = torch.randint(0, logits.shape[-1], (len(x),), generator=torch.Generator().manual_seed(0)).to(device)
        F.cross_entropy(logits.float(), labels).backward()
    optimizer.step()


def _resident_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers (each storage once)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in [*model.parameters(), *model.buffers()]}
    return sum(storages.values())


def _cuda_peak(model: nn.Module, example: torch.Tensor, device: torch.device, phase: str, batch_size: int) -> int:
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    x = batch_of(example, batch_size).to(device, copy=True)  # a batch of its own, counted (not a view of the data)
    module, optimizer = _prepare(model, phase)  # a training copy is allocated here, inside the measured window
    _step(module, optimizer, x, device)
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    return peak + (_resident_bytes(model) if phase == "inference" else 0)


def _tracked_peak(model: nn.Module, example: torch.Tensor, device: torch.device, phase: str,
                  batch_size: int) -> tuple[int, dict[str, int]]:
    """Peak bytes of live tensor storages during the step, and their kinds at the peak."""
    try:
        tracker_class = mem_tracker_class()  # slow to import: only when used
    except ImportError as exc:  # a torch build without torch.distributed
        raise RuntimeError(f"peak_memory_mb on {device.type} needs torch.distributed's MemTracker: {exc}") from exc
    batch = batch_of(example, batch_size).to(device)  # untracked: it may be a view of the whole data set
    module, optimizer = _prepare(model, phase)
    tracker = tracker_class()
    tracker.track_external(module, optimizer)  # parameters and buffers (and the optimizer, empty until its step)
    with tracker:
        _step(module, optimizer, batch.clone(), device)  # the clone, the batch's own storage, is counted
    snapshot = tracker.get_tracker_snapshot("peak").get(device, {})
    breakdown = {getattr(k, "value", str(k)): int(v) for k, v in snapshot.items() if v}
    return breakdown.pop("Total", 0), breakdown


@hookimpl
def iasf_register_cost_models(registry) -> None:
    registry.register(Params())
    registry.register(Flops())
    registry.register(Latency())
    registry.register(PeakMemory())
