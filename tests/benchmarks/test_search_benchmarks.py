"""Issue #12's search benchmarks: the pruning replay's arithmetic on curves with a known answer, its agreement with a
live pruned search through the CLI, and the second-modality comparison at smoke-test size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
sys.path.insert(0, str(ROOT / "benchmarks"))

from mnist1d_search import best_by  # noqa: E402
from pruning_budget import Curve, orders, pruner_spec, ratio, replay  # noqa: E402

from iasf_search.plugin_manager import load_components  # noqa: E402


@pytest.fixture(scope="module")
def pruners():
    return load_components().pruners


def script(name: str, *args: str, cwd: Path) -> str:
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600, env=ENV)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


CURVES = [Curve(0, (0.5, 0.6, 0.7, 0.8), True), Curve(1, (0.1, 0.1, 0.1, 0.1), False), Curve(2, (0.9, 0.9, 0.9, 0.95), False)]


def test_the_median_pruner_cuts_where_the_engine_would_ask_it(pruners):
    _, median, options = pruner_spec("median:warmup_fraction=0,n_startup_trials=1", pruners)
    pruned = replay(CURVES, median, options, epochs=4, target=0.95, study_name="s")
    # trial 1 is below trial 0's 0.5 after its first epoch; trial 2 is above it at every epoch
    assert pruned.trained == (4, 1, 4) and pruned.pruned == 1
    assert pruned.epochs == 9 and pruned.epochs_to_target == 9 and pruned.best == 0.95
    full = replay(CURVES, pruners.get("none"), {}, epochs=4, target=0.95, study_name="s")
    assert full.trained == (4, 4, 4) and full.epochs_to_target == 12
    assert ratio(full, pruned) == pytest.approx(12 / 9)


def test_no_pruning_before_the_startup_trials_complete_or_at_the_last_epoch(pruners):
    _, median, options = pruner_spec("median:warmup_fraction=0,n_startup_trials=2", pruners)
    assert replay(CURVES, median, options, epochs=4, target=0.95, study_name="s").trained == (4, 4, 4)
    low_last = [CURVES[0], Curve(1, (0.9, 0.9, 0.9, 0.1), False)]
    _, median, options = pruner_spec("median:warmup_fraction=0,n_startup_trials=1", pruners)
    assert replay(low_last, median, options, epochs=4, target=0.9, study_name="s").trained == (4, 4)


def test_a_target_the_pruner_cuts_is_not_reached_and_scores_zero(pruners):
    late = [CURVES[0], Curve(1, (0.1, 0.1, 0.1, 0.99), False)]
    _, median, options = pruner_spec("median:warmup_fraction=0,n_startup_trials=1", pruners)
    pruned = replay(late, median, options, epochs=4, target=0.99, study_name="s")
    assert pruned.epochs_to_target is None and pruned.best == 0.8
    assert ratio(replay(late, pruners.get("none"), {}, epochs=4, target=0.99, study_name="s"), pruned) == 0.0


def test_orders_keep_the_enqueued_trials_first_and_shuffle_the_rest():
    curves = [Curve(0, (1.0,), True), Curve(1, (1.0,), True)] + [Curve(i, (1.0,), False) for i in range(2, 12)]
    shuffled = orders(curves, 5, seed=0)
    assert all([c.number for c in o[:2]] == [0, 1] for o in shuffled)
    assert all(sorted(c.number for c in o) == list(range(12)) for o in shuffled)
    assert len({tuple(c.number for c in o) for o in shuffled}) > 1
    assert [[c.number for c in o] for o in orders(curves, 5, seed=0)] == [[c.number for c in o] for o in shuffled]


def test_an_unknown_pruner_option_is_refused(pruners):
    with pytest.raises(SystemExit, match="has no option"):
        pruner_spec("median:warmup=0.5", pruners)


def test_the_replay_matches_a_live_pruned_search_through_the_cli(tmp_path):
    out = script("pruning_budget.py", "--tasks", "digits", "--trials", "8", "--epochs", "3", "--orders", "3",
                 "--pruners", "median:warmup_fraction=0,n_startup_trials=1", "--check", "median:warmup_fraction=0,n_startup_trials=1",
                 "--work", str(tmp_path / "work"), cwd=tmp_path)
    assert "### digits: 8 trials of 3 epochs" in out
    assert "| `median:warmup_fraction=0,n_startup_trials=1` |" in out
    assert "check (digits, `median:warmup_fraction=0,n_startup_trials=1` through the CLI): 8 of 8 trials trained the replayed epochs" in out


def test_the_second_modality_comparison_at_smoke_size(tmp_path):
    out = script("modality_search.py", "--space", "timeseries", "--seeds", "0", "--minutes", "0.4", "--work", str(tmp_path / "w"),
                 cwd=tmp_path)
    rows = [line for line in out.splitlines() if line.startswith("| engine | 0 |") or line.startswith("| random | 0 |")]
    assert len(rows) == 2
    assert "| checkpoint | engine median | target | meets target | above random |" in out
    assert (tmp_path / "w" / "results.jsonl").read_text().count('"space": "timeseries"') == 2


def test_the_benchmark_picks_as_the_engine_does_best_validation_then_lowest_loss_then_first():
    trials = [{"finished_s": 10 * (n + 1), "val": val, "val_loss": loss, "number": n}
              for n, (val, loss) in enumerate([(0.99, 0.09), (0.98, 0.01), (0.99, 0.04), (0.99, 0.04), (0.995, 0.2)])]
    assert best_by(trials, 45)["number"] == 2  # level with 0 and 3 on accuracy, surer than 0, earlier than 3
    assert best_by(trials, 45, tie_break=False)["number"] == 0  # the first to finish
    assert best_by(trials, 60)["number"] == 4  # accuracy first
    assert best_by(trials, 5) is None
    assert best_by([{**t, "val_loss": None} for t in trials], 45)["number"] == 0  # no loss recorded (old rows): the first
