"""Benchmark: how to fill a CPU machine with trials -- one worker using every core against one worker per core.

For each shipped space named (default: vision and sequence), the script samples ``--trials`` trials
once (architecture and training settings, Optuna's random sampler, seed 0), then runs the *same*
trials through the CLI in each arrangement, on a fresh SQLite study where they are queued
(``enqueue_trial``), so every arrangement trains exactly the same models:

* ``1x2``: ``iasf-search --workers 1`` with torch's default threads (2 on this machine: one process
  using both cores for each operation);
* ``2x1``: ``iasf-search --workers 2`` (two processes, one thread each: what ``--workers`` gives);
* ``1x1`` (with ``--arms 1x1 1x2 2x1``): one process, one thread, for what the second thread brings.

The copy of the space differs from the shipped one only in ``search:`` (random sampler, no pruner,
no timeout), so that every trial trains all its epochs; trial files stay at their defaults.
Arrangements are interleaved (forward, then backward order) for ``--repeats`` rounds.

Reported per space and arrangement (median over rounds): trials per minute over the busy window (first
trial start to last trial end, without process start-up) and over the whole command, the median
trial time, and the speed-up over ``1x2``.

    python benchmarks/fill_machine.py [--spaces vision sequence] [--trials 12 6] [--repeats 2] [--json PATH]
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
from iasf_search.objective import sample_trial
from iasf_search.study import prepare_search

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"1x1": (1, 1), "1x2": (1, None), "2x1": (2, None)}
"""Arrangement -> (workers, threads of a single worker; None: torch's default)."""


def benchmark_space(name: str, folder: Path) -> Path:
    """A copy of ``search_spaces/<name>.yaml`` that trains every trial fully (random sampler, no pruner, no timeout)."""
    doc = yaml.safe_load((ROOT / "search_spaces" / f"{name}.yaml").read_text())
    doc["search"] = {**doc.get("search", {}), "sampler": "random", "pruner": "none", "timeout": None}
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
    workers, threads = ARMS[arm]
    url = f"sqlite:///{folder / f'{arm}.db'}"
    prepared = prepare_search(iasf_search.open_session(space_path), storage=url, trials=len(params), device="cpu")
    for p in params:
        prepared.study.enqueue_trial(p)
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "iasf_search", "search", "--space", str(space_path), "--storage", url,
               "--trials", str(len(params)), "--device", "cpu", "--workers", str(workers), "--quiet"]
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
    return {"arm": arm, "wall_s": wall, "busy_s": busy, "per_min_busy": 60 * len(done) / busy,
            "per_min_wall": 60 * len(done) / wall, "median_trial_s": statistics.median(durations)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["vision", "sequence"])
    parser.add_argument("--trials", type=int, nargs="+", default=[12, 6], help="trials per run, one per space")
    parser.add_argument("--arms", nargs="+", default=["1x2", "2x1"], choices=sorted(ARMS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = dict(zip(args.spaces, args.trials + [args.trials[-1]] * len(args.spaces), strict=False))
    print(f"machine: {machine()}; code {revision()}; load before {load()}", flush=True)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.spaces:
            folder = Path(tmp) / name
            folder.mkdir()
            space_path = benchmark_space(name, folder)
            params = sampled_params(space_path, counts[name])
            for rnd in range(args.repeats):
                for arm in args.arms if rnd % 2 == 0 else list(reversed(args.arms)):
                    run_folder = folder / f"{arm}-{rnd}"
                    run_folder.mkdir()
                    row = run_arm(space_path, params, arm, run_folder)
                    results.setdefault(name, []).append(row)
                    print(f"{name} {arm} round {rnd}: {row['per_min_busy']:.2f} trials/min busy, "
                          f"{row['per_min_wall']:.2f} whole command, median trial {row['median_trial_s']:.1f} s", flush=True)
    print(f"load after {load()}\n")
    print("| space | trials | arrangement | trials/min, busy window | trials/min, whole command | median trial s "
          "| speed-up over 1x2 (busy) |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        base = statistics.median(r["per_min_busy"] for r in rows if r["arm"] == "1x2") if "1x2" in args.arms else None
        for arm in args.arms:
            mine = [r for r in rows if r["arm"] == arm]
            busy = statistics.median(r["per_min_busy"] for r in mine)
            speedup = f"{busy / base:.2f}" if base else "-"
            each = ", ".join(f"{r['per_min_busy']:.2f}" for r in mine)
            print(f"| {name} | {counts[name]} | {arm} | {busy:.2f} ({each}) | "
                  f"{statistics.median(r['per_min_wall'] for r in mine):.2f} | "
                  f"{statistics.median(r['median_trial_s'] for r in mine):.1f} | {speedup} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
