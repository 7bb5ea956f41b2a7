"""Benchmark: Pareto-aware pruning (``pareto_halving``) against no pruning, at equal wall time.

The same two-objective search (``benchmarks/pareto_space.yaml``: validation accuracy, maximised,
against FLOPs per sample, minimised) runs once per arm and seed through the command line with
``--timeout SECONDS`` (no trial limit); the arms differ only in ``search.pruner``. The arms of a seed
run one after the other, never together, in alternating order from seed to seed. For each run:

* trials finished (complete / pruned), epochs trained, the sum of the trials' durations, and the
  search process's CPU seconds (with the machine's other CPU use during the run, as a noise gauge);
* the 2-D hypervolume of the Pareto front of COMPLETE trials (reference point: accuracy 0 and
  1.1 x the largest FLOPs seen in any run; FLOPs divided by that reference, so the ideal is 1),
  counting only trials completed 25/50/75/100% of SECONDS after the run's first trial started, and
  at the end; also with log-scaled FLOPs (the costs span two orders of magnitude, which the linear
  scale compresses into the cheap corner), and the same front scored with test accuracy;
* for the unpruned arm, the rank correlation of each epoch's accuracy with the last epoch's, and a
  replay of the pruner's rule (``--replay`` settings) on its recorded per-epoch values: how many of
  its trials, and of its final front, ``pareto_halving`` would have stopped.

The hypervolume is computed here (a sort and a sweep), not with Optuna's private ``optuna._hypervolume``.

    python benchmarks/pareto_pruning.py --seconds 240 --seeds 0 1 --out /tmp/pareto.json

Needs the engine to record per-epoch objective vectors (``records.epoch_values``) in studies with
several objectives. Run it alone: the hypervolume at equal wall time is the figure under test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from iasf_search.plugins.pareto_pruning import ParetoHalvingPruner, promoted
from iasf_search.results.records import epoch_values

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
ARMS = ("pareto_halving", "none")


def hypervolume_2d(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` (both coordinates minimised) and bounded by ``ref``; points not
    better than ``ref`` in both coordinates add nothing."""
    inside = sorted(p for p in points if p[0] < ref[0] and p[1] < ref[1])
    area, best_y = 0.0, ref[1]
    for x, y in inside:  # by x ascending: each point that lowers y adds a strip up to the reference's x
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def parse_arm(arm: str) -> tuple[str, dict[str, Any]]:
    """``"pareto_halving:min_resource=6"`` -> ``("pareto_halving", {"min_resource": 6})``; no options: the space's."""
    name, _, rest = arm.partition(":")
    return name, {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in rest.split(",") if item)}


