"""Benchmark: the engine's shipped defaults against random search over the same space, on another modality.

Issue #12, benchmark 2: the comparison of ``benchmarks/mnist1d_search.py`` (its arms ``engine`` and
``random``, its clock, checkpoints and tables) on a second shipped space, so that nothing is tuned to
MNIST-1D. ``engine`` is ``iasf-search --space search_spaces/<space>.yaml`` as shipped, with only the
run's seed (``search.seed``), ``search.timeout`` = the budget and ``search.trials`` = 100000 (so the
budget ends the search); ``random`` is the same with ``search.sampler: random`` (the enqueued
baselines stay first in both). The data are the space's own task and split, the same in both arms
and every seed (the seed seeds the search, never the data; the fingerprint column shows it). At each
checkpoint (2/15, 5/15, 10/15 and all of the budget) an arm's result is the test accuracy of its best
trial by validation accuracy among the complete trials finished by then; the engine wins a checkpoint
when its median over seeds is strictly above random's.

    python benchmarks/modality_search.py [--space timeseries] [--seeds 0 1 2] [--minutes 5]
                                         [--work DIR] [--results FILE]

Run it alone on the machine (the default is 2 arms x 3 seeds x 5 minutes). Finished runs are appended
to ``--results`` (JSON lines; runs already there are skipped) and the tables printed at the end.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from mnist1d_search import (  # benchmarks/ is on sys.path when a script in it runs
    CHECKPOINTS,
    engine_run,
    header,
    run_missing,
    summarise,
    tables,
)

REPO = Path(__file__).resolve().parent.parent
ARMS = ("engine", "random")


def space_file(work: Path, space: str, arm: str, seed: int, seconds: float) -> Path:
    """The shipped ``space`` with the seed and the budget; ``random``: the random sampler, nothing else changed."""
    doc = yaml.safe_load((REPO / "search_spaces" / f"{space}.yaml").read_text(encoding="utf-8"))
    name = f"{space}-{arm}-{seed}"
    doc["name"] = name
    doc["search"].update(seed=seed, timeout=seconds, trials=100000)
    if arm == "random":
        doc["search"]["sampler"] = "random"
        doc["search"].pop("sampler_options", None)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="timeseries", help="a shipped space's name")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-clock budget of each run")
    parser.add_argument("--work", type=Path, default=Path("runs/modality_search"))
    parser.add_argument("--results", type=Path, default=None, help="default: WORK/results.jsonl")
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    print(header(f"{args.space}.yaml, {args.minutes:g} min per run"), flush=True)
    seconds = args.minutes * 60
    wanted = [{"space": args.space, "arm": arm, "seed": seed, "minutes": args.minutes} for seed in args.seeds for arm in args.arms]
    done = run_missing(args.results or args.work / "results.jsonl", wanted,
                       lambda key: summarise(engine_run(space_file(args.work, args.space, key["arm"], key["seed"], seconds), seconds),
                                             seconds))
    mine = [r for r in done if r.get("space") == args.space and r["arm"] in args.arms and r["seed"] in args.seeds
            and r["minutes"] == args.minutes]
    print(tables(mine, args.minutes, arms=tuple(args.arms), targets={m: 0.0 for m in CHECKPOINTS},
                 baselines=("random",)))

if __name__ == "__main__":
    main()
