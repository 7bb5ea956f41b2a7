"""Benchmark: seed 000's convergence and compute claims, measured (issue #15).

Seed 000 claims 3.7x faster convergence and 42% less compute than standard attention, and ties its
claims to a "topological level" 0-3 (in ``IASF``: the attention pattern full, local, dilated, top-k).
Per task, the architecture the engine found (the best by validation accuracy of the study that
``benchmarks/representation_analysis.py`` ran on it) is trained beside:

* ``transformer`` (level 0): a standard pre-norm transformer encoder built by the engine: learned
  positions, ``blocks`` x (full attention, MLP of expansion 4), mean readout, at the parameter count of
  the found architecture within 10% (the blocks, preferring 2, and width that come closest), on the
  found architecture's stem (patch, overlap);
* ``level 1``, ``level 2``, ``level 3``: the same transformer with ``IASF``'s pattern of that level in
  every attention node (local window 5, dilated window 5 x 2, top-8 keys per query);
* ``found``: the found architecture itself.

Every model trains with the found trial's training settings (``train_config``: optimiser, learning
rate, schedule, epochs, batch), from ``--seeds`` (weights and batch order), on the study's own data.
Reported per model, median over seeds with min-max: final validation and test accuracy; the optimiser
steps it took to reach the transformer's final validation accuracy of the same seed, at epoch
granularity (the convergence ratio is the transformer's steps to its own final accuracy over those;
"not reached" when it never did); parameters; forward FLOPs per sample (the ``flops`` cost model) and
median latency of a 32-sample batch (``latency_ms``), each against the transformer's.

    python benchmarks/claims.py [--tasks digits mnist1d] [--seeds 0 1 2] [--work runs/representation_analysis]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import optuna
import torch
from representation_analysis import SPACES, space_file, study_of
from workers_throughput import load, machine, revision  # benchmarks/ is on sys.path when a script in it runs

from iasf_search.build import build_model, count_parameters
from iasf_search.graph import INPUT, OUTPUT, node_name
from iasf_search.iasf_module import DEFAULT_EXPANSION, LEVEL_PATTERNS, level_attention
from iasf_search.results.access import trial_architecture
from iasf_search.results.records import TRAIN_CONFIG, record
from iasf_search.search.setup import load_task
from iasf_search.session import open_session
from iasf_search.train import evaluate, steps_per_epoch, train

SEED_CLAIMS = {"convergence": 3.7, "compute_saving": 0.42}
"""Seed 000's figures, quoted for comparison only."""
HEADS = 4


def transformer(stem: dict[str, Any], modality: str, width: int, blocks: int, level: int) -> nx.DiGraph:
    """input -> (attention, mlp) x blocks -> output, pre-norm residual (the engine's nodes), learned positions."""
    graph = nx.DiGraph(width=width)
    graph.add_node(INPUT, role="input", op=modality, config={**stem, "position": "learned"})
    previous = INPUT
    for i in range(2 * blocks):
        op, config = ("attention", level_attention(level, HEADS)) if i % 2 == 0 else ("mlp", {"expansion": DEFAULT_EXPANSION})
        graph.add_node(node_name(i), role="node", op=op, config=config)
        graph.add_edge(previous, node_name(i), slot=0)
        previous = node_name(i)
    graph.add_node(OUTPUT, role="output")
    graph.add_edge(previous, OUTPUT, slot=0)
    return graph


def matched_transformer(target: int, params_of: Callable[[nx.DiGraph], int], stem: dict[str, Any],
                        modality: str) -> tuple[int, int]:
    """``(blocks, width)`` whose transformer has the parameter count closest to ``target``: the first of 2, 1, 3, 4
    blocks that comes within 10% (its closest width, a multiple of the heads), else the closest of all."""
    best: tuple[float, int, int] | None = None
    for blocks in (2, 1, 3, 4):
        low, high = 1, 128  # width = HEADS * k, k in [low, high]; parameters grow with the width
        while low < high:
            mid = (low + high) // 2
            if params_of(transformer(stem, modality, HEADS * mid, blocks, 0)) < target:
                low = mid + 1
            else:
                high = mid
        for k in {max(1, low - 1), low}:
            gap = abs(params_of(transformer(stem, modality, HEADS * k, blocks, 0)) - target) / target
            if best is None or gap < best[0]:
                best = (gap, blocks, HEADS * k)
        if best[0] <= 0.10:
            break
    assert best is not None
    return best[1], best[2]


