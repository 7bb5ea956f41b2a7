"""Benchmark: does ``training.compile: true`` (``torch.compile``) pay for a trial? Whole trials, eager against compiled.

For architectures of ``benchmarks/throughput.py`` (default: vision-a and sequence-a), one whole trial
as its shipped space trains it (the space's epochs and batch, ``min_steps`` as shipped, validation
every epoch) through :func:`iasf_search.train.train`, from the same initial weights:

* eager (``compile: false``, the default);
* compiled, first in the process (what every worker's first trial pays: Inductor's set-up and code
  generation, with its on-disk cache cleared first);
* compiled again on a fresh model of the same architecture (a later trial: the compiled code may be
  reused from the cache; an architecture the process has not compiled pays like the first).

    python benchmarks/compile_speed.py [--architectures vision-a sequence-a] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import torch
from throughput import ARCHITECTURES, training_config
from workers_throughput import machine, revision

import iasf_search
from iasf_search.search.setup import load_task
from iasf_search.train import resolve_device, steps_per_epoch, train


def timed_trial(arch, session, data, config, device, compile_: bool) -> tuple[float, float]:
    """Seconds of one whole trial, and its final validation accuracy."""
    torch.manual_seed(0)
    model = iasf_search.build_model(arch.graph(session.space.modality), session.components, data.sample_shape,
                                    data.num_classes)
    start = time.perf_counter()
    result = train(model, data, {**config, "compile": compile_}, device=device, seed=0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result.val_accuracy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=["vision-a", "sequence-a"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache = tempfile.mkdtemp(prefix="inductor-")  # a cold cache
    print(f"machine: {machine()}; device {device}, {args.threads} thread(s); code {revision()}\n")
    print("| architecture | epochs x steps | eager s | compiled, first s | compiled, again s | first / eager | again / eager "
          "| val accuracy eager / compiled |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for arch in (a for a in ARCHITECTURES if a.name in args.architectures):
            session = iasf_search.open_session(f"search_spaces/{arch.space}.yaml")
            data = load_task(session).to(device)
            space_config = training_config(session.space, 1, quick=False)
            config = {**space_config, "epochs": int(session.space.training["epochs"].values()[0]),
                      "min_steps": session.space.training["min_steps"].values()[0]}
            eager, eager_acc = timed_trial(arch, session, data, config, device, False)
            first, compiled_acc = timed_trial(arch, session, data, config, device, True)
            again, _ = timed_trial(arch, session, data, config, device, True)
            steps = steps_per_epoch(len(data.x_train), config)[1]
            print(f"| {arch.name} | {config['epochs']} x {steps} | {eager:.1f} | {first:.1f} | {again:.1f} | "
                  f"{first / eager:.2f} | {again / eager:.2f} | {eager_acc:.4f} / {compiled_acc:.4f} |", flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
