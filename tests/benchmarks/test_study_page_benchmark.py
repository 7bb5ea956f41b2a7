"""``benchmarks/study_page_refresh.py`` at smoke-test size: it builds a study of sampled architectures, writes its
page twice and appends one summary line with every figure the RESULTS table quotes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_refresh_benchmark_measures_a_small_study(tmp_path):
    results = tmp_path / "page.jsonl"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "study_page_refresh.py"), "--trials", "30", "--repeats", "1",
                          "--results", str(results)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(results.read_text().splitlines()[-1])
    assert summary["trials"] == 30 and len(summary["runs"]) == 1
    row = summary["runs"][0]
    assert row["trials"] == 40  # 30, then 10 more before the refresh
    assert row["first_s"] > 0 and row["refresh_s"] > 0 and row["optuna_importance_s"] >= 0
    assert row["note_chars"] > 500 and row["plot_chars"] > 5000
    assert "median over 1: first write" in run.stdout
