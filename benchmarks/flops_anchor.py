"""Benchmark: achieved training FLOP/s of a study's best model against the device's peak (the throughput anchor).

Takes the best trial of a finished study (by default the one ``benchmarks/fill_machine.py --keep``
left, or any ``--storage``/``--study``), rebuilds its architecture for the space's task and trains
it with the engine's own loop (:func:`iasf_search.train.train`, the trial's training settings,
without validation) on ``--device``:

* FLOPs per optimiser step: ``torch.utils.flop_counter.FlopCounterMode`` over one forward and
  backward pass of a full batch (attention on the math kernel, which has FLOP formulas; the
  optimiser's element-wise work is not counted);
* time: one untimed epoch (allocator, cuDNN autotuning), then ``--epochs`` timed epochs,
  synchronised at both ends;
* achieved FLOP/s = FLOPs per step x steps / seconds, and its share of the device's dense bf16 peak
  (:data:`PEAK_BF16`, from the vendors' data sheets; ``--peak`` overrides; on the CPU the float32
  peak that ``iasf-search calibrate`` measures).

For scale (not measured here): well-tuned small-model trainers such as airbench reach about 30-36%
of an A100's peak.

    python benchmarks/flops_anchor.py --space search_spaces/vision.yaml --storage sqlite:///runs/vision.db [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import iasf_search
from iasf_search.hardware.calibration import calibrate
from iasf_search.results.records import TRAIN_CONFIG, record
from iasf_search.search.setup import load_task
from iasf_search.train import autocast, resolve_device, steps_per_epoch, train

PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}
"""Dense bf16 tensor-core peak FLOP/s by device name (SXM parts; vendors' data sheets, without sparsity)."""


def peak_flops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    """The peak to compare with, and where it comes from."""
    if override:
        return override, "--peak"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in PEAK_BF16.items():
            if key in name:
                return peak, f"{key} dense bf16 data-sheet peak"
        return None, f"no peak known for {name}; pass --peak"
    return calibrate(device, quick=True).peak_flops["float32"], "float32 peak measured by calibrate (quick)"


def rate(flops_per_s: float) -> str:
    return f"{flops_per_s / 1e12:.2f} TFLOP/s" if flops_per_s >= 1e12 else f"{flops_per_s / 1e9:.1f} GFLOP/s"


def step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of one forward and backward pass of the batch ``(x, y)``."""
    model.train()
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x).float(), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, type=Path, help="the space file of the study")
    parser.add_argument("--storage", required=True, help="the study's storage URL")
    parser.add_argument("--study", help="study name (default: the space's name)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (default 3)")
    parser.add_argument("--peak", type=float, help="peak FLOP/s to compare with (default: by device name)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = resolve_device(args.device)
    session = iasf_search.open_session(args.space)
    study = iasf_search.load_results(args.storage, args.study or session.space.name)
    best = iasf_search.best_trials(study)[0]
    config = {**record(best, TRAIN_CONFIG), "epochs": args.epochs + 1}
    data = load_task(session).to(device)
    torch.manual_seed(0)
    model = iasf_search.build_model(iasf_search.trial_architecture(best), session.components, data.sample_shape,
                                    data.num_classes).to(device)
    batch, per_epoch = steps_per_epoch(len(data.x_train), config)
    with autocast(device):
        flops = step_flops(model, data.x_train[:batch], data.y_train[:batch])
    train(model, data, {**config, "epochs": 1}, device=device, seed=0, validate=False)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = train(model, data, {**config, "epochs": args.epochs}, device=device, seed=0, validate=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    achieved = flops * result.steps / seconds
    peak, source = peak_flops(device, args.peak)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    figures = {"device": name, "trial": best.number, "val_accuracy": best.user_attrs.get("val_accuracy"),
               "params": best.user_attrs.get("params"), "batch_size": batch, "steps": result.steps,
               "seconds": seconds, "samples_per_s": result.steps * batch / seconds, "flops_per_step": flops,
               "achieved_flops_per_s": achieved, "peak_flops_per_s": peak, "peak_source": source,
               "share_of_peak": achieved / peak if peak else None}
    print(f"{name}: trial #{best.number} ({figures['params']} parameters, batch {batch}): "
          f"{figures['samples_per_s']:.0f} samples/s, {flops / batch / 1e6:.2f} MFLOP per sample (forward + backward), "
          f"{rate(achieved)} achieved" + (f" = {100 * achieved / peak:.2f}% of {rate(peak)} ({source})" if peak else f" ({source})"))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
