"""Benchmark: the default vision search, exactly as a user runs it, timed end to end.

Runs ``iasf-search --space search_spaces/vision.yaml`` (optionally with ``--seed``) in a fresh
temporary directory, then reads the study back and prints one Markdown table row per run:
date, machine, seed, wall seconds, finished trials, best trial's validation and test accuracy.

    python benchmarks/vision_search.py --seeds 0 1 2

Run it alone on the machine: the wall time is the figure under test (target: under 5 minutes on
2 CPU cores), and the best trial's test accuracy (target: at least 0.98).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

from iasf_search.results.access import best_trials

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def run(space: Path, seed: int | None) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["iasf-search", "--space", str(space), "-q"] + ([] if seed is None else ["--seed", str(seed)])
        start = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        name = space.stem if space.stem != "vision" else "vision"
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/runs/{name}.db")
        finished = [t for t in study.trials if t.state.is_finished() and t.state.name != "FAIL"]
        best = best_trials(study)[0]  # the engine's own pick (ties: the lower validation loss)
        a = best.user_attrs
        return (f"| {datetime.date.today()} | {machine()} | {seed if seed is not None else 'default'} | {wall:.0f} | "
                f"{len(finished)} | #{best.number} | {a['val_accuracy']:.4f} | {a['test_accuracy']:.4f} | {a['summary']} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "vision.yaml")
    parser.add_argument("--seeds", type=int, nargs="*", default=[None])
    args = parser.parse_args()
    print("| date | machine | seed | wall s | finished trials | best | val acc | test acc | architecture |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        print(run(args.space.resolve(), seed), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
