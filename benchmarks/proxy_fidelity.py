"""Benchmark: how well zero-cost proxies and early epochs rank architectures by trained validation accuracy (#12).

One pass over the same trained architectures measures both:

* Proxies (issue #12, benchmark 3): the Spearman rank correlation of every registered zero-cost proxy
  (``params``, ``synflow``, ``zico``: :mod:`plugins.zero_cost`), scored on the untrained model, with
  the final validation accuracy, per space. Target: the best proxy at least 0.7.
* Early epochs (benchmark 4, the measurement): for each epoch ``e``, the Spearman correlation of the
  validation accuracy after epoch ``e`` with the final one, and the share of the final top 10% that a
  successive-halving rung at ``e`` would keep with reduction factor 3 (the top third at ``e``) and 2
  (the top half), from which the pruner's defaults (rung placement, reduction factor) are set.

For each space (default ``search_spaces/vision.yaml`` and ``sequence.yaml``, unchanged), ``--count``
distinct architectures (by canonical graph hash; a repeat draw is skipped) are sampled by Optuna's
``RandomSampler(seed=--seed)`` on an in-memory study, through the engine's own
:func:`~iasf_search.sampling.sample_trial`, so the training settings (learning rate, ...) are sampled
as a search samples them. Each is then handled as a search trial is (:class:`~iasf_search.trial.objective.TrialObjective`):
``torch.manual_seed(seed)``, the model built, every proxy scored on the untrained model
(:func:`~iasf_search.search.prescreen.measure_proxy`, on the search's batch :func:`~iasf_search.search.prescreen.proxy_batch`),
the auxiliary helpers attached, and trained by :func:`~iasf_search.train.train` for the sampled epochs
(no pruner, no ``search.max_trial_seconds``), the validation accuracy recorded after every epoch, the
test accuracy after the last. A model that cannot be built or diverges is recorded with its error,
left out of the analysis, and another architecture is drawn in its place (so each space gets
``--count`` trained ones). Spearman's rho is :func:`scipy.stats.spearmanr`; its 95% interval is the
percentile bootstrap over architectures (1000 resamples, seeded). Ties (validation accuracies are
discrete) are broken at random in expectation: a tied block straddling a cut counts each of its
members as kept with the share of the block's places that remain.

    python benchmarks/proxy_fidelity.py [--spaces vision sequence] [--count 60] [--seed 0] [--threads 2]
                                        [--device cpu] [--epochs E] [--results FILE] [--analyze-only]

Each trained architecture is appended to ``--results`` (JSON lines: space, seed, index, arch hash,
summary, training settings, params, proxies and their seconds, per-epoch validation accuracies,
test accuracy, seconds; rows already there are skipped, so an interrupted run resumes) and the
Markdown tables are printed at the end; ``--analyze-only`` prints them from the file without
training. ``--epochs`` overrides the sampled epochs (smoke tests only: the analysis is then of
shorter training, and ``training.min_steps`` makes a cut epoch longer); rows are kept apart by it.

Run time on a 2-core CPU. A full run trains 570 optimiser steps per vision architecture (30 epochs
of 19 batches of 64) and 540 per sequence one (20 epochs of 27 batches of 128), plus a validation pass
per epoch; proxies take under a second. The smoke runs here shared the machine with another benchmark
(load average 3-6 on 2 cores, run under ``nice -n 19``): ``--count 4 --epochs 2`` (100 steps per epoch:
``training.min_steps`` 200 spread over 2 epochs) took 6 minutes, 0.17 s per vision step and 0.26 s
per sequence step of wall time with 2 threads; with 1 thread (``--count 3 --epochs 1``) a step took
15-40 ms (vision) and 14-70 ms (sequence) of CPU time. So a vision architecture takes about 15 s
and a sequence one about 20 s on a quiet machine (from the CPU time), the default run (60 + 60
architectures) about 35-45 minutes, some 3 architectures per minute; under load like the smoke
runs' (from their wall time, 100 s and 140 s per architecture) about 4 hours. It resumes, so it can
be stopped and continued.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from scipy.stats import rankdata, spearmanr

from iasf_search import graph as arch
from iasf_search.build import build_model, count_parameters
from iasf_search.sampling import describe_graph, sample_trial
from iasf_search.search.prescreen import measure_proxy, proxy_batch
from iasf_search.search.setup import load_task
from iasf_search.session import Session, open_session
from iasf_search.train import Diverged, attach_aux, evaluate, resolve_device, train

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.7
"""Issue #12's target for the best proxy's rank correlation."""
BOOTSTRAP = 1000
"""Bootstrap resamples for each interval."""
TOP = 0.1
"""The final top share whose survival a rung is judged by."""
KEEP = {"1/3": 1 / 3, "1/2": 1 / 2}
"""What a successive-halving rung keeps with reduction factor 3 and 2."""
MAX_DRAWS = 20
"""Draws per wanted architecture before a space is declared too small for ``--count`` distinct ones."""


