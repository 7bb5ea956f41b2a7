"""Benchmark: the engine on small, odd-sized datasets of your own, against what a user would do instead.

Three tasks are made offline and written as a user's files (a dataset's own train and test files),
then searched with the shipped spaces, unchanged but for the task:

* ``timeseries``: 50 training series of length 151 (a prime: no patch of ``timeseries.yaml`` divides it)
  from the generated shapes task, as a UCR ``_TRAIN``/``_TEST`` pair (300 test series);
  ``search_spaces/timeseries.yaml``.
* ``text``: 100 training sentences of the generated topics task, padded or cut to 47 tokens, as a CSV
  pair (300 test sentences); ``search_spaces/text.yaml``.
* ``image``: 200 of scikit-learn's digits written as PNG files in class folders and read back at
  13 x 13 pixels (400 test images); ``search_spaces/vision.yaml``.

Each task is searched for 5 minutes of wall time (``iasf-search`` with ``--timeout 300``, stopped
with SIGTERM at 300 s if a trial is still running, which keeps every finished trial) per seed, twice:
with the hold-out validation split (``split.val: 0.2`` of the training file) and with 5-fold
cross-validation (``split.folds: 5``). The seed draws the task's samples and seeds the search. The
engine's result is the test accuracy of the trial with the best validation accuracy. The baselines
are 1-NN and logistic regression (:mod:`iasf_search.results.baselines`) fitted on the whole training
file, as a user would fit them, and scored on the same test file.

    python benchmarks/small_data.py [--tasks timeseries text image] [--seeds 0 1 2] [--seconds 300]
                                    [--work DIR] [--results FILE]

Each finished run is appended to ``--results`` (JSON lines; runs already there are skipped, so an
interrupted benchmark resumes), and the Markdown tables are printed at the end.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

from iasf_search.plugins.text import generate_topics
from iasf_search.plugins.timeseries import generate_shapes
from iasf_search.results.baselines import fit_baselines
from iasf_search.search.setup import load_task
from iasf_search.session import open_session
from iasf_search.trial.cross_validation import pooled

REPO = Path(__file__).resolve().parent.parent
SPACES = {"timeseries": "timeseries.yaml", "text": "text.yaml", "image": "vision.yaml"}
MODES = {"holdout": {"val": 0.2}, "folds": {"folds": 5}}


def write_timeseries(folder: Path, seed: int) -> dict[str, Any]:
    """50 training and 300 test series of length 151 as a UCR pair (label, then the values, tab separated)."""
    x, labels = generate_shapes(350, 151, 0.4, 1000 + seed)
    for name, rows in (("SHAPES_TRAIN.tsv", range(50)), ("SHAPES_TEST.tsv", range(50, 350))):
        with open(folder / name, "w", encoding="utf-8") as f:
            for i in rows:
                f.write("\t".join([labels[i], *(f"{v:.5f}" for v in x[i])]) + "\n")
    return {"dataset": "timeseries_file",
            "options": {"path": str(folder / "SHAPES_TRAIN.tsv"), "test_path": str(folder / "SHAPES_TEST.tsv")}}


def write_text(folder: Path, seed: int) -> dict[str, Any]:
    """100 training and 300 test sentences as CSV files with a ``text,label`` header."""
    texts, labels = generate_topics(400, 1000 + seed)
    for name, rows in (("train.csv", range(100)), ("test.csv", range(100, 400))):
        with open(folder / name, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([texts[i], labels[i]] for i in rows)
    return {"dataset": "text_file", "options": {"path": str(folder / "train.csv"), "test_path": str(folder / "test.csv"),
                                                "max_length": 47, "vocabulary": 2000}}


def write_images(folder: Path, seed: int) -> dict[str, Any]:
    """200 training and 400 test digits (drawn with ``seed``) as 8-bit PNG files in class folders."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(1000 + seed).permutation(len(digits.target))
    for part, rows in (("train", order[:200]), ("test", order[200:600])):
        for i in rows:
            target = folder / part / str(digits.target[i])
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray((digits.images[i] * (255 / 16)).astype(np.uint8), mode="L").save(target / f"{i}.png")
    return {"dataset": "image_folder", "options": {"path": str(folder / "train"), "test_path": str(folder / "test"),
                                                   "size": 13, "channels": 1}}


WRITERS = {"timeseries": write_timeseries, "text": write_text, "image": write_images}


