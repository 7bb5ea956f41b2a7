"""Benchmark: what the representation metrics cost a search (issue #15: at most 5% of trial time on the default vision space).

Runs the shipped space as a user does (``iasf-search --space search_spaces/vision.yaml``, its default
metrics on), then reads the study:

* **share of trial time**: the seconds every trained trial spent on its metrics (``metrics_seconds``:
  the forward pass on the fixed validation batch plus every metric) over the wall time of all finished
  trials (start to completion, pruned ones included: the search's trial time), and over that of the
  trials that were measured;
* **per metric**: each complete trial's architecture is rebuilt (same seed, untrained: the cost does
  not depend on the weights) and the capture and every metric are timed separately on the same batch,
  median of ``--repeats``.

    python benchmarks/metrics_cost.py [--space search_spaces/vision.yaml] [--trials 20] [--work runs/metrics_cost]

Target: the share of trial time at most 5%.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
import torch
from workers_throughput import load, machine, revision  # benchmarks/ is on sys.path when a script in it runs

from iasf_search.build import build_model
from iasf_search.results.access import trial_architecture
from iasf_search.search.setup import load_task
from iasf_search.session import open_session
from iasf_search.trial.representations import capture

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.05


def median_seconds(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=REPO / "search_spaces" / "vision.yaml")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("runs/metrics_cost"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    db = args.work / "metrics_cost.db"
    db.unlink(missing_ok=True)
    storage = f"sqlite:///{db}"
    print(f"# {datetime.date.today()}, {machine()}, code {revision()}, load {load()}", flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "iasf_search", "--space", str(args.space), "--storage", storage, "--trials",
                    str(args.trials), "--study", "metrics_cost", "--no-artifacts", "-q"], check=True, stdout=subprocess.DEVNULL)
    search_s = time.perf_counter() - started
    study = optuna.load_study(study_name="metrics_cost", storage=storage)
    finished = [t for t in study.trials if t.state.is_finished() and t.datetime_complete and t.datetime_start]
    wall = {t.number: (t.datetime_complete - t.datetime_start).total_seconds() for t in finished}
    measured = [t for t in finished if "metrics_seconds" in t.user_attrs]
    metric_s = sum(t.user_attrs["metrics_seconds"] for t in measured)
    all_share = metric_s / sum(wall.values())
    measured_share = metric_s / sum(wall[t.number] for t in measured)
    print(f"search of {args.space.name}: {len(finished)} finished trials in {search_s:.0f} s; {len(measured)} trained to the end "
          f"and measured")
    print(f"metrics: {metric_s:.2f} s in all, {metric_s / max(1, len(measured)) * 1000:.0f} ms per measured trial "
          f"(mean trial {statistics.mean(wall[t.number] for t in measured):.2f} s)")
    print(f"share of the search's trial time: {all_share:.2%}; of the measured trials' time: {measured_share:.2%}; "
          f"target <= {TARGET:.0%}: {'met' if all_share <= TARGET else 'missed'}")

    session = open_session(args.space)
    data = load_task(session)
    batch = session.space.metrics_batch
    x, y = data.x_val[:batch], data.y_val[:batch]
    times: dict[str, list[float]] = {"capture (forward pass, attention maps)": []}
    for t in measured:
        torch.manual_seed(0)
        model = build_model(trial_architecture(t), session.components, data.sample_shape, data.num_classes)
        times["capture (forward pass, attention maps)"].append(median_seconds(lambda m=model: capture(m, x, y), args.repeats))
        reps = capture(model, x, y)
        for name, options in session.space.metrics.items():
            metric = session.components.metrics.get(name)
            call = lambda m=metric, r=reps, o=options: (r.cache.clear(), m.measure(r, o))  # noqa: E731 (shared work redone)
            times.setdefault(name, []).append(median_seconds(call, args.repeats))
    print(f"\n| part | mean ms per trial ({len(measured)} architectures, batch {len(x)}, median of {args.repeats}) |\n|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.mean(values) * 1000:.1f} |")
    print(f"| all | {sum(statistics.mean(v) for v in times.values()) * 1000:.1f} |")


if __name__ == "__main__":
    main()