def run_model(graph: nx.DiGraph, session, data, config: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train ``graph`` from ``seed``; its validation accuracy per epoch, final test accuracy and costs."""
    components = session.components
    torch.manual_seed(seed)
    model = build_model(graph, components, data.sample_shape, data.num_classes)
    curve: list[float] = []
    result = train(model, data, config, device=torch.device("cpu"), seed=seed, report=lambda e, acc, loss: curve.append(acc))
    model.eval()
    example = data.x_val[:32]
    flops = components.cost_models.get("flops").measure(model, example, torch.device("cpu"), {})
    latency = components.cost_models.get("latency_ms").measure(model, example, torch.device("cpu"),
                                                                {"batch_size": 32, "warmup": 5, "repeats": 20})
    return {"curve": curve, "val": result.val_accuracy, "test": evaluate(model, data.x_test, data.y_test, torch.device("cpu"))[0],
            "params": count_parameters(model), "flops": float(flops), "latency_ms": float(latency.value),
            "steps_per_epoch": steps_per_epoch(len(data.x_train), config)[1], "seconds": result.seconds}


def steps_to(run: dict[str, Any], target: float) -> int | None:
    """Optimiser steps until the validation accuracy first reached ``target`` (epoch granularity), None if never."""
    epoch = next((i + 1 for i, acc in enumerate(run["curve"]) if acc >= target), None)
    return None if epoch is None else epoch * run["steps_per_epoch"]


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def task_table(task: str, runs: dict[str, list[dict[str, Any]]], summary: str, config: dict[str, Any]) -> str:
    base = runs["transformer (level 0)"]
    lines = [f"### {task}: found `{summary}`; training {config['epochs']} epochs, batch {config['batch_size']}, "
             f"lr {config['lr']:.3g}, {config['optimizer']}, {config['schedule']}", "",
             "| model | params | FLOPs/sample | vs transformer | latency ms (32) | vs transformer | val acc | test acc "
             "| steps to the transformer's final val acc | convergence ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, seeds in runs.items():
        ratios, steps = [], []
        for run, ref in zip(seeds, base, strict=True):
            own = steps_to(ref, ref["val"])
            reached = steps_to(run, ref["val"])
            steps.append(reached)
            ratios.append(None if reached is None else own / reached)
        done = [r for r in ratios if r is not None]
        reached_steps = [s for s in steps if s is not None]
        flops = statistics.median(r["flops"] for r in seeds) / statistics.median(r["flops"] for r in base)
        latency = statistics.median(r["latency_ms"] for r in seeds) / statistics.median(r["latency_ms"] for r in base)
        lines.append(
            f"| {name} | {statistics.median(r['params'] for r in seeds):,.0f} | {statistics.median(r['flops'] for r in seeds):,.0f} "
            f"| {flops:.2f}x | {spread([r['latency_ms'] for r in seeds], '{:.2f}')} | {latency:.2f}x "
            f"| {spread([r['val'] for r in seeds])} | {spread([r['test'] for r in seeds])} "
            f"| {spread([float(s) for s in reached_steps], '{:.0f}') if reached_steps else '-'} "
            f"({len(reached_steps)}/{len(seeds)} reached) "
            f"| {spread(done, '{:.2f}') + 'x' if done else 'not reached'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(SPACES), default=["digits", "mnist1d"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("runs/representation_analysis"))
    args = parser.parse_args()
    print(f"# {datetime.date.today()}, {machine()}, code {revision()}, load {load()}; seeds {args.seeds}", flush=True)
    print(f"# seed 000 claims {SEED_CLAIMS['convergence']}x faster convergence and {SEED_CLAIMS['compute_saving']:.0%} "
          "less compute than standard attention (quoted, not measured)\n", flush=True)
    for task in args.tasks:
        run_task(task, args.work, args.seeds)


def run_task(task: str, work: Path, seeds: list[int]) -> None:
    """Train the found architecture, the matched transformer and its levels on ``task``; print the table."""
    storage, name = study_of(work, task)
    study = optuna.load_study(study_name=name, storage=storage)
    best = study.best_trial
    space = work / f"{task}.yaml"
    if not space.exists():
        space = space_file(work, task, len(study.trials))
    session = open_session(space)
    data = load_task(session)
    found = trial_architecture(best)
    config = {k: v for k, v in record(best, TRAIN_CONFIG).items() if k != "auxiliary"}
    stem = {k: v for k, v in found.nodes[INPUT]["config"].items() if k != "position"}
    modality = found.nodes[INPUT]["op"]

    def params_of(graph: nx.DiGraph) -> int:
        return count_parameters(build_model(graph, session.components, data.sample_shape, data.num_classes))

    target = params_of(found)
    blocks, width = matched_transformer(target, params_of, stem, modality)
    models = {"transformer (level 0)": transformer(stem, modality, width, blocks, 0),
              **{f"level {lv} ({LEVEL_PATTERNS[lv]})": transformer(stem, modality, width, blocks, lv) for lv in (1, 2, 3)},
              f"found (trial #{best.number})": found}
    print(f"{task}: found trial #{best.number} ({target:,} parameters); transformer: {blocks} blocks of width {width} "
          f"({params_of(models['transformer (level 0)']):,} parameters)", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {}
    for label, graph in models.items():
        for seed in seeds:
            run = run_model(graph, session, data, config, seed)
            runs.setdefault(label, []).append(run)
            print(f"  {label} seed {seed}: val {run['val']:.4f} test {run['test']:.4f} in {run['seconds']:.1f} s", flush=True)
    print("\n" + task_table(task, runs, best.user_attrs.get("summary", ""), config) + "\n", flush=True)

if __name__ == "__main__":
    main()