def space_file(work: Path, task_name: str, mode: str, seed: int, seconds: float) -> Path:
    """The shipped space for ``task_name`` with its task replaced by the task's files, the ``mode``'s split, the seed."""
    folder = work / f"{task_name}-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    task = WRITERS[task_name](folder, seed)
    doc = yaml.safe_load((REPO / "search_spaces" / SPACES[task_name]).read_text(encoding="utf-8"))
    name = f"small-{task_name}-{mode}-{seed}"
    doc.update(name=name, task={**task, "split": {**MODES[mode], "seed": seed}})
    doc["search"].update(seed=seed, trials=100000, timeout=seconds)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def search(space: Path, storage: str, seconds: float) -> float:
    """Run ``iasf-search`` on ``space`` for at most ``seconds`` of wall time; returns the seconds it ran."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "iasf_search", "--space", str(space), "--storage", storage, "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the running trial is stopped, finished trials are kept
        _, err = process.communicate()
    if process.returncode not in (0, 143):
        raise RuntimeError(f"iasf-search on {space} exited {process.returncode}: {err[-2000:]}")
    return time.perf_counter() - start


def one_run(work: Path, task_name: str, mode: str, seed: int, seconds: float) -> dict[str, Any]:
    """One search and its comparison with the baselines fitted on the whole training file."""
    space = space_file(work, task_name, mode, seed, seconds)
    storage = f"sqlite:///{work / (space.stem + '.db')}"
    wall = search(space, storage, seconds)
    study = optuna.load_study(study_name=space.stem, storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    data = load_task(open_session(space))
    whole = fit_baselines(pooled(data), seed)  # the whole training file, as a user fits them
    return {"task": task_name, "mode": mode, "seed": seed, "seconds": round(wall, 1),
            "trials": len(complete), "finished": sum(t.state.is_finished() for t in study.trials),
            "train_samples": len(data.x_train) + len(data.x_val), "test_samples": len(data.x_test),
            "val_samples": len(data.x_val),
            "best_val": best.value if best else None, "best_test": best.user_attrs.get("test_accuracy") if best else None,
            "best_val_std": best.user_attrs.get("val_accuracy_std") if best else None,
            "best_summary": best.user_attrs.get("summary") if best else None,
            "1nn": whole["1nn"]["test_accuracy"], "logistic_regression": whole["logistic_regression"]["test_accuracy"]}


def tables(rows: list[dict[str, Any]]) -> str:
    """One row per run, then a summary per task and mode (mean test accuracy over the seeds whose run finished a
    trial, runs that beat both baselines; a run without a finished trial beats nothing)."""
    lines = ["| task | mode | seed | trials | val (best) | test (best) | 1-NN test | logistic regression test | beats both |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        test = r["best_test"]
        beats = test is not None and test > max(r["1nn"], r["logistic_regression"])
        val = "-" if r["best_val"] is None else f"{r['best_val']:.3f}" + (
            f" ± {r['best_val_std']:.3f}" if r["best_val_std"] is not None else "")
        lines.append(f"| {r['task']} | {r['mode']} | {r['seed']} | {r['trials']} | {val} | "
                     f"{'-' if test is None else f'{test:.3f}'} | {r['1nn']:.3f} | {r['logistic_regression']:.3f} | "
                     f"{'yes' if beats else 'no'} |")
    lines += ["", "| task | mode | runs with a finished trial | engine test (mean of those) | 1-NN | logistic regression "
                  "| runs that beat both |", "|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        for mode in MODES:
            group = [r for r in rows if r["task"] == task and r["mode"] == mode]
            if not group:
                continue
            tests = [r["best_test"] for r in group if r["best_test"] is not None]
            wins = sum((r["best_test"] or 0.0) > max(r["1nn"], r["logistic_regression"]) for r in group)
            mean = f"{statistics.mean(tests):.3f}" if tests else "-"
            lines.append(f"| {task} | {mode} | {len(tests)}/{len(group)} | {mean} | {statistics.mean(r['1nn'] for r in group):.3f} | "
                         f"{statistics.mean(r['logistic_regression'] for r in group):.3f} | {wins}/{len(group)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(WRITERS), default=["timeseries", "text", "image"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--work", type=Path, default=Path("runs/small_data"))
    parser.add_argument("--results", type=Path, default=None, help="default: WORK/results.jsonl")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = args.results or args.work / "results.jsonl"
    done = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()] if results.exists() else []
    print(f"# {datetime.date.today()} on {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.seconds:.0f} s per search", flush=True)
    for seed in args.seeds:
        for task in args.tasks:
            for mode in args.modes:
                if any((r["task"], r["mode"], r["seed"]) == (task, mode, seed) for r in done):
                    continue
                row = one_run(args.work, task, mode, seed, args.seconds)
                done.append(row)
                with open(results, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print(tables([r for r in done if r["task"] in args.tasks and r["seed"] in args.seeds and r["mode"] in args.modes]))


if __name__ == "__main__":
    main()
