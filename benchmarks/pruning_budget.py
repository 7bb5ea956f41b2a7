"""Benchmark: epochs a search trains before it reaches the full-budget search's best accuracy, with and without a pruner.

Issue #12, benchmark 4, second half. The full-budget search is a study of the shipped space with every
trial trained to the end (``search.pruner: none``) and architectures drawn at random: the studies
that ``benchmarks/representation_analysis.py`` writes (``WORK/digits.db`` from ``vision.yaml``,
``WORK/mnist1d.db`` from ``sequence.yaml``, 45 trials each, the baselines enqueued first); this script
runs that search first when its study is missing.

Each pruner is then replayed over the study's recorded learning curves (validation accuracy per epoch,
Optuna's intermediate values): the trials are asked, in order, on an in-memory Optuna study that has
the pruner the engine would build (the registered ``PrunerFactory.create``), every epoch is reported,
and the pruner is asked exactly where the engine asks it (``PrunerFactory.may_prune`` with the trials
complete when the trial started; never at the last epoch). A pruned trial has trained the epochs it
reported. Because the random sampler's draws do not depend on results and a trial's training does not
depend on other trials (it is seeded by the search's seed), this is the search the engine would run
with that pruner, without training anything again; ``--check`` runs one pruned search through the CLI
and compares its epochs per trial with the replay's.

Reported per pruner, against no pruning (the issue's target: at least 3x fewer epochs):

* the recorded order: the epochs trained until a complete trial first reaches the full search's best
  validation accuracy (or "not reached": the pruner cut every trial that reached it), the epochs of
  the whole search, and the best accuracy the pruned search keeps;
* ``--orders`` shuffled orders of the same trials (seeded; enqueued baselines stay first), each a
  search the random sampler could have drawn: the share of orders that reach the best, and the
  median (min-max) of "epochs without pruning / epochs with it" to reach it (an order that does not
  reach it counts 0).

    python benchmarks/pruning_budget.py [--tasks digits mnist1d] [--work runs/representation_analysis]
                                        [--orders 200] [--seed 0] [--pruners median:warmup_fraction=0.5 ...]
                                        [--check PRUNER]
"""

from __future__ import annotations

import argparse
import datetime
import math
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.trial import TrialState
from representation_analysis import SPACES, space_file, study_of  # benchmarks/ is on sys.path when a script in it runs
from workers_throughput import load, machine, revision

from iasf_search.components import PrunerFactory
from iasf_search.plugin_manager import load_components

PRUNERS = (
    "median:warmup_fraction=0.1",
    "median:warmup_fraction=0.25",
    "median:warmup_fraction=0.5",
    "successive_halving:min_resource=1",
    "successive_halving:min_resource=2",
    "successive_halving:min_resource=1,reduction_factor=3",
    "hyperband:reduction_factor=3",
)


@dataclass(frozen=True)
class Curve:
    """One trial of the full-budget study: its validation accuracy after each epoch, and whether it was enqueued."""

    number: int
    values: tuple[float, ...]
    enqueued: bool


@dataclass(frozen=True)
class Replay:
    """What a search with one pruner trains over one order of curves."""

    epochs: int                   # trained by the whole search
    epochs_to_target: int | None  # trained until a complete trial first reached the target; None: never
    best: float                   # best final accuracy of its complete trials
    trained: tuple[int, ...]      # epochs each trial trained, in the order given
    pruned: int


def pruner_spec(text: str, registry: Any) -> tuple[str, PrunerFactory, dict[str, Any]]:
    """``name:key=value,...`` into (label, factory, options with the factory's defaults filled in)."""
    name, _, rest = text.partition(":")
    factory = registry.get(name)
    given = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in rest.split(",") if item)}
    unknown = set(given) - set(factory.params)
    if unknown:
        raise SystemExit(f"pruner {name!r} has no option(s) {sorted(unknown)}; it has {sorted(factory.params)}")
    return text, factory, {**{k: p.default for k, p in factory.params.items()}, **given}


def replay(curves: Sequence[Curve], factory: PrunerFactory, options: Mapping[str, Any], *, epochs: int, target: float,
           study_name: str) -> Replay:
    """Run the search over ``curves`` in the order given with ``factory``'s pruner, as the engine asks it."""
    study = optuna.create_study(study_name=study_name, direction="maximize", pruner=factory.create(options, epochs=epochs))
    trained, total, reached, best, pruned = [], 0, None, -math.inf, 0
    for curve in curves:
        trial = study.ask()
        completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        for epoch, value in enumerate(curve.values, start=1):
            trial.report(value, epoch)
            if (epoch < len(curve.values) and factory.may_prune(options, epochs=epochs, epoch=epoch, completed=completed)
                    and trial.should_prune()):
                study.tell(trial, state=TrialState.PRUNED)
                pruned += 1
                break
        else:
            study.tell(trial, curve.values[-1])
            best = max(best, curve.values[-1])
            if reached is None and curve.values[-1] >= target:
                reached = total + epoch
        total += epoch
        trained.append(epoch)
    return Replay(total, reached, best, tuple(trained), pruned)


def curves_of(storage: str, name: str) -> tuple[list[Curve], int]:
    """The complete trials of a study as curves, in trial order, and the space's epochs (the longest curve)."""
    study = optuna.load_study(study_name=name, storage=storage)
    curves = [Curve(t.number, tuple(t.intermediate_values[e] for e in sorted(t.intermediate_values)), "fixed_params" in t.system_attrs)
              for t in study.trials if t.state == TrialState.COMPLETE]
    return curves, max(len(c.values) for c in curves)


