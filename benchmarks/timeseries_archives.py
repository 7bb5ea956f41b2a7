"""Benchmark: the engine on time-series archives as they come, against 1-NN, logistic regression and MiniRocket.

Four datasets of the UCR/UEA archives, read offline from the ``.ts`` files that the ``aeon`` package ships
(``aeon/datasets/data/NAME/NAME_TRAIN.ts`` and ``NAME_TEST.ts``), each through the CLI from its own files:

* ``BasicMotions``: 6 channels, length 100, 40 + 40 series, 4 classes;
* ``JapaneseVowels``: 12 channels, unequal lengths (7 to 29), 270 + 370 series, 9 classes;
* ``PickupGestureWiimoteZ``: 1 channel, unequal lengths (29 to 361), 50 + 50 series, 10 classes;
* ``ACSF1``: 1 channel, length 1,460, 100 + 100 series, 10 classes.

**engine**: ``iasf-search --space`` the shipped ``search_spaces/timeseries.yaml`` with only the task replaced
(``dataset: timeseries_file``, ``path`` and ``test_path`` the two files; the defaults pad unequal lengths, masked)
and the seed (``search.seed`` and ``task.split.seed``): 5 minutes of wall time (the space's own ``timeout``; a
trial still running at 300 s is stopped with SIGTERM, which keeps every finished trial). Its result is the
test accuracy of the trial the CLI names best (best validation accuracy; validation is ``split.val`` = 15% of
the training file).

**1-NN** and **logistic regression** (:mod:`iasf_search.results.baselines`) and **MiniRocket** (aeon's
``MiniRocketClassifier``, the method a time-series practitioner would try first; ``random_state`` = the seed)
are fitted on the whole training file, as a user would fit them, and scored on the same test file. All three
get the samples the engine gets (``load_task`` of the engine's space: z-normalised per series and channel,
unequal series padded to the longest), padding as zeros (MiniRocket takes no NaN and no unequal lengths).
MiniRocket's numba kernels are compiled once before any timing.

    python benchmarks/timeseries_archives.py [--datasets ...] [--seeds 0 1 2] [--seconds 300] [--work DIR] [--results FILE]

Needs ``pip install 'iasf-search[timeseries]'``. Run it alone on the machine: datasets interleaved per seed;
each finished run is appended to ``--results`` (JSON lines; runs already there are skipped, so an interrupted
benchmark resumes), and the Markdown tables are printed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from small_data import search  # benchmarks/ is on sys.path when a script in it runs

from iasf_search.results.access import best_trials
from iasf_search.results.baselines import fit_baselines
from iasf_search.search.setup import load_task
from iasf_search.session import open_session
from iasf_search.trial.cross_validation import pooled

REPO = Path(__file__).resolve().parent.parent
DATASETS = ("BasicMotions", "JapaneseVowels", "PickupGestureWiimoteZ", "ACSF1")


def archive_folder() -> Path:
    """The folder of the datasets aeon ships."""
    import aeon

    return Path(aeon.__file__).resolve().parent / "datasets" / "data"


def space_file(work: Path, dataset: str, seed: int, seconds: float) -> Path:
    """The shipped ``timeseries.yaml`` with the task replaced by ``dataset``'s two files, and the seed."""
    doc = yaml.safe_load((REPO / "search_spaces" / "timeseries.yaml").read_text(encoding="utf-8"))
    folder = archive_folder() / dataset
    name = f"archive-{dataset}-{seed}"
    doc["name"] = name
    doc["task"] = {"dataset": "timeseries_file",
                   "options": {"path": str(folder / f"{dataset}_TRAIN.ts"), "test_path": str(folder / f"{dataset}_TEST.ts")},
                   "split": {**doc["task"]["split"], "seed": seed}}
    doc["search"].update(seed=seed, timeout=seconds)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def minirocket(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int) -> dict[str, float]:
    """MiniRocket fitted on ``(n, T, C)`` samples (NaN padding as zeros); its test accuracy and seconds (fit + predict)."""
    from aeon.classification.convolution_based import MiniRocketClassifier

    def aeon_layout(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.nan_to_num(x, nan=0.0).transpose(0, 2, 1), dtype=np.float64)  # (n, C, T)

    start = time.perf_counter()
    model = MiniRocketClassifier(random_state=seed, n_jobs=1).fit(aeon_layout(x_train), y_train)
    accuracy = float(np.mean(model.predict(aeon_layout(x_test)) == y_test))
    return {"test_accuracy": accuracy, "seconds": time.perf_counter() - start}