def run_arm(space: dict, arm: str, seed: int, seconds: float, workdir: Path, threads: int) -> dict[str, Any]:
    """One search of ``seconds`` with ``search.pruner`` set from ``arm``; returns the run's measurements and
    where its study is. A run already in ``workdir`` (its ``.json`` beside its database) is not run again."""
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", arm) + f"_{seed}"
    db, done = workdir / f"{stem}.db", workdir / f"{stem}.json"
    if done.exists():
        return json.loads(done.read_text(encoding="utf-8"))
    if db.exists():
        raise SystemExit(f"{db} exists without {done.name} (an interrupted run?): remove it or give --keep a fresh folder")
    name, options = parse_arm(arm)
    doc = json.loads(json.dumps(space))
    doc["search"]["pruner"] = name
    if name != space["search"]["pruner"]:
        doc["search"].pop("pruner_options", None)
    doc["search"]["pruner_options"] = {**doc["search"].get("pruner_options", {}), **options}
    path = workdir / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    url = f"sqlite:///{db}"
    cmd = ["iasf-search", "--space", str(path), "--storage", url, "--seed", str(seed), "--timeout", str(seconds),
           "--trials", "100000", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "IASF_SEARCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    before, busy0, start = resource.getrusage(resource.RUSAGE_CHILDREN), busy_jiffies(), time.perf_counter()
    subprocess.run(cmd, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after, busy1 = resource.getrusage(resource.RUSAGE_CHILDREN), busy_jiffies()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ticks = os.sysconf("SC_CLK_TCK")
    machine_busy = (busy1[0] - busy0[0]) / ticks
    run = {"arm": arm, "seed": seed, "storage": url, "study": doc["name"], "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
           "others_cpu_pct": round(100 * max(0.0, machine_busy - cpu) / ((busy1[1] - busy0[1]) / ticks), 1),
           "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    done.write_text(json.dumps(run), encoding="utf-8")
    return run


def trained_epochs(t: FrozenTrial) -> int:
    """Epochs a trial trained (0 for a result copied from an identical trial)."""
    history = epoch_values(t)
    return max(history) if history else 0


def replay(trials: list[FrozenTrial], pruner: ParetoHalvingPruner, directions) -> dict[int, int]:
    """``{trial number: epoch}`` where ``pruner`` would have stopped trials of an unpruned, one-worker run
    (trials in number order; a trial stopped at a rung no longer competes at the later ones)."""
    reached: dict[int, int] = {}
    stopped: dict[int, int] = {}
    for t in sorted(trials, key=lambda t: t.number):
        history = epoch_values(t)
        reached[t.number] = max(history, default=0)
        for epoch in sorted(e for e in history if pruner.is_rung(e)):
            others = [epoch_values(o)[epoch] for o in trials if o.number < t.number and reached.get(o.number, 0) >= epoch]
            if not promoted(history[epoch], others, directions, pruner.reduction_factor):
                stopped[t.number] = reached[t.number] = epoch
                break
    return stopped


def front(points: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    """The non-dominated ``(number, accuracy, flops)`` points (accuracy maximised, FLOPs minimised)."""
    return [p for p in points if not any(q[1] >= p[1] and q[2] <= p[2] and (q[1] > p[1] or q[2] < p[2]) for q in points)]


def average_ranks(x: list[float]) -> np.ndarray:
    """Ranks 0..n-1 of ``x``, ties sharing their mean rank."""
    values = np.asarray(x, dtype=float)
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    for v in np.unique(values):
        ranks[values == v] = ranks[values == v].mean()
    return ranks


def rank_correlation(trials: list[FrozenTrial], epochs: int) -> dict[int, float]:
    """Spearman correlation, over fully trained trials, of the first objective at each epoch with its value at the last."""
    curves = [epoch_values(t) for t in trials]
    curves = [c for c in curves if len(c) == epochs]
    last = average_ranks([c[epochs][0] for c in curves])
    return {e: round(float(np.corrcoef(average_ranks([c[e][0] for c in curves]), last)[0, 1]), 2) for e in range(1, epochs)}


def analyse(run: dict[str, Any], seconds: float, ref_flops: float, min_flops: float, epochs: int,
            replays: list[tuple[int, int]]) -> dict[str, Any]:
    """Add the run's trial counts, times and hypervolumes to ``run``."""
    study = optuna.load_study(study_name=run["study"], storage=run["storage"])
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    origin = min(t.datetime_start for t in trials if t.datetime_start is not None)

    def offset(t: FrozenTrial) -> float:
        return (t.datetime_complete - origin).total_seconds()

    def scores(subset: list[FrozenTrial]) -> dict[str, float]:
        val = [(t.number, t.values[0], t.values[1]) for t in subset]
        test = [(t.number, t.user_attrs["test_accuracy"], t.values[1]) for t in subset]
        lin = lambda f: f / ref_flops  # noqa: E731
        log = lambda f: math.log(f / min_flops) / math.log(ref_flops / min_flops)  # noqa: E731
        return {"hv": hypervolume_2d([(lin(f), -a) for _, a, f in front(val)], (1.0, 0.0)),
                "hv_log": hypervolume_2d([(log(f), -a) for _, a, f in front(val)], (1.0, 0.0)),
                "hv_test": hypervolume_2d([(lin(f), -a) for _, a, f in front(test)], (1.0, 0.0))}

    run.update({
        "finished": len(done), "complete": len(complete), "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials), "reused": sum("reused_from" in t.user_attrs for t in done),
        "epochs_trained": sum(trained_epochs(t) for t in done),
        "pruned_at": sorted(t.user_attrs["pruned_at_epoch"] for t in done if "pruned_at_epoch" in t.user_attrs),
        "trial_s": round(sum(t.duration.total_seconds() for t in done), 1),
        "over_time": {str(f): {"complete": sum(offset(t) <= f * seconds for t in complete),
                               **scores([t for t in complete if offset(t) <= f * seconds])} for f in FRACTIONS},
        "final": scores(complete),
        "front": sorted(front([(t.number, t.values[0], t.values[1]) for t in complete]), key=lambda p: p[2]),
    })
    if run["arm"] == "none":  # what pareto_halving would have done to this run's trials
        recorded = [t for t in done if epoch_values(t)]
        run["rank_correlation"] = rank_correlation(recorded, epochs)
        run["replay"] = {}
        for min_resource, eta in replays:
            stopped = replay(recorded, ParetoHalvingPruner(min_resource=min_resource, reduction_factor=eta, max_resource=epochs),
                             study.directions)
            run["replay"][f"{min_resource}:{eta}"] = {
                "would_stop": len(stopped), "front_would_stop": sum(p[0] in stopped for p in run["front"]),
                "epochs_saved": sum(trained_epochs(t) - stopped[t.number] for t in recorded if t.number in stopped)}
    return run


def table(runs: list[dict[str, Any]]) -> str:
    head = ("| seed | pruner | finished (complete / pruned) | epochs trained | trial s | CPU s | others' CPU % | "
            + " | ".join(f"HV @{int(f * 100)}%" for f in FRACTIONS) + " | HV end | HV end, log FLOPs | HV end, test acc | front |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in runs:
        hv = " | ".join(f"{r['over_time'][str(f)]['hv']:.4f} ({r['over_time'][str(f)]['complete']})" for f in FRACTIONS)
        lines.append(f"| {r['seed']} | {r['arm']} | {r['finished']} ({r['complete']} / {r['pruned']}) | {r['epochs_trained']} | "
                     f"{r['trial_s']:.0f} | {r['cpu_s']:.0f} | {r['others_cpu_pct']:.0f} | {hv} | {r['final']['hv']:.4f} | "
                     f"{r['final']['hv_log']:.4f} | {r['final']['hv_test']:.4f} | {len(r['front'])} |")
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        m = {key: sum(get(r) for r in mine) / len(mine) for key, get in (
            ("finished", lambda r: r["finished"]), ("complete", lambda r: r["complete"]), ("pruned", lambda r: r["pruned"]),
            ("epochs", lambda r: r["epochs_trained"]), ("trial_s", lambda r: r["trial_s"]), ("cpu_s", lambda r: r["cpu_s"]),
            ("others", lambda r: r["others_cpu_pct"]), ("hv", lambda r: r["final"]["hv"]), ("hv_log", lambda r: r["final"]["hv_log"]),
            ("hv_test", lambda r: r["final"]["hv_test"]), ("front", lambda r: len(r["front"])),
            *((str(f), lambda r, f=f: r["over_time"][str(f)]["hv"]) for f in FRACTIONS))}
        hv = " | ".join(f"{m[str(f)]:.4f}" for f in FRACTIONS)
        lines.append(f"| mean | {arm} | {m['finished']:.1f} ({m['complete']:.1f} / {m['pruned']:.1f}) | {m['epochs']:.0f} | "
                     f"{m['trial_s']:.0f} | {m['cpu_s']:.0f} | {m['others']:.0f} | {hv} | {m['hv']:.4f} | {m['hv_log']:.4f} | "
                     f"{m['hv_test']:.4f} | {m['front']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=240, help="wall-time budget of each run (--timeout)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--space", type=Path, default=ROOT / "benchmarks" / "pareto_space.yaml")
    parser.add_argument("--arms", nargs="+", default=list(ARMS),
                        help="values of search.pruner to compare, each optionally with options: pareto_halving:min_resource=6")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (1: immune to spin-waiting "
                                                                "when other processes keep the cores busy)")
    parser.add_argument("--keep", type=Path, help="keep the runs' spaces and databases in this folder (default: a temporary "
                                                  "one); runs already there are analysed, not run again")
    parser.add_argument("--replay", nargs="*", default=["2:3", "6:3"], metavar="MIN:ETA",
                        help="pareto_halving settings (min_resource:reduction_factor) replayed on the unpruned runs")
    parser.add_argument("--out", type=Path, help="write every figure, and each run's front, as JSON here")
    args = parser.parse_args()
    space = yaml.safe_load(args.space.read_text(encoding="utf-8"))
    started = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        runs = []
        for i, seed in enumerate(args.seeds):
            for arm in (args.arms if i % 2 == 0 else list(reversed(args.arms))):
                runs.append(run_arm(space, arm, seed, args.seconds, workdir, args.threads))
                print(f"seed {seed} {arm}: {runs[-1]['wall_s']} s", file=sys.stderr, flush=True)
        flops = []
        for r in runs:
            study = optuna.load_study(study_name=r["study"], storage=r["storage"])
            flops += [t.user_attrs["cost.flops"] for t in study.get_trials(deepcopy=False) if "cost.flops" in t.user_attrs]
        ref_flops, min_flops = 1.1 * max(flops), min(flops)
        replays = [tuple(int(v) for v in item.split(":")) for item in args.replay]
        runs = [analyse(r, args.seconds, ref_flops, min_flops, space["training"]["epochs"], replays) for r in runs]
    print(table(runs))
    for r in runs:
        if "replay" in r:
            rungs = sorted({m * eta**k for m, eta in replays for k in range(8) if m * eta**k < space["training"]["epochs"]})
            print(f"\nseed {r['seed']}, no pruning ({r['finished']} trials, front of {len(r['front'])}): rank correlation of "
                  f"accuracy at epoch e with the last: " + ", ".join(f"e={e}: {r['rank_correlation'][e]:.2f}" for e in rungs))
            for setting, w in r["replay"].items():
                print(f"  pareto_halving min_resource:reduction_factor {setting} would have stopped {w['would_stop']} trials "
                      f"({w['epochs_saved']} epochs) and {w['front_would_stop']} of the front")
    if args.out:
        meta = {"started_utc": started.isoformat(timespec="seconds"), "machine": platform.machine(), "nproc": os.cpu_count(),
                "python": platform.python_version(), "optuna": optuna.__version__, "seconds": args.seconds,
                "threads": args.threads, "reference": {"flops": ref_flops, "accuracy": 0.0, "min_flops": min_flops},
                "space": str(args.space)}
        args.out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