def orders(curves: Sequence[Curve], count: int, seed: int) -> list[list[Curve]]:
    """``count`` shuffles of the sampled trials, the enqueued ones first in their own order."""
    rng = np.random.default_rng(seed)
    first = [c for c in curves if c.enqueued]
    rest = [c for c in curves if not c.enqueued]
    return [first + [rest[i] for i in rng.permutation(len(rest))] for _ in range(count)]


def ratio(without: Replay, with_: Replay) -> float:
    """How many times fewer epochs the pruned search needs to reach the target (0: it never does)."""
    if with_.epochs_to_target is None or without.epochs_to_target is None:
        return 0.0
    return without.epochs_to_target / with_.epochs_to_target


def table(task: str, curves: list[Curve], epochs: int, specs: list[tuple[str, PrunerFactory, dict[str, Any]]], none: PrunerFactory,
          count: int, seed: int, study_name: str) -> str:
    target = max(c.values[-1] for c in curves)
    shuffled = orders(curves, count, seed)

    def run(order: Sequence[Curve], factory: PrunerFactory, options: Mapping[str, Any]) -> Replay:
        return replay(order, factory, options, epochs=epochs, target=target, study_name=study_name)

    base = run(curves, none, {})
    base_orders = [run(o, none, {}) for o in shuffled]
    at_best = sum(c.values[-1] >= target for c in curves)
    lines = [f"### {task}: {len(curves)} trials of {epochs} epochs, best validation accuracy {target:.4f} "
             f"({at_best} trial(s)); no pruning reaches it after {base.epochs_to_target} epochs of {base.epochs} (recorded order)",
             "", "| pruner | epochs, whole search | pruned trials | best kept | epochs to the best (recorded order) | fewer epochs "
             f"(recorded order) | orders reaching the best (of {count}) | fewer epochs over orders: median (min-max) |",
             "|---|---|---|---|---|---|---|---|"]
    for label, factory, options in specs:
        mine = run(curves, factory, options)
        ratios = [ratio(b, run(o, factory, options)) for o, b in zip(shuffled, base_orders, strict=True)]
        reached = "not reached" if mine.epochs_to_target is None else str(mine.epochs_to_target)
        lines.append(f"| `{label}` | {mine.epochs} ({mine.epochs / base.epochs:.0%}) | {mine.pruned} | {mine.best:.4f} | {reached} | "
                     f"{ratio(base, mine):.2f}x | {sum(r > 0 for r in ratios)} | "
                     f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")
    return "\n".join(lines)


def check(task: str, work: Path, spec: tuple[str, PrunerFactory, dict[str, Any]], curves: list[Curve], epochs: int) -> str:
    """Run the full-budget space with the pruner through the CLI; compare its epochs per trial with the replay's."""
    label, factory, options = spec
    space = space_file(work, task, len(curves), epochs)
    doc = yaml.safe_load(space.read_text(encoding="utf-8"))
    doc["name"] = f"{doc['name']}-check"
    doc["search"].update(pruner=factory.name, pruner_options={k: options[k] for k in factory.params})
    path = work / f"{task}-check.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    db = work / f"{task}-check.db"
    db.unlink(missing_ok=True)
    storage = f"sqlite:///{db.resolve()}"
    subprocess.run([sys.executable, "-m", "iasf_search", "--space", str(path), "--storage", storage, "--no-artifacts", "-q"],
                   check=True, stdout=subprocess.DEVNULL)
    live = optuna.load_study(study_name=doc["name"], storage=storage)
    trained = [len(t.intermediate_values) for t in live.trials if t.state.is_finished()]
    replayed = replay(curves, factory, options, epochs=epochs, target=math.inf, study_name=doc["name"]).trained
    same = sum(a == b for a, b in zip(trained, replayed, strict=False))
    return (f"check ({task}, `{label}` through the CLI): {same} of {len(replayed)} trials trained the replayed epochs; "
            f"live {sum(trained)} epochs, replay {sum(replayed)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(SPACES), default=["digits", "mnist1d"])
    parser.add_argument("--work", type=Path, default=Path("runs/representation_analysis"))
    parser.add_argument("--trials", type=int, default=45, help="trials of a full-budget search this script has to run")
    parser.add_argument("--orders", type=int, default=200, help="shuffled orders of the trials")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pruners", nargs="+", default=list(PRUNERS), help="name:option=value,... of registered pruners")
    parser.add_argument("--check", default=None, help="a pruner to run once through the CLI and compare with its replay")
    parser.add_argument("--epochs", type=int, default=None, help="the full-budget search's epochs, when it has to run (smoke tests)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    registry = load_components().pruners
    specs = [pruner_spec(p, registry) for p in args.pruners]
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"# {datetime.date.today()}, {machine()}, code {revision()}, load {load()}", flush=True)
    for task in args.tasks:
        storage, name = study_of(args.work, task)
        if not (args.work / f"{task}.db").exists():
            space = space_file(args.work, task, args.trials, args.epochs)
            subprocess.run([sys.executable, "-m", "iasf_search", "--space", str(space), "--storage", storage, "--no-artifacts", "-q"],
                           check=True, stdout=subprocess.DEVNULL)
        curves, epochs = curves_of(storage, name)
        print("\n" + table(task, curves, epochs, specs, registry.get("none"), args.orders, args.seed, name), flush=True)
        if args.check:
            print("\n" + check(task, args.work, pruner_spec(args.check, registry), curves, epochs), flush=True)


if __name__ == "__main__":
    main()
