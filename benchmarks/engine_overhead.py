"""Benchmark: the engine's own time per trial -- everything that is not training -- on the default vision search.

Runs ``search_spaces/vision.yaml`` as shipped (TPE, median pruner, its trial count and timeout) through
the Python API on a fresh SQLite study with the default trial files (notes, diagram, heat maps, best
checkpoints), and times, exclusively (a timed call inside another is subtracted from the outer one):

* training: :func:`iasf_search.train.train_together`, the optimiser steps and the per-epoch
  validation that any hand-written loop also runs (what the engine cannot avoid);
* the engine's share, per trial: sampling (the Optuna ``suggest`` calls), building the model, cost
  models, per-epoch reports to the pruner (storage writes), test evaluation and auxiliary
  measurements, each plugin hook (trial notes, diagrams, heat maps, checkpoints, progress line), the
  rest of the objective (user-attribute writes), and Optuna between trials (ask, tell, the sampler's
  fit, storage reads and writes, callbacks);
* set-up (data, study, baselines), reported apart: it is paid once per search, not per trial.
  ``torch._dynamo`` is imported before the search starts: the FLOP counter's first use imports it
  (about 1.7 s, once per process), which would otherwise land in the first trial's cost models.

The overhead share is the engine's per-trial time over the search time without set-up.

    python benchmarks/engine_overhead.py [--trials 20] [--profile PATH]

``--profile PATH`` also writes a cProfile of the search (``python -m pstats PATH``) to see inside
the largest item.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import optuna
from workers_throughput import load, machine, revision

import iasf_search
from iasf_search.search import study
from iasf_search.trial import objective
from iasf_search.trial.objective import TrialObjective

ROOT = Path(__file__).resolve().parents[1]


class ExclusiveTimers:
    """Seconds per label, exclusive: time spent in a nested timed call counts for the inner label only."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []  # [label, start, seconds of nested timed calls]

    def enter(self, label: str) -> None:
        self._stack.append([label, time.perf_counter(), 0.0])

    def exit(self) -> None:
        label, start, nested = self._stack.pop()
        elapsed = time.perf_counter() - start
        self.seconds[label] += elapsed - nested
        self.calls[label] += 1
        if self._stack:
            self._stack[-1][2] += elapsed

    def wrap(self, label: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            self.enter(label)
            try:
                return fn(*args, **kwargs)
            finally:
                self.exit()
        return timed


def instrument(timers: ExclusiveTimers, session: iasf_search.Session) -> None:
    """Time the engine's parts by wrapping them where the search looks them up."""
    t = timers
    study.prepare_search = t.wrap("set-up: data, study, baselines", study.prepare_search)
    optuna.Study.optimize = t.wrap("Optuna between trials: ask, tell, sampler, storage, callbacks", optuna.Study.optimize)
    TrialObjective.__call__ = t.wrap("objective: attribute writes, the rest", TrialObjective.__call__)
    objective.sample_trial = t.wrap("sampling: suggest calls", objective.sample_trial)
    objective.build_model = t.wrap("building the model", objective.build_model)
    TrialObjective._measure_and_check = t.wrap("parameters and cost models", TrialObjective._measure_and_check)
    TrialObjective._evaluate = t.wrap("test evaluation, auxiliary measurements, records", TrialObjective._evaluate)
    objective.train_together = t.wrap("training: steps and per-epoch validation", objective.train_together)
    reporter = TrialObjective._reporter
    TrialObjective._reporter = lambda self, *a: t.wrap("per-epoch reports and pruning decisions", reporter(self, *a))
    session.components.pm.add_hookcall_monitoring(lambda name, impls, kwargs: t.enter(f"hook {name}"),
                                                  lambda outcome, name, impls, kwargs: t.exit())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, help="default: the space's search.trials")
    parser.add_argument("--profile", type=Path, help="also write a cProfile of the search here")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; machine: {machine()}; code {revision()}; "
          f"load before {load()}", flush=True)
    start = time.perf_counter()
    import torch._dynamo  # noqa: F401  (what the FLOP counter's first use imports: once per process)
    print(f"importing torch._dynamo (once per process, at the first FLOP count): {time.perf_counter() - start:.1f} s")
    session = iasf_search.open_session(ROOT / "search_spaces" / "vision.yaml")
    timers = ExclusiveTimers()
    instrument(timers, session)
    profiler = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'vision.db'}"
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        result = iasf_search.run_search(session, trials=args.trials, storage=url, device="cpu")
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        wall = time.perf_counter() - start
    trials = result.study.trials
    states = defaultdict(int)
    for t in trials:
        states[t.state.name] += 1
    setup = timers.seconds["set-up: data, study, baselines"]
    training = timers.seconds["training: steps and per-epoch validation"]
    search = wall - setup
    engine = search - training
    print(f"load after {load()}")
    print(f"{len(trials)} trials ({dict(states)}); whole run {wall:.1f} s = set-up {setup:.1f} s + search {search:.1f} s\n")
    print("| part | ms per trial | share of search time |")
    print("|---|---|---|")
    n = len(trials)
    rows = sorted(((label, s) for label, s in timers.seconds.items() if not label.startswith("set-up")),
                  key=lambda item: -item[1])
    accounted = sum(s for _, s in rows)
    for label, s in rows:
        print(f"| {label} | {1000 * s / n:.1f} | {100 * s / search:.2f}% |")
    print(f"| outside the timed calls (the search loop, hooks' study start/end) | {1000 * (search - accounted) / n:.1f} | "
          f"{100 * (search - accounted) / search:.2f}% |")
    print(f"\n**engine overhead: {1000 * engine / n:.0f} ms per trial, {100 * engine / search:.2f}% of search time** "
          f"(training {training:.1f} s of {search:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