def warm_minirocket() -> None:
    """Compile MiniRocket's numba kernels on a toy problem, so that no timed fit pays for it."""
    rng = np.random.default_rng(0)
    minirocket(rng.normal(size=(20, 40, 2)), np.arange(20) % 2, rng.normal(size=(4, 40, 2)), np.arange(4) % 2, 0)


def one_run(work: Path, dataset: str, seed: int, seconds: float) -> dict[str, Any]:
    """One search, then the three comparisons fitted on the whole training file."""
    space = space_file(work, dataset, seed, seconds)
    storage = f"sqlite:///{work / (space.stem + '.db')}"
    wall = search(space, storage, seconds)
    study = optuna.load_study(study_name=space.stem, storage=storage)
    best = best_trials(study)
    best = best[0] if best else None
    data = load_task(open_session(space))
    whole = pooled(data)
    classic = fit_baselines(whole, seed)
    rocket = minirocket(whole.x_train.numpy(), whole.y_train.numpy(), data.x_test.numpy(), data.y_test.numpy(), seed)
    return {"dataset": dataset, "seed": seed, "seconds": round(wall, 1),
            "sample_shape": list(data.sample_shape), "padded": data.padded, "lengths": data.info.get("lengths"),
            "train": len(data.x_train), "val": len(data.x_val), "test": len(data.x_test),
            "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials),
            "finished": sum(t.state.is_finished() for t in study.trials),
            "best_trial": best.number if best else None, "best_val": best.value if best else None,
            "best_test": best.user_attrs.get("test_accuracy") if best else None,
            "best_summary": best.user_attrs.get("summary") if best else None,
            **{name: m["test_accuracy"] for name, m in classic.items()},
            **{f"{name}_seconds": round(m["seconds"], 3) for name, m in classic.items()},
            "minirocket": rocket["test_accuracy"], "minirocket_seconds": round(rocket["seconds"], 2)}


def tables(rows: list[dict[str, Any]]) -> str:
    """One row per run, then the medians over seeds per dataset."""
    lines = ["| dataset | seed | trials (complete) | engine val | engine test | 1-NN | logistic | MiniRocket | MiniRocket s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        test = "-" if r["best_test"] is None else f"{r['best_test']:.3f}"
        val = "-" if r["best_val"] is None else f"{r['best_val']:.3f}"
        lines.append(f"| {r['dataset']} | {r['seed']} | {r['finished']} ({r['complete']}) | {val} | {test} | {r['1nn']:.3f} | "
                     f"{r['logistic_regression']:.3f} | {r['minirocket']:.3f} | {r['minirocket_seconds']:.1f} |")
    lines += ["", "| dataset | samples (T, C) | engine test (median) | 1-NN | logistic | MiniRocket (median) | engine - MiniRocket |",
              "|---|---|---|---|---|---|---|"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        group = [r for r in rows if r["dataset"] == dataset]
        engine = statistics.median(r["best_test"] or 0.0 for r in group)
        rocket = statistics.median(r["minirocket"] for r in group)
        shape = tuple(group[0]["sample_shape"])
        nn1, logistic = (statistics.median(r[k] for r in group) for k in ("1nn", "logistic_regression"))
        lines.append(f"| {dataset} | {shape}{' padded' if group[0]['padded'] else ''} | {engine:.3f} | {nn1:.3f} | {logistic:.3f} | "
                     f"{rocket:.3f} | {engine - rocket:+.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--work", type=Path, default=Path("runs/timeseries_archives"))
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "timeseries_archives.jsonl")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in args.results.read_text(encoding="utf-8").splitlines()] if args.results.exists() else []
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    print(f"# {datetime.date.today()} on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, commit {commit}; "
          f"{args.seconds:.0f} s per search", flush=True)
    warm_minirocket()
    for seed in args.seeds:
        for dataset in args.datasets:
            if any((r["dataset"], r["seed"]) == (dataset, seed) for r in done):
                continue
            row = {**one_run(args.work, dataset, seed, args.seconds), "commit": commit, "date": str(datetime.date.today())}
            done.append(row)
            args.results.parent.mkdir(parents=True, exist_ok=True)
            with open(args.results, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print(tables([r for r in done if r["dataset"] in args.datasets and r["seed"] in args.seeds]))


if __name__ == "__main__":
    sys.exit(main())
