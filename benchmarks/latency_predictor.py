"""Benchmark: how well ``predicted_latency_ms`` ranks and predicts measured latency on this machine.

For ``--per-space`` architectures sampled from each space (Optuna's RandomSampler, fixed seed, each
architecture once), on the space's own validation data:

* measured latency: ``time_call(lambda: model(x), cpu, warmup=5, repeats=20)`` under
  ``torch.inference_mode`` on ``x = batch_of(x_val, 32)``, the median (the protocol of the
  ``latency_ms`` cost model), with its coefficient of variation; the fastest sample is kept too;
* a repeat of that measurement after every architecture has been measured once (repeatability);
* predicted latency from a profile calibrated at the start of the run (``iasf_search.hardware.calibration.calibrate``,
  written to a file and named as the cost model's ``target``), and from the built-in generic ``cpu`` profile;
* FLOPs (the ``flops`` cost model, per sample, times the batch).

Reported: Spearman rank correlation between predicted and measured latency, the share of predictions
within ±10% and ±25% of the measurement, the median CoV of the measurements and how far the repeat
moved, and FLOPs alone as a predictor: its Spearman and its ±25% share, with FLOPs turned into time
(a) by the calibrated peak FLOP/s and (b) by one factor fitted by least squares on these same
measurements (an oracle scale, which favours FLOPs). The same oracle scale is applied to the
predictions too, to separate ranking from bias. Everything is computed against the median
(the protocol) and, in a second table, against each architecture's fastest sample (what the machine
does when no other process takes the cores).

``--device cuda`` measures on the GPU as the ``latency_ms`` cost model does there (bf16 autocast),
predicts with ``dtype: bfloat16`` from a profile calibrated on that GPU, and compares with the
built-in ``h100`` profile instead of ``cpu``. ``--quick`` (a few architectures, a quick calibration)
only checks that the script runs.

Runs on the CPU with ``--threads`` intra-op threads (default 1: on a shared 2-core machine, two
OpenMP threads spin-wait whenever another process holds a core, and medians then measure the
neighbours). The calibration runs with the same thread count. Prints a markdown table; ``--out``
writes every architecture's figures as JSON.

    python benchmarks/latency_predictor.py --per-space 24 --out /tmp/latency_predictor.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import optuna
import torch

from iasf_search.build import build_model
from iasf_search.graph import canonical_hash, sample_graph
from iasf_search.graph import summary as describe
from iasf_search.hardware.calibration import calibrate
from iasf_search.hardware.profiles import write_profile
from iasf_search.hardware.timing import batch_of, time_call
from iasf_search.session import open_session
from iasf_search.train import autocast, resolve_device

ROOT = Path(__file__).resolve().parents[1]
SPACES = (ROOT / "search_spaces" / "vision.yaml", ROOT / "search_spaces" / "sequence.yaml")
CPU = torch.device("cpu")
DEVICE = CPU
"""Where models are measured (``--device``)."""


@dataclass
class Row:
    space: str
    arch: str
    summary: str
    params: int
    kernels: int
    flops: float
    measured_ms: float
    fastest_ms: float
    cov: float
    repeat_ms: float
    repeat_fastest_ms: float
    predicted_ms: float
    generic_cpu_ms: float


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    out = np.empty(len(values))
    out[order] = np.arange(len(values))
    for v in np.unique(values):
        tied = values == v
        out[tied] = out[tied].mean()
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(ranks(np.asarray(a, float)), ranks(np.asarray(b, float)))[0, 1])


def within(predicted: np.ndarray, measured: np.ndarray, tolerance: float) -> float:
    return float(np.mean(np.abs(predicted / measured - 1.0) <= tolerance))


def oracle_scale(x: np.ndarray, measured: np.ndarray) -> float:
    """The factor k minimising sum((k * x / measured - 1)^2): the best one-number scale, fitted on the answers."""
    r = x / measured
    return float(r.sum() / (r * r).sum())


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu_model()})"


def cpu_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def sample_architectures(path: Path, n: int, seed: int, calibrated: str) -> tuple[list[Row], list]:
    """Sample ``n`` distinct architectures of the space, measure and predict each once."""
    session = open_session(path)
    space, comps = session.space, session.components
    data = comps.datasets.get(space.dataset).load(space.dataset_options, space.split)
    x = batch_of(data.x_val, 32).to(DEVICE)
    predicted_cost, flops_cost = comps.cost_models.get("predicted_latency_ms"), comps.cost_models.get("flops")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    rows, models, seen = [], [], set()
    while len(rows) < n:
        graph = sample_graph(study.ask(), space, comps)
        arch = canonical_hash(graph)
        if arch in seen:
            continue
        seen.add(arch)
        torch.manual_seed(seed + len(rows))
        model = build_model(graph, comps, data.sample_shape, data.num_classes).eval().to(DEVICE)
        with torch.inference_mode(), autocast(DEVICE):
            timing = time_call(lambda model=model: model(x), DEVICE, warmup=5, repeats=20)
        options = {"batch_size": 32, "dtype": "bfloat16" if DEVICE.type == "cuda" else "float32"}
        mine = predicted_cost.measure(model, x, DEVICE, {**options, "target": calibrated})
        generic = predicted_cost.measure(model, x, DEVICE, {**options, "target": "h100" if DEVICE.type == "cuda" else "cpu"})
        rows.append(Row(space=space.name, arch=arch[:12], summary=describe(graph), params=sum(p.numel() for p in model.parameters()),
                        kernels=mine.details["kernels"], flops=flops_cost.measure(model, x, DEVICE, {}) * len(x),
                        measured_ms=timing.median_ms, fastest_ms=min(timing.samples_ms), cov=timing.cov, repeat_ms=float("nan"),
                        repeat_fastest_ms=float("nan"), predicted_ms=mine.value, generic_cpu_ms=generic.value))
        models.append((model, x))
        print(f"  {space.name} {len(rows):2d}/{n}: measured {timing.median_ms:7.3f} ms (CoV {timing.cov:.2f}), "
              f"predicted {mine.value:7.3f} ms  {describe(graph)}", flush=True)
    return rows, models


def figures(rows: list[Row], peak: float, against: str) -> dict[str, float]:
    measured = np.array([getattr(r, against) for r in rows])
    predicted = np.array([r.predicted_ms for r in rows])
    generic = np.array([r.generic_cpu_ms for r in rows])
    flops = np.array([r.flops for r in rows])
    by_peak = flops / peak * 1000.0
    return {
        "n": len(rows),
        "spearman": spearman(predicted, measured), "within_10": within(predicted, measured, 0.10),
        "within_25": within(predicted, measured, 0.25), "median_ratio": float(np.median(predicted / measured)),
        "scaled_within_25": within(predicted * oracle_scale(predicted, measured), measured, 0.25),
        "generic_cpu_spearman": spearman(generic, measured), "generic_cpu_within_25": within(generic, measured, 0.25),
        "generic_cpu_median_ratio": float(np.median(generic / measured)),
        "flops_spearman": spearman(flops, measured), "flops_peak_within_25": within(by_peak, measured, 0.25),
        "flops_peak_median_ratio": float(np.median(by_peak / measured)),
        "flops_scaled_within_10": within(flops * oracle_scale(flops, measured), measured, 0.10),
        "flops_scaled_within_25": within(flops * oracle_scale(flops, measured), measured, 0.25),
    }


def table(results: dict[str, dict[str, float]], title: str) -> str:
    pct = "{:.0%}".format
    lines = [f"**{title}**", "",
             "| set | n | Spearman | within ±10% | within ±25% | pred/meas (median) | ±25% after oracle scale | "
             "generic `cpu`: Spearman / ±25% | FLOPs: Spearman | FLOPs ÷ calibrated peak: ±25% | FLOPs × oracle scale: ±10% / ±25% |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, f in results.items():
        lines.append(f"| {name} | {f['n']} | {f['spearman']:.3f} | {pct(f['within_10'])} | {pct(f['within_25'])} | "
                     f"{f['median_ratio']:.2f} | {pct(f['scaled_within_25'])} | {f['generic_cpu_spearman']:.3f} / "
                     f"{pct(f['generic_cpu_within_25'])} | {f['flops_spearman']:.3f} | {pct(f['flops_peak_within_25'])} | "
                     f"{pct(f['flops_scaled_within_10'])} / {pct(f['flops_scaled_within_25'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-space", type=int, default=24, help="architectures per space (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--out", help="write the figures and every architecture's row as JSON")
    parser.add_argument("--profile-out", help="also keep the calibrated profile at this path")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--quick", action="store_true", help="3 architectures per space and a quick calibration (a smoke run)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = resolve_device(args.device)
    if args.quick:
        args.per_space = min(args.per_space, 3)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(args.threads)
    started = time.time()
    load_before, busy0, own0 = os.getloadavg()[0], cpu_busy_s(), own_cpu_s()

    t0 = time.perf_counter()
    profile = calibrate(DEVICE, name="this-machine", quick=args.quick)
    calibrate_s = time.perf_counter() - t0
    folder = Path(tempfile.mkdtemp(prefix="latency-bench-"))
    profile_path = write_profile(profile, Path(args.profile_out) if args.profile_out else folder / "this-machine.yaml")
    print(f"calibrated in {calibrate_s:.1f} s ({args.threads} threads): {profile_path}", flush=True)

    rows, models = [], []
    for i, path in enumerate(SPACES):
        r, m = sample_architectures(path, args.per_space, args.seed + 1000 * i, str(profile_path))
        rows += r
        models += m
    print("repeating every measurement ...", flush=True)
    for row, (model, x) in reversed(list(zip(rows, models, strict=True))):
        with torch.inference_mode(), autocast(DEVICE):
            timing = time_call(lambda model=model, x=x: model(x), DEVICE, warmup=5, repeats=20)
        row.repeat_ms, row.repeat_fastest_ms = timing.median_ms, min(timing.samples_ms)
    wall = time.time() - started
    others = max(0.0, ((cpu_busy_s() - busy0) - (own_cpu_s() - own0)) / (wall * (os.cpu_count() or 1)))

    peak = profile.peak_flops["bfloat16" if DEVICE.type == "cuda" else "float32"]
    sets = {"all": rows, **{name: [r for r in rows if r.space == name] for name in dict.fromkeys(r.space for r in rows)}}
    results = {against: {name: figures(subset, peak, against) for name, subset in sets.items()}
               for against in ("measured_ms", "fastest_ms")}
    moved = [abs(r.repeat_ms / r.measured_ms - 1) for r in rows]
    repeatability = {
        "median_cov": statistics.median(r.cov for r in rows),
        "median_repeat_change": statistics.median(moved),
        "repeat_within_10": float(np.mean(np.array(moved) <= 0.10)),
        "repeat_spearman": spearman(np.array([r.measured_ms for r in rows]), np.array([r.repeat_ms for r in rows])),
        "predicted_vs_repeat_spearman": spearman(np.array([r.predicted_ms for r in rows]), np.array([r.repeat_ms for r in rows])),
        "predicted_vs_repeat_within_25": within(np.array([r.predicted_ms for r in rows]), np.array([r.repeat_ms for r in rows]), 0.25),
    }
    machine = {"nproc": os.cpu_count(), "cpu": cpu_model(), "threads": args.threads, "device": device_name(DEVICE),
               "torch": torch.__version__,
               "python": platform.python_version(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
               "load_before": load_before, "load_after": os.getloadavg()[0], "others_cpu_share": others,
               "wall_s": wall, "calibrate_s": calibrate_s}

    print()
    counts = ", ".join(f"{len(s)} {n}" for n, s in sets.items() if n != "all")
    print(f"{machine['device']}: {len(rows)} architectures ({counts}), batch 32, "
          f"{args.threads} thread(s); {machine['nproc']} cores ({machine['cpu']}), torch {torch.__version__}; "
          f"{machine['date']}; run {wall:.0f} s, calibration {calibrate_s:.1f} s; load {load_before:.2f} -> "
          f"{machine['load_after']:.2f}, others' CPU {others:.0%}")
    print()
    print(table(results["measured_ms"], "Against the measured median (the protocol)"))
    print()
    print(table(results["fastest_ms"], "Against each architecture's fastest sample"))
    print()
    print(f"Measurement repeatability: median CoV {repeatability['median_cov']:.3f}; the repeat moved the median by "
          f"{repeatability['median_repeat_change']:.1%} (median), {repeatability['repeat_within_10']:.0%} within ±10%; "
          f"Spearman first vs repeat {repeatability['repeat_spearman']:.3f}; predicted vs repeat: Spearman "
          f"{repeatability['predicted_vs_repeat_spearman']:.3f}, within ±25% {repeatability['predicted_vs_repeat_within_25']:.0%}")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine, "profile": profile.to_dict(), "results": results,
                                              "repeatability": repeatability, "rows": [asdict(r) for r in rows]}, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
