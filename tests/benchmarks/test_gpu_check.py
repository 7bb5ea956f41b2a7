"""``benchmarks/gpu_check.sh --cpu``: every step of the GPU check runs on the CPU at smoke-test size, so
the script and the benchmarks it calls cannot rot between the sessions that have a GPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("gpu_tests", "throughput", "latency_predictor", "trials_per_gpu", "flops_anchor")


def test_the_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "check"
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"})
    results = (out / "results.md").read_text() if (out / "results.md").exists() else ""
    assert run.returncode == 0, run.stderr[-3000:] + results[-3000:]
    for step in STEPS:
        assert re.search(rf"^## {step} \(\d+ s, exit 0\)$", results, re.MULTILINE), step
        assert (out / f"{step}.txt").is_file()
    anchor = json.loads((out / "flops_anchor.json").read_text())
    assert anchor["flops_per_step"] > 0 and anchor["samples_per_s"] > 0 and 0 < anchor["share_of_peak"] < 1.5
    fill = json.loads((out / "trials_per_gpu.json").read_text())
    assert [row["arm"] for row in fill["vision"]] == ["1x2"] and fill["vision"][0]["per_min_busy"] > 0
    latency = json.loads((out / "latency_predictor.json").read_text())
    assert len(latency["rows"]) == 6
    assert json.loads((out / "throughput.json").read_text())