def space_path(name: str) -> Path:
    """A shipped space's name (``vision``) or a path to a space file."""
    return Path(name) if name.endswith((".yaml", ".yml")) else REPO / "search_spaces" / f"{name}.yaml"


def row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["space"], row["seed"], row["epochs_override"], row["index"]


def architectures(session: Session, seed: int, count: int, done: dict[tuple[Any, ...], dict[str, Any]],
                  key: tuple[Any, ...]):
    """Yield ``(index, trial, graph, train_config, aux_config)`` for every distinct architecture that the
    seeded random sampler draws, in order, until ``count`` of them trained without error (``done`` rows
    counted; the draws are the same on every run, so a resumed run goes on where it stopped)."""
    space, components = session.space, session.components
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=seed))
    finally:
        optuna.logging.set_verbosity(verbosity)
    seen: set[str] = set()
    index = trained = 0
    for _ in range(MAX_DRAWS * count):
        if trained >= count:
            return
        trial = study.ask()
        graph, train_config, aux_config = sample_trial(trial, space, components)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # nothing is told back: a random sampler needs nothing
        arch_hash = arch.canonical_hash(graph)
        if arch_hash in seen:
            continue
        seen.add(arch_hash)
        row = done.get((*key, index))
        if row is None:
            row = yield index, graph, train_config, aux_config
        trained += "error" not in row
        index += 1
    raise SystemExit(f"{space.name}: only {trained} distinct architectures trained in {MAX_DRAWS * count} draws")


def measure(session: Session, data, device: torch.device, seed: int, batch, graph, train_config: dict[str, Any],
            aux_config: dict[str, Any]) -> dict[str, Any]:
    """One architecture as a search trial handles it: proxies on the untrained model, then trained with
    the validation accuracy recorded after every epoch."""
    components = session.components
    start, cpu = time.perf_counter(), time.process_time()
    row: dict[str, Any] = {"arch_hash": arch.canonical_hash(graph), "summary": describe_graph(graph, components),
                           "train_config": {k: v for k, v in train_config.items() if k != "auxiliary"}}
    torch.manual_seed(seed)  # the initial weights of a search's trial (TrialObjective._run)
    model = build_model(graph, components, data.sample_shape, data.num_classes).to(device)
    row["params"] = count_parameters(model)
    proxies, proxy_seconds = {}, {}
    for name in components.proxies.names():
        t = time.perf_counter()
        proxies[name] = measure_proxy(components.proxies.get(name), model, batch, device)
        proxy_seconds[name] = round(time.perf_counter() - t, 4)
    row.update(proxies=proxies, proxy_seconds=proxy_seconds)
    aux = attach_aux(model, aux_config, components, data.x_train[:2], device)
    val: list[float] = []
    try:
        result = train(model, data, train_config, device=device, seed=seed, aux=aux,
                       report=lambda epoch, val_acc, val_loss: val.append(val_acc))
    except Diverged as exc:
        row["error"] = f"diverged: {exc}"
    else:
        row["train_seconds"] = round(result.seconds, 2)
        row["test_accuracy"] = evaluate(model, data.x_test, data.y_test, device)[0]
    row.update(val_accuracy=val, seconds=round(time.perf_counter() - start, 2),
               cpu_seconds=round(time.process_time() - cpu, 2))
    return row


