"""Benchmark: which recorded measurements predict accuracy (issue #15, seed 003's "empirical validation").

For each task, one study of the shipped space with every trial trained to the end (``search.pruner:
none``, so every trial records its representation metrics) and architectures drawn at random
(``search.sampler: random``: a spread of architectures, not one region an optimiser converged to);
the space's baselines are enqueued first as shipped. Then ``iasf-search analyze`` over the study:
Spearman rho of every representation metric, cost and parameter count with validation accuracy,
with bootstrap 95% intervals.

    python benchmarks/representation_analysis.py [--tasks digits mnist1d] [--trials 45] [--work runs/representation_analysis]
                                                 [--epochs N (smoke tests only)]

``digits`` is ``search_spaces/vision.yaml``, ``mnist1d`` is ``search_spaces/sequence.yaml``; nothing
else in the spaces changes. The studies are kept (``WORK/<task>.db``) for ``benchmarks/claims.py``,
which retrains their best architectures; a study already holding ``--trials`` finished trials is
not searched again.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
from pathlib import Path

import optuna
import yaml
from workers_throughput import load, machine, revision  # benchmarks/ is on sys.path when a script in it runs

REPO = Path(__file__).resolve().parent.parent
SPACES = {"digits": REPO / "search_spaces" / "vision.yaml", "mnist1d": REPO / "search_spaces" / "sequence.yaml"}


def space_file(work: Path, task: str, trials: int, epochs: int | None = None) -> Path:
    """The shipped space of ``task`` with random sampling, no pruning, ``trials`` trials and no time limit
    (``epochs``: a smoke test's shorter training; None: the space's)."""
    doc = yaml.safe_load(SPACES[task].read_text(encoding="utf-8"))
    doc["name"] = f"analysis-{task}"
    doc["search"].update(sampler="random", pruner="none", trials=trials, timeout=None)
    if epochs is not None:
        doc["training"]["epochs"] = epochs
    doc["search"].pop("sampler_options", None)
    path = work / f"{task}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def study_of(work: Path, task: str) -> tuple[str, str]:
    """``(storage URL, study name)`` of ``task``'s analysis study."""
    return f"sqlite:///{(work / f'{task}.db').resolve()}", f"analysis-{task}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(SPACES), default=["digits", "mnist1d"])
    parser.add_argument("--trials", type=int, default=45)
    parser.add_argument("--work", type=Path, default=Path("runs/representation_analysis"))
    parser.add_argument("--epochs", type=int, default=None, help="override the spaces' epochs (smoke tests only)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"# {datetime.date.today()}, {machine()}, code {revision()}, load {load()}", flush=True)
    for task in args.tasks:
        space = space_file(args.work, task, args.trials, args.epochs)
        storage, name = study_of(args.work, task)
        subprocess.run([sys.executable, "-m", "iasf_search", "--space", str(space), "--storage", storage, "--no-artifacts", "-q"],
                       check=True, stdout=subprocess.DEVNULL)
        study = optuna.load_study(study_name=name, storage=storage)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        print(f"\n## {task} ({SPACES[task].name}): {len(complete)} complete trials of {len(study.trials)}\n", flush=True)
        out = args.work / f"{task}-analysis"
        subprocess.run([sys.executable, "-m", "iasf_search", "analyze", "--storage", storage, "--study", name, "--out", str(out)],
                       check=True)
        print((out / "correlations.md").read_text(encoding="utf-8"), flush=True)


if __name__ == "__main__":
    main()
