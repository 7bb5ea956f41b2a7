"""Benchmark: how to fill a CPU machine with trials -- one worker using every core against one worker per core.

For each shipped space named (default: vision and sequence), the script samples ``--trials`` trials
once (architecture and training settings, Optuna's random sampler, seed 0), then runs the *same*
trials through the CLI in each arrangement, on a fresh SQLite study where they are queued
(``enqueue_trial``), so every arrangement trains exactly the same models:

* ``1x2``: ``iasf-search --workers 1`` with torch's default threads (2 on this machine: one process
  using both cores for each operation);
* ``2x1``: ``iasf-search --workers 2`` (two processes, one thread each: what ``--workers`` gives);
* ``1x1`` (with ``--arms 1x1 1x2 2x1``): one process, one thread, for what the second thread brings;
* ``gpu:K`` (on a GPU machine): ``iasf-search --device cuda --trials-per-gpu K``, K trials sharing
  each GPU (``--arms gpu:1 gpu:4``).

The copy of the space differs from the shipped one only in ``search:`` (random sampler, no pruner,
no timeout), so that every trial trains all its epochs; trial files stay at their defaults.
Arrangements are interleaved (forward, then backward order) for ``--repeats`` rounds.

Reported per space and arrangement (median over rounds): trials per minute over the busy window (first
trial start to last trial end, without process start-up) and over the whole command, the median
trial time, and the speed-up over ``1x2``.

    python benchmarks/fill_machine.py [--spaces vision sequence] [--trials 12 6] [--repeats 2] [--json PATH] [--keep DIR]

``--epochs N`` trains N epochs instead of the space's (a smoke run). ``--keep DIR`` keeps every run's
study database there (``benchmarks/flops_anchor.py`` reads the best trial of one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from workers_throughput import load, machine, revision

import iasf_search
from iasf_search.sampling import sample_trial
from iasf_search.search.setup import prepare_search

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"1x1": (1, 1), "1x2": (1, None), "2x1": (2, None)}
"""CPU arrangement -> (workers, threads of a single worker; None: torch's default)."""


def arrangement(value: str) -> str:
    """``--arms`` entries: a CPU arrangement of :data:`ARMS` or ``gpu:K``."""
    if value in ARMS or (value.startswith("gpu:") and value[4:].isdigit() and int(value[4:]) >= 1):
        return value
    raise argparse.ArgumentTypeError(f"unknown arrangement {value!r}: use {', '.join(ARMS)} or gpu:K")


def arm_command(name: str) -> tuple[list[str], dict[str, str]]:
    """The CLI flags and environment of arrangement ``name``."""
    env = dict(os.environ)
    if name.startswith("gpu:"):
        return ["--device", "cuda", "--trials-per-gpu", name[4:]], env
    workers, threads = ARMS[name]
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return ["--device", "cpu", "--workers", str(workers)], env


def benchmark_space(name: str, folder: Path, epochs: int | None = None) -> Path:
    """A copy of ``search_spaces/<name>.yaml`` that trains every trial fully (random sampler, no pruner, no
    timeout), for ``epochs`` epochs when given."""
    doc = yaml.safe_load((ROOT / "search_spaces" / f"{name}.yaml").read_text())
    doc["search"] = {**doc.get("search", {}), "sampler": "random", "pruner": "none", "timeout": None, "enqueue": []}
    if epochs is not None:
        doc["training"] = {**doc.get("training", {}), "epochs": epochs}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def sampled_params(space_path: Path, count: int) -> list[dict]:
    """``count`` trials' parameters sampled from the space by Optuna's random sampler (seed 0)."""
    session = iasf_search.open_session(space_path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = []
    for _ in range(count):
        trial = study.ask()
        sample_trial(trial, session.space, session.components)
        params.append(trial.params)
        study.tell(trial, 0.0)
    return params


def run_arm(space_path: Path, params: list[dict], arm: str, folder: Path) -> dict:
    """Queue ``params`` on a fresh SQLite study and run them through the CLI in arrangement ``arm``."""
    flags, env = arm_command(arm)
    url = f"sqlite:///{folder / 'study.db'}"
    prepared = prepare_search(iasf_search.open_session(space_path), storage=url, trials=len(params),
                              device="cuda" if arm.startswith("gpu:") else "cpu")
    for p in params:
        prepared.study.enqueue_trial(p)
    command = [sys.executable, "-m", "iasf_search", "search", "--space", str(space_path), "--storage", url,
               "--trials", str(len(params)), *flags, "--quiet"]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    trials = optuna.load_study(study_name=prepared.study.study_name, storage=url).trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) != len(params) or sorted(map(json.dumps, (t.params for t in done))) != sorted(map(json.dumps, params)):
        raise RuntimeError(f"{arm}: the study did not finish exactly the queued trials ({len(done)} complete)")
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    busy = (last - first).total_seconds()
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    return {"arm": arm, "storage": url, "wall_s": wall, "busy_s": busy, "per_min_busy": 60 * len(done) / busy,
            "per_min_wall": 60 * len(done) / wall, "median_trial_s": statistics.median(durations)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["vision", "sequence"])
    parser.add_argument("--trials", type=int, nargs="+", default=[12, 6], help="trials per run, one per space")
    parser.add_argument("--arms", nargs="+", type=arrangement, default=["1x2", "2x1"], help="1x1, 1x2, 2x1 (CPU) or gpu:K")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the runs' study databases in this folder")
    parser.add_argument("--epochs", type=int, help="train this many epochs instead of the space's (a smoke run)")
    args = parser.parse_args()
    counts = dict(zip(args.spaces, args.trials + [args.trials[-1]] * len(args.spaces), strict=False))
    print(f"machine: {machine()}; code {revision()}; load before {load()}", flush=True)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or Path(scratch)
        for name in args.spaces:
            folder = Path(tmp) / name
            folder.mkdir(parents=True)
            space_path = benchmark_space(name, folder, args.epochs)
            params = sampled_params(space_path, counts[name])
            for rnd in range(args.repeats):
                for arm in args.arms if rnd % 2 == 0 else list(reversed(args.arms)):
                    run_folder = folder / f"{arm.replace(':', '')}-{rnd}"
                    run_folder.mkdir()
                    row = run_arm(space_path, params, arm, run_folder)
                    results.setdefault(name, []).append(row)
                    print(f"{name} {arm} round {rnd}: {row['per_min_busy']:.2f} trials/min busy, "
                          f"{row['per_min_wall']:.2f} whole command, median trial {row['median_trial_s']:.1f} s", flush=True)
    print(f"load after {load()}\n")
    print("| space | trials | arrangement | trials/min, busy window | trials/min, whole command | median trial s "
          f"| speed-up over {args.arms[0]} (busy) |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        first = args.arms[0]
        base = statistics.median(r["per_min_busy"] for r in rows if r["arm"] == first)
        for arm in args.arms:
            mine = [r for r in rows if r["arm"] == arm]
            busy = statistics.median(r["per_min_busy"] for r in mine)
            speedup = f"{busy / base:.2f}"
            each = ", ".join(f"{r['per_min_busy']:.2f}" for r in mine)
            print(f"| {name} | {counts[name]} | {arm} | {busy:.2f} ({each}) | "
                  f"{statistics.median(r['per_min_wall'] for r in mine):.2f} | "
                  f"{statistics.median(r['median_trial_s'] for r in mine):.1f} | {speedup} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