def run_space(name: str, args: argparse.Namespace, device: torch.device, done: dict[tuple[Any, ...], dict[str, Any]],
              results: Path) -> None:
    """Train the space's missing architectures, appending each row to ``results``."""
    session = open_session(space_path(name))
    if session.space.split.folds:
        raise SystemExit(f"{name}: cross-validated spaces are not supported (hold-out validation only)")
    data = load_task(session).to(device)
    batch = proxy_batch(data, args.seed)  # the search's proxy batch (TrialObjective.proxy_batch)
    key = (name, args.seed, args.epochs)
    draws = architectures(session, args.seed, args.count, done, key)
    try:
        item = next(draws)
        while True:
            index, graph, train_config, aux_config = item
            if args.epochs is not None:
                train_config = {**train_config, "epochs": args.epochs}
            try:
                row = measure(session, data, device, args.seed, batch, graph, train_config, aux_config)
            except Exception as exc:  # a model that cannot be built or scored: recorded, another one drawn
                row = {"arch_hash": arch.canonical_hash(graph), "error": f"{type(exc).__name__}: {exc}"[:500]}
            row = {"space": name, "seed": args.seed, "epochs_override": args.epochs, "index": index, **row}
            done[row_key(row)] = row
            with open(results, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: row.get(k) for k in ("space", "index", "summary", "params", "proxies", "val_accuracy",
                                                      "test_accuracy", "seconds", "cpu_seconds", "error") if k in row}), flush=True)
            item = draws.send(row)
    except StopIteration:
        pass


