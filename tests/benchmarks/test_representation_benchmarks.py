"""The representation benchmarks of issue #15 at smoke-test size, so that the scripts behind the figures in
benchmarks/RESULTS.md cannot rot: the analysis study and its table, the claims table, the metrics' cost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def script(name: str, *args: str, cwd: Path) -> str:
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600, env=ENV)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_the_analysis_study_then_the_claims_table(tmp_path):
    work = tmp_path / "work"
    out = script("representation_analysis.py", "--tasks", "digits", "--trials", "7", "--epochs", "2", "--work", str(work),
                 cwd=tmp_path)
    assert "## digits (vision.yaml): 7 complete trials of 7" in out
    assert "| metric | rho | 95% interval | n |" in out and "| `metric.oversmoothing` |" in out
    assert (work / "digits-analysis" / "correlations.png").stat().st_size > 0
    out = script("claims.py", "--tasks", "digits", "--seeds", "0", "--work", str(work), cwd=tmp_path)
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert [r.split(" | ")[0] for r in rows] == ["| transformer (level 0)", "| level 1 (local)", "| level 2 (dilated)",
                                                  "| level 3 (topk)", rows[-1].split(" | ")[0]]
    assert rows[-1].startswith("| found (trial #")
    assert "| 1.00x |" in rows[0]  # the transformer against itself


def test_the_metrics_cost_of_a_short_search(tmp_path):
    out = script("metrics_cost.py", "--trials", "3", "--repeats", "1", "--work", str(tmp_path / "cost"), cwd=tmp_path)
    assert "share of the search's trial time: " in out and "| capture (forward pass, attention maps) |" in out
    assert "| oversmoothing |" in out and "| all |" in out
