"""Benchmark: how many optimiser steps a small training split needs (the default of ``training.min_steps``).

A fixed small architecture (overlapping sequence stem, conv5, mlp2; width 32) trained with the
engine's own ``train`` on the generated ``timeseries_shapes`` task, its training split cut to N
series (validation and test stay whole), 10 epochs at batch 128 as ``timeseries.yaml`` trains, with
``min_steps`` swept; test accuracy over 3 seeds.

    python benchmarks/min_steps.py [--sizes 50 200] [--min-steps 0 50 100 200 400 800] [--seeds 0 1 2]

Prints one Markdown table row per (N, min_steps). Accuracy is the figure under test, not time.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import networkx as nx
import torch

from iasf_search.build import build_model
from iasf_search.components import SplitSpec, TaskData
from iasf_search.graph import INPUT, OUTPUT
from iasf_search.plugin_manager import load_components
from iasf_search.settings import TRAINING_PARAMS
from iasf_search.train import evaluate, train

CPU = torch.device("cpu")


def architecture() -> nx.DiGraph:
    """input -> conv5 -> mlp2 -> output, width 32."""
    graph = nx.DiGraph(width=32)
    graph.add_node(INPUT, role="input", op="sequence", config={"patch": 1, "overlap": True, "position": "learned"})
    graph.add_node("n0", role="node", op="conv", config={"kernel": 5, "dilation": 1})
    graph.add_node("n1", role="node", op="mlp", config={"expansion": 2})
    graph.add_node(OUTPUT, role="output")
    for slot_edges in ((INPUT, "n0"), ("n0", "n1"), ("n1", OUTPUT)):
        graph.add_edge(*slot_edges, slot=0)
    return graph


def cut(data: TaskData, n: int) -> TaskData:
    """``data`` with its training split cut to the first ``n`` samples."""
    return TaskData(data.x_train[:n], data.y_train[:n], data.x_val, data.y_val, data.x_test, data.y_test,
                    num_classes=data.num_classes, modality=data.modality, info=data.info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--min-steps", type=int, nargs="+", default=[0, 50, 100, 200, 400, 800])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    components = load_components(autoload=False)
    full = components.datasets.get("timeseries_shapes").load(
        {"samples": 3000, "length": 64, "noise": 0.4, "seed": 0, "normalize": True}, SplitSpec())
    config = {**{k: p.default for k, p in TRAINING_PARAMS.items()}, "epochs": 10, "batch_size": 128}
    print(f"{datetime.date.today()}, {platform.node()}, torch {torch.__version__}, 1 thread")
    print("| training series | min_steps | steps taken | test accuracy, median (min-max) of seeds | seconds per run |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        data = cut(full, n)
        for min_steps in args.min_steps:
            accuracies, seconds, steps = [], [], 0
            for seed in args.seeds:
                torch.manual_seed(seed)
                model = build_model(architecture(), components, data.sample_shape, data.num_classes)
                start = time.perf_counter()
                result = train(model, data, {**config, "min_steps": min_steps}, device=CPU, seed=seed)
                seconds.append(time.perf_counter() - start)
                accuracies.append(evaluate(model, data.x_test, data.y_test, CPU)[0])
                steps = result.steps
            print(f"| {n} | {min_steps} | {steps} | {statistics.median(accuracies):.3f} ({min(accuracies):.3f}-"
                  f"{max(accuracies):.3f}) | {statistics.median(seconds):.1f} |", flush=True)


if __name__ == "__main__":
    main()
