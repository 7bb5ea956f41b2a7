"""Benchmark: the engine on MNIST-1D at equal wall clock against random search and a hand-tuned CNN family.

Issue #12, benchmark 1. Three arms, each given the same wall-clock budget (``--minutes``, default
15) on the same machine, one seed at a time:

* ``engine``: ``iasf-search --space <space> --storage sqlite:///<file> -q`` as a subprocess, the space
  being the shipped ``search_spaces/sequence.yaml`` with only the task's split changed (below), the
  run's seed (``search.seed``), ``search.timeout`` = the budget and ``search.trials`` = 100000 (so the
  budget, not a trial count, ends the search). It is stopped with SIGTERM at the budget if a
  trial is still running (finished trials are kept; the unfinished one does not count).
* ``random``: the same space and command with ``search.sampler: random``, nothing else changed.
* ``engine_prescreen`` (benchmark 3's second half, run only when named in ``--arms``): the ``engine`` arm
  with ``search.prescreen`` on (:data:`PRESCREEN`): each trial the sampler proposes is the best of 16
  candidates by the proxy, scored untrained; it is compared with ``engine``, not counted as a baseline.
* ``cnn_tpe``: what a user would write instead: Optuna's ``TPESampler`` (seeded) in-process over the
  CNN family of the MNIST-1D paper (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D",
  arXiv:2011.14439; code: github.com/greydanus/mnist1d). The paper's CNN (``ConvBase`` in its
  ``notebooks/models.py``) is 3 ``Conv1d`` layers of 25 channels, kernels 5, 3, 3 with stride 2, ReLU,
  the flattened features into one linear layer, trained with Adam (lr 1e-2, batch 100, no weight
  decay); 94% test accuracy in its table. Its pooling study (``notebooks/9. benchmark_pooling.ipynb``,
  ``ConvPooling``) varies the down-sampling: none, stride 2, max, average or L2 pooling of width 2
  after each of 2 convolutions of 20 channels, kernel 3. The family searched here spans both:
  depth 2-4, channels 16-128, the first kernel 3/5/7 and the others 3/5, down-sampling
  none/stride/max/avg/l2, and (not in the paper, asked for by the issue) batch norm after each
  convolution on or off; the linear head on the flattened features as in the paper; learning rate
  1e-4..3e-2 and weight decay 1e-5..1e-1 (log). The paper's ``ConvBase`` is queued as the first trial.
  Each trial trains with the engine's own loop (:func:`iasf_search.train.train`: AdamW, warm-up +
  cosine, the space's 20 epochs and batch 128), reports the validation accuracy per epoch to Optuna's
  default ``MedianPruner``, and is scored, as the engine scores its trials, by its last epoch's
  validation accuracy; its test accuracy is measured for reporting only. A trial still training at
  the budget is stopped and does not count.

Same data in every arm. The ``mnist1d`` dataset generates 5,000 samples (``samples: 5000, seed: 42``,
the published dataset) and keeps the generator's own split: 4,000 training and 1,000 test sequences.
``split.val`` takes the validation share from the 4,000 (stratified by class, ``split.seed``); the
shipped ``val: 0.15`` would hold out 600, so the space's split is set to ``{val: 0.1, seed: 0}``:
400 validation and 3,600 training sequences, the same for every arm and seed (the seed seeds the
searches, never the data). The ``cnn_tpe`` arm loads the task through the engine's own code,
``load_task(open_session(space))`` on the engine arm's space file, so it gets the very same tensors;
every run records a fingerprint (SHA-1 over the train, validation and test tensors) to show it.

Timing. Every arm's clock starts just before the arm starts work: before the subprocess is launched
(``engine``, ``random``: Python start-up, data generation and the baselines the engine fits all count)
or before the task is loaded (``cnn_tpe``). A trial counts from the moment it finished: for the engine
arms its Optuna ``datetime_complete`` minus the launch time (both the local clock of this machine),
for ``cnn_tpe`` the seconds since the clock started, recorded when it finished. At each checkpoint
(2, 5, 10 and 15 minutes, scaled to ``--minutes``: 2/15, 5/15, 10/15 and all of the budget) the
arm's result is the test accuracy of the complete trial with the best validation accuracy among
those finished by then; ties go to the lower validation loss, the engine's own rule for its best trial,
then to the one that finished first (each checkpoint also records the first-finished pick,
``first_of_ties``, so the tie-break's effect can be read off the same runs). Per arm and checkpoint the tables give
the median over seeds and the min-max (a run with no complete trial by then counts as 0); the engine
meets the issue's target when its median is at least 99.0% at 15 minutes and at least 98% at 5
minutes, each strictly above both baselines' medians.

    python benchmarks/mnist1d_search.py [--arms engine random cnn_tpe] [--seeds 0 1 2] [--minutes 15]
                                        [--work DIR] [--results FILE]

Run it alone on the machine (the full run is 3 arms x 3 seeds x 15 minutes, about 2 h 15). Each
finished run is appended to ``--results`` (JSON lines; runs already there are skipped, so an
interrupted benchmark resumes), and the Markdown tables are printed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from small_data import search as cli_search  # benchmarks/ is on sys.path when a script in it runs
from torch import nn

from iasf_search.components import TaskData
from iasf_search.search.setup import load_task
from iasf_search.session import open_session
from iasf_search.settings import TRAINING_PARAMS
from iasf_search.train import Diverged, TimeLimit, evaluate, train

REPO = Path(__file__).resolve().parent.parent
SPACE = REPO / "search_spaces" / "sequence.yaml"
SPLIT = {"val": 0.1, "seed": 0}  # 400 of the 4,000 training sequences
ARMS = ("engine", "random", "cnn_tpe", "engine_prescreen")
BASELINES = ("random", "cnn_tpe")  # what the engine has to beat; engine_prescreen is the engine with the prescreen on
PRESCREEN = {"proxy": "synflow", "candidates": 16, "keep": 1}
"""``engine_prescreen``'s ``search.prescreen``: synflow, the best training-free proxy on this space in
``benchmarks/proxy_fidelity.py`` (rho 0.54; the parameter count, 0.58, only prefers larger models)."""
CHECKPOINTS = (2, 5, 10, 15)  # minutes of a 15-minute budget, scaled to --minutes
TARGETS = {5: 0.98, 15: 0.99}  # the targets for the engine's median test accuracy


def space_file(work: Path, arm: str, seed: int, seconds: float) -> Path:
    """The shipped sequence space with the 400-sequence validation split, the seed, the budget; ``random``: random sampler."""
    doc = yaml.safe_load(SPACE.read_text(encoding="utf-8"))
    name = f"mnist1d-{arm}-{seed}"
    doc["name"] = name
    doc["task"]["split"] = dict(SPLIT)
    doc["search"].update(seed=seed, timeout=seconds, trials=100000)
    if arm == "random":
        doc["search"]["sampler"] = "random"
    if arm == "engine_prescreen":
        doc["search"]["prescreen"] = dict(PRESCREEN)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def fingerprint(data: TaskData) -> str:
    """SHA-1 (12 hex digits) over the train, validation and test tensors: equal in every arm when the data are."""
    h = hashlib.sha1()
    for t in (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def search(space: Path, storage: str, seconds: float) -> tuple[datetime.datetime, float]:
    """:func:`small_data.search` (the CLI for at most ``seconds``, then SIGTERM), with its launch time."""
    launched = datetime.datetime.now()
    return launched, cli_search(space, storage, seconds)


def engine_run(space: Path, seconds: float) -> dict[str, Any]:
    """One search of ``space`` (study name: the file's stem, storage next to it) for at most ``seconds``; its complete
    trials as ``(finished_s, val, test, number, summary)``, finished-trial count, first start and data fingerprint."""
    db = space.parent / f"{space.stem}.db"
    if db.exists():
        db.unlink()  # a run not in the results file was interrupted: start it again, not resume it
    storage = f"sqlite:///{db}"
    launched, wall = search(space, storage, seconds)
    study = optuna.load_study(study_name=space.stem, storage=storage)
    trials = [{"finished_s": (t.datetime_complete - launched).total_seconds(), "val": t.values[0],
               "val_loss": t.user_attrs.get("val_loss"), "test": t.user_attrs.get("test_accuracy"), "number": t.number,
               "summary": t.user_attrs.get("summary")}
              for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    starts = [t.datetime_start for t in study.trials if t.datetime_start is not None]
    return {"wall_s": wall, "trials": trials, "finished": sum(t.state.is_finished() for t in study.trials),
            "first_trial_s": (min(starts) - launched).total_seconds() if starts else None,
            "data": fingerprint(load_task(open_session(space)))}


class MNIST1DConvNet(nn.Module):
    """The MNIST-1D paper's CNN family: ``depth`` x (Conv1d, optional batch norm, ReLU, optional pooling), then
    the flattened features into one linear layer (``ConvBase``: depth 3, 25 channels, kernels 5/3/3, stride 2)."""

    def __init__(self, *, depth: int, channels: int, kernel_first: int, kernel: int, downsample: str, batch_norm: bool,
                 length: int, features: int, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = features
        for i in range(depth):
            k = kernel_first if i == 0 else kernel
            layers.append(nn.Conv1d(c_in, channels, k, stride=2 if downsample == "stride" else 1, padding=k // 2))
            if batch_norm:
                layers.append(nn.BatchNorm1d(channels))
            layers.append(nn.ReLU())
            if downsample in ("max", "avg", "l2"):
                layers.append({"max": nn.MaxPool1d(2, ceil_mode=True), "avg": nn.AvgPool1d(2, ceil_mode=True),
                               "l2": nn.LPPool1d(2, 2, ceil_mode=True)}[downsample])
            c_in = channels
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, features, length)).numel()
        self.head = nn.Linear(flat, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, T, F), the engine's sequence layout
        return self.head(self.features(x.transpose(1, 2)).flatten(1))


PAPER_CNN = {"depth": 3, "channels": 25, "kernel_first": 5, "kernel": 3, "downsample": "stride", "batch_norm": False,
             "lr": 1e-2, "weight_decay": 1e-5}
"""The paper's ``ConvBase`` (its weight decay is 0; 1e-5 is the low end of the searched range), queued first."""


def cnn_run(work: Path, seed: int, seconds: float) -> dict[str, Any]:
    """Optuna TPE over the paper's CNN family for ``seconds`` of wall time, on the engine's own split of the task."""
    start = time.perf_counter()
    data = load_task(open_session(space_file(work, "engine", seed, seconds)))  # the engine's data, split and all
    length, features = data.sample_shape
    defaults = {k: p.default for k, p in TRAINING_PARAMS.items()}
    space_training = yaml.safe_load(SPACE.read_text(encoding="utf-8"))["training"]
    device = torch.device("cpu")
    records: list[dict[str, Any]] = []
    first: list[float] = []  # when the first trial started

    def objective(trial: optuna.Trial) -> float:
        first[:] = first or [time.perf_counter() - start]
        arch = {"depth": trial.suggest_int("depth", 2, 4), "channels": trial.suggest_int("channels", 16, 128, log=True),
                "kernel_first": trial.suggest_categorical("kernel_first", [3, 5, 7]),
                "kernel": trial.suggest_categorical("kernel", [3, 5]),
                "downsample": trial.suggest_categorical("downsample", ["none", "stride", "max", "avg", "l2"]),
                "batch_norm": trial.suggest_categorical("batch_norm", [False, True])}
        config = {**defaults, "epochs": space_training["epochs"], "batch_size": space_training["batch_size"],
                  "optimizer": "adamw", "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
                  "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-1, log=True)}
        torch.manual_seed(seed)
        model = MNIST1DConvNet(**arch, length=length, features=features, classes=data.num_classes)

        def report(epoch: int, val: float, _loss: float) -> None:
            trial.report(val, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            result = train(model, data, config, device=device, seed=seed, report=report,
                           max_seconds=max(0.1, seconds - (time.perf_counter() - start)))
        except (TimeLimit, Diverged) as exc:
            raise optuna.TrialPruned(str(exc)) from None
        test, _ = evaluate(model, data.x_test, data.y_test, device)
        finished = time.perf_counter() - start
        if finished > seconds:
            raise optuna.TrialPruned("finished after the budget")
        records.append({"finished_s": finished, "val": result.val_accuracy, "val_loss": result.val_loss, "test": test,
                        "number": trial.number,
                        "summary": " ".join(f"{k}={v}" for k, v in arch.items()) + f" lr={config['lr']:.2g}"})
        return result.val_accuracy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                study_name=f"mnist1d-cnn_tpe-{seed}")  # in memory; the default pruner: median
    study.enqueue_trial(PAPER_CNN)
    study.optimize(objective, timeout=max(0.1, seconds - (time.perf_counter() - start)))
    return {"wall_s": time.perf_counter() - start, "trials": records, "finished": len(study.trials),
            "first_trial_s": first[0] if first else None, "data": fingerprint(data)}


def best_by(trials: list[dict[str, Any]], seconds: float, *, tie_break: bool = True) -> dict[str, Any] | None:
    """The trial with the best validation accuracy among those finished within ``seconds``; ties go to the lower
    validation loss, as the engine's own pick does (:func:`iasf_search.results.access.best_trials`), then to the
    first to finish (without ``tie_break``, or in records that hold no loss, to the first to finish only)."""
    done = sorted((t for t in trials if t["finished_s"] <= seconds), key=lambda t: t["finished_s"])

    def key(t: dict[str, Any]) -> tuple[float, float]:
        loss = t.get("val_loss") if tie_break else None
        return t["val"], -loss if loss is not None else -math.inf

    return max(done, key=key) if done else None


def one_run(work: Path, arm: str, seed: int, minutes: float) -> dict[str, Any]:
    seconds = minutes * 60
    run = cnn_run(work, seed, seconds) if arm == "cnn_tpe" else engine_run(space_file(work, arm, seed, seconds), seconds)
    return summarise(run, seconds)


def summarise(run: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A run's record: at each checkpoint, the test accuracy of the best-by-validation trial finished by then."""
    checkpoints = {}
    for m in CHECKPOINTS:
        until = seconds * m / CHECKPOINTS[-1]
        best, first = best_by(run["trials"], until), best_by(run["trials"], until, tie_break=False)
        n = sum(t["finished_s"] <= until for t in run["trials"])
        checkpoints[str(m)] = None if best is None else {"test": best["test"], "val": best["val"], "trial": best["number"],
                                                         "complete": n, "first_of_ties": first["number"],
                                                         "first_of_ties_test": first["test"]}
    final = best_by(run["trials"], seconds)
    return {"wall_s": round(run["wall_s"], 1), "data": run["data"], "complete": len(run["trials"]), "finished": run["finished"],
            "first_trial_s": run["first_trial_s"], "checkpoints": checkpoints, "best_summary": final["summary"] if final else None,
            "trials": run["trials"]}


def label(m: int, minutes: float) -> str:
    t = minutes * m / CHECKPOINTS[-1]
    return f"{t:.3g} min" if t >= 1 else f"{t * 60:.0f} s"


def test_at(row: dict[str, Any], m: int) -> float | None:
    c = row["checkpoints"][str(m)]
    return None if c is None else c["test"]


def tables(rows: list[dict[str, Any]], minutes: float, arms: tuple[str, ...] = ARMS, targets: dict[int, float] = TARGETS,
           baselines: tuple[str, ...] = BASELINES) -> str:
    """One row per run (best-by-validation test accuracy at each checkpoint), then medians with min-max per arm,
    then the engine against the target and both baselines at each checkpoint."""
    heads = [label(m, minutes) for m in CHECKPOINTS]
    lines = ["| arm | seed | data | complete trials | first trial at s | " + " | ".join(heads) + " | best architecture |",
             "|---|---|---|---|---|" + "---|" * len(heads) + "---|"]
    for r in rows:
        cells = []
        for m in CHECKPOINTS:
            c = r["checkpoints"][str(m)]
            cells.append("-" if c is None else f"{c['test']:.3f} (#{c['trial']}, val {c['val']:.3f})")
        first = "-" if r["first_trial_s"] is None else f"{r['first_trial_s']:.0f}"
        lines.append(f"| {r['arm']} | {r['seed']} | {r['data']} | {r['complete']} | {first} | " + " | ".join(cells)
                     + f" | {r['best_summary'] or '-'} |")
    medians: dict[tuple[str, int], float | None] = {}
    lines += ["", "| arm | runs | " + " | ".join(f"{h}: median (min-max)" for h in heads) + " |",
              "|---|---|" + "---|" * len(heads)]
    for arm in arms:
        group = [r for r in rows if r["arm"] == arm]
        if not group:
            continue
        cells = []
        for m in CHECKPOINTS:
            tests = [test_at(r, m) or 0.0 for r in group]  # a run with no trial yet scores 0
            medians[arm, m] = statistics.median(tests)
            cells.append(f"{medians[arm, m]:.3f} ({min(tests):.3f}-{max(tests):.3f})")
        lines.append(f"| {arm} | {len(group)} | " + " | ".join(cells) + " |")
    if any(a == "engine" for a, _ in medians):
        lines += ["", "| checkpoint | engine median | target | meets target | " + " | ".join(f"above {b}" for b in baselines) + " |",
                  "|---|---|---|---|" + "---|" * len(baselines)]
        for m, h in zip(CHECKPOINTS, heads, strict=True):
            e = medians["engine", m]
            target = targets.get(m)
            above = {b: ("-" if (b, m) not in medians else "yes" if e > medians[b, m] else "no") for b in baselines}
            meets = "-" if target is None else "yes" if e >= target and "no" not in above.values() else "no"
            wanted = "-" if target is None else f">= {target:.2f} and above all" if target else "above all"
            lines.append(f"| {h} | {e:.3f} | {wanted} | {meets} | "
                         + " | ".join(above.values()) + " |")
    return "\n".join(lines)


def diagnostics(rows: list[dict[str, Any]], minutes: float) -> str:
    """Per run, what the search held and how the pick was made: complete and finished trials, the best test
    accuracy of any complete trial (not a selection rule: what a perfect pick would have got), and at the end
    of the budget the pick by the engine's rule beside the first-finished of the trials level on validation."""
    last = str(CHECKPOINTS[-1])
    lines = [f"| arm | seed | complete / finished trials | best test of any complete trial | pick at {label(CHECKPOINTS[-1], minutes)}: "
             "trial, val, test | first-finished of the tied: trial, test |", "|---|---|---|---|---|---|"]
    for r in rows:
        c = r["checkpoints"][last]
        best = max((t["test"] for t in r["trials"]), default=None)
        pick = "-" if c is None else f"#{c['trial']}, {c['val']:.4f}, {c['test']:.3f}"
        first = "-" if c is None or "first_of_ties" not in c else f"#{c['first_of_ties']}, {c['first_of_ties_test']:.3f}"
        lines.append(f"| {r['arm']} | {r['seed']} | {r['complete']} / {r['finished']} | {'-' if best is None else f'{best:.3f}'} "
                     f"| {pick} | {first} |")
    return "\n".join(lines)


def run_missing(results: Path, wanted: list[dict[str, Any]], run: Callable[[dict[str, Any]], dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row of the JSON-lines file ``results``, after running (``run(key) -> row``, appended and printed as it
    finishes) each ``wanted`` key that no row there matches on all of the key's fields."""
    done = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()] if results.exists() else []
    for key in wanted:
        if any(all(r.get(k) == v for k, v in key.items()) for r in done):
            continue
        row = {**key, **run(key)}
        done.append(row)
        with open(results, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: v for k, v in row.items() if k != "trials"}), flush=True)
    return done


def header(detail: str) -> str:
    return (f"# {datetime.date.today()} on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads); {detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS[:3]))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget of each run")
    parser.add_argument("--work", type=Path, default=Path("runs/mnist1d_search"))
    parser.add_argument("--results", type=Path, default=None, help="default: WORK/results.jsonl")
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    print(header(f"{args.minutes:g} min per run"), flush=True)
    wanted = [{"arm": arm, "seed": seed, "minutes": args.minutes} for seed in args.seeds for arm in args.arms]
    done = run_missing(args.results or args.work / "results.jsonl", wanted,
                       lambda key: one_run(args.work, key["arm"], key["seed"], args.minutes))
    rows = [r for r in done if r["arm"] in args.arms and r["seed"] in args.seeds and r["minutes"] == args.minutes]
    print(tables(rows, args.minutes))
    print()
    print(diagnostics(rows, args.minutes))

if __name__ == "__main__":
    main()