def spearman_ci(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, float, float]:
    """Spearman's rho of ``x`` and ``y`` and its 95% percentile-bootstrap interval (NaN pairs dropped)."""
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3:
        return math.nan, math.nan, math.nan
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(x), size=(BOOTSTRAP, len(x)))
    rx, ry = rankdata(x[index], axis=1), rankdata(y[index], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rhos = (rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    low, high = np.nanpercentile(rhos, [2.5, 97.5])
    return rho, float(low), float(high)


def top_membership(values: np.ndarray, k: int) -> np.ndarray:
    """Each item's chance of being among the ``k`` highest ``values`` when ties are broken at random."""
    chance = np.zeros(len(values))
    left = k
    for value in sorted(set(values.tolist()), reverse=True):
        if left <= 0:
            break
        tied = values == value
        chance[tied] = min(1.0, left / tied.sum())
        left -= tied.sum()
    return chance


def kept_share(early: np.ndarray, final: np.ndarray, keep: float) -> float:
    """Expected share of the final top :data:`TOP` among the top ``keep`` at an early epoch."""
    n = len(final)
    top = max(1, math.ceil(TOP * n))
    return float((top_membership(early, math.ceil(keep * n)) * top_membership(final, top)).sum() / top)


def fmt(rho: float, low: float, high: float) -> str:
    return "-" if math.isnan(rho) else f"{rho:.2f} [{low:.2f}, {high:.2f}]"


def tables(rows: list[dict[str, Any]], spaces: list[str], seed: int) -> str:
    """The proxies table (with the target's verdict per space) and the early-epochs table."""
    ok = {s: [r for r in rows if r["space"] == s and "error" not in r] for s in spaces}
    failed = {s: sum(r["space"] == s and "error" in r for r in rows) for s in spaces}
    proxies = list(dict.fromkeys(p for s in spaces for r in ok[s] for p in r["proxies"]))
    lines = [f"Proxies: Spearman rho with the final validation accuracy [95% bootstrap interval] (target: best >= {TARGET})",
             "", "| proxy | " + " | ".join(f"{s} (n={len(ok[s])})" for s in spaces) + " |",
             "|---|" + "---|" * len(spaces)]
    rhos: dict[str, dict[str, float]] = {s: {} for s in spaces}
    for p in proxies:
        cells = []
        for s in spaces:
            final = np.array([r["val_accuracy"][-1] for r in ok[s]], dtype=float)
            score = np.array([r["proxies"].get(p, math.nan) for r in ok[s]], dtype=float)
            rho, low, high = spearman_ci(score, final, seed)
            rhos[s][p] = rho
            cells.append(fmt(rho, low, high))
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines.append("")
    for s in spaces:
        scored = {p: v for p, v in rhos[s].items() if not math.isnan(v)}
        if not scored:
            lines.append(f"* {s}: fewer than 3 trained architectures")
            continue
        best = max(scored, key=scored.__getitem__)
        verdict = "met" if scored[best] >= TARGET else "not met"
        versus = "" if best == "params" or "params" not in scored else f"; params {scored['params']:.2f}"
        lines.append(f"* {s}: best proxy {best} ({scored[best]:.2f}): target {verdict}{versus}; "
                     f"{failed[s]} architecture(s) left out (not built or diverged)")
    width = max((len(r["val_accuracy"]) for s in spaces for r in ok[s]), default=0)
    lines += ["", f"Early epochs: Spearman rho of epoch e's validation accuracy with the final one [95% interval]; share of "
              f"the final top {TOP:.0%} kept by the top " + " and ".join(KEEP) + " at epoch e", "",
              "| epoch | " + " | ".join(f"{s} rho | {s} top kept at " + f" | {s} top kept at ".join(KEEP) for s in spaces) + " |",
              "|---|" + "---|" * (len(spaces) * (1 + len(KEEP)))]
    for e in range(1, width + 1):
        cells = []
        for s in spaces:
            group = [r for r in ok[s] if len(r["val_accuracy"]) >= e]
            if len(group) < 3:
                cells += ["-"] * (1 + len(KEEP))
                continue
            early = np.array([r["val_accuracy"][e - 1] for r in group])
            final = np.array([r["val_accuracy"][-1] for r in group])
            cells.append(fmt(*spearman_ci(early, final, seed)))
            cells += [f"{kept_share(early, final, keep):.2f}" for keep in KEEP.values()]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["vision", "sequence"], help="shipped space names or space files")
    parser.add_argument("--count", type=int, default=60, help="trained architectures per space")
    parser.add_argument("--seed", type=int, default=0, help="sampler, initial weights, batch order, proxy batch, bootstrap")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--epochs", type=int, default=None, help="override the sampled epochs (smoke tests)")
    parser.add_argument("--results", type=Path, default=Path("runs/proxy_fidelity.jsonl"))
    parser.add_argument("--analyze-only", action="store_true", help="print the tables from --results, train nothing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows = [json.loads(line) for line in args.results.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if args.results.exists() else []
    done = {row_key(r): r for r in rows}
    where = (f"analysis of {args.results} ({len(rows)} rows)" if args.analyze_only else
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {device}, {args.threads} threads, "
             f"torch {torch.__version__}")
    print(f"# {datetime.date.today()}, {where}; seed {args.seed}"
          + (f"; epochs cut to {args.epochs}" if args.epochs is not None else ""), flush=True)
    if not args.analyze_only:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        for name in args.spaces:
            run_space(name, args, device, done, args.results)
    chosen = []
    for name in args.spaces:  # the first --count trained ones of each space, as drawn
        mine = sorted((r for r in done.values() if (r["space"], r["seed"], r["epochs_override"]) == (name, args.seed, args.epochs)),
                      key=lambda r: r["index"])
        trained = 0
        for r in mine:
            if trained >= args.count:
                break
            chosen.append(r)
            trained += "error" not in r
    print(tables(chosen, args.spaces, args.seed))


if __name__ == "__main__":
    main()
