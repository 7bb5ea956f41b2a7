"""What predicts accuracy: rank correlations of the recorded measurements with validation accuracy, and ``iasf-search analyze``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial
from PIL import Image
from scipy.stats import spearmanr

from iasf_search.cli import main
from iasf_search.results.access import measurements
from iasf_search.results.analysis import FILES, MIN_TRIALS, Analysis, Correlation, Skipped, analyze, correlate, markdown_table, text_table

ACCURACIES = (0.31, 0.52, 0.47, 0.66, 0.58, 0.73, 0.40, 0.81)


def attrs(i: int, accuracy: float) -> dict:
    """A trial's user attributes: ``metric.a`` rises and ``metric.b`` falls with accuracy, ``metric.c`` does neither,
    ``cost.flops`` is constant, ``proxy.x`` is on three trials only; the details beside them are no measurements."""
    out = {"val_accuracy": accuracy, "metric.a": accuracy ** 2 * 10, "metric.b": -3 * accuracy, "metric.c": float((i * 5) % 8),
           "metric_details.a": {"n0": 0.1 * i, "n1": 0.2}, "cost.flops": 1000, "cost_details.flops": {"spread": 0.01 * i},
           "params": 2000 + 37 * ((i * 3) % 8), "aux.cds": {"cosine": 0.5 + 0.01 * i, "ok": True}, "summary": "mlp"}
    if i < 3:
        out["proxy.x"] = float(i)
    return out


def make_study(storage: str | None = None, name: str = "fab", trials: int = len(ACCURACIES)) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for i, accuracy in enumerate(ACCURACIES[:trials]):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=accuracy, user_attrs=attrs(i, accuracy)))
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.9, user_attrs={"metric.a": 5.0}))  # no val_accuracy: left out
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={"val_accuracy": 0.1, "metric.a": 0.0}))  # not complete
    return study


def test_measurements_are_the_numeric_metric_cost_proxy_params_and_aux_columns():
    t = create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs={
        **attrs(0, 0.5), "metric.nan": float("nan"), "metric.flag": True, "cost.note": "x", "proxy.inf": float("inf")})
    assert measurements(t) == {"aux.cds.cosine": 0.5, "cost.flops": 1000.0, "metric.a": 2.5, "metric.b": -1.5, "metric.c": 0.0,
                               "params": 2000.0, "proxy.x": 0.0}


def test_correlations_rank_columns_and_say_why_others_are_absent():
    analysis = analyze(make_study())
    assert analysis.study == "fab" and analysis.trials == len(ACCURACIES)
    by_name = {r.name: r for r in analysis.rows}
    assert by_name["metric.a"] == Correlation("metric.a", 1.0, 1.0, 1.0, 8)
    assert by_name["metric.b"] == Correlation("metric.b", -1.0, -1.0, -1.0, 8)
    assert [r.name for r in analysis.rows[:2]] == ["metric.a", "metric.b"]  # |rho| 1, then by name
    assert [abs(r.rho) for r in analysis.rows] == sorted((abs(r.rho) for r in analysis.rows), reverse=True)
    for row in analysis.rows:
        values = [attrs(i, a)[row.name] if row.name in attrs(i, a) else 0.5 + 0.01 * i for i, a in enumerate(ACCURACIES)]
        assert row.rho == pytest.approx(spearmanr(values, ACCURACIES).statistic, abs=1e-12)
        assert row.low <= row.rho <= row.high and -1 <= row.low and row.high <= 1 and row.n == 8
    assert set(by_name) == {"aux.cds.cosine", "metric.a", "metric.b", "metric.c", "params"}
    assert analysis.skipped == (Skipped("cost.flops", "constant"), Skipped("proxy.x", f"too few trials: 3 of the {MIN_TRIALS} needed"))
    assert analysis.shortfall is None
    assert analyze(make_study()) == analysis  # the bootstrap is seeded


def test_a_study_with_too_few_trials_says_so():
    analysis = analyze(make_study(trials=3))
    assert analysis.trials == 3
    assert analysis.shortfall == f"study 'fab' has 3 complete trials with a validation accuracy; correlating needs at least {MIN_TRIALS}"


def test_a_constant_accuracy_leaves_nothing_to_correlate():
    trials = [create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs={"val_accuracy": 0.5, "metric.a": float(i)})
              for i in range(6)]
    assert correlate("flat", trials) == Analysis("flat", 6, (), (Skipped("metric.a", "validation accuracy constant on its trials"),))


def test_tables_have_one_line_per_row():
    analysis = Analysis("s", 6, (Correlation("metric.a", 1.0, 1.0, 1.0, 6), Correlation("params", -0.25, -0.9, 0.5, 5)), ())
    assert text_table(analysis).splitlines() == ["metric       rho  95% interval         n",
                                                 "metric.a  +1.000  [+1.000, +1.000]     6",
                                                 "params    -0.250  [-0.900, +0.500]     5"]
    assert markdown_table(analysis) == ("| metric | rho | 95% interval | n |\n|---|---:|---|---:|\n"
                                        "| `metric.a` | +1.000 | [+1.000, +1.000] | 6 |\n| `params` | -0.250 | [-0.900, +0.500] | 5 |\n")


def test_analyze_prints_the_table_and_writes_the_files(tmp_path: Path, capsys):
    url = f"sqlite:///{tmp_path / 'fab.db'}"
    make_study(url)
    out = tmp_path / "deep" / "analysis"
    assert main(["analyze", "--storage", url, "--study", "fab", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    analysis = analyze(optuna.load_study(study_name="fab", storage=url))
    assert printed[0].startswith(f"study 'fab': {len(ACCURACIES)} complete trials with a validation accuracy;")
    assert printed[1:2 + len(analysis.rows)] == text_table(analysis).splitlines()
    assert printed[-2] == f"skipped: cost.flops (constant), proxy.x (too few trials: 3 of the {MIN_TRIALS} needed)"
    assert printed[-1] == f"written to {out}: {', '.join(FILES)}"

    with (out / "correlations.csv").open(newline="", encoding="utf-8") as f:
        rows = [Correlation(r["name"], float(r["rho"]), float(r["low"]), float(r["high"]), int(r["n"])) for r in csv.DictReader(f)]
    assert tuple(rows) == analysis.rows
    assert (out / "correlations.md").read_text(encoding="utf-8") == markdown_table(analysis)
    with Image.open(io.BytesIO((out / "correlations.png").read_bytes())) as image:
        assert image.format == "PNG" and image.size[0] > 0


def test_analyze_bad_input_is_one_line(tmp_path: Path, capsys):
    url = f"sqlite:///{tmp_path / 'few.db'}"
    make_study(url, name="few", trials=3)
    assert main(["analyze", "--storage", url, "--study", "few"]) == 2
    err = capsys.readouterr().err
    assert err == (f"iasf-search: error: study 'few' has 3 complete trials with a validation accuracy; "
                   f"correlating needs at least {MIN_TRIALS}\n")
    make_study(url)
    (tmp_path / "file").write_text("x")
    assert main(["analyze", "--storage", url, "--study", "fab", "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"iasf-search: error: --out {tmp_path / 'file'}: is a file; give a folder\n"
    assert main(["analyze", "--out", "o"]) == 2  # neither --space nor --storage/--study
    assert "analyze needs --space PATH" in capsys.readouterr().err
    assert not Path("o").exists()


def test_bootstrap_interval_is_a_percentile_interval_of_resampled_rhos():
    """A noisy column: the interval is wide, holds rho, and depends only on the column's own values."""
    rng = np.random.default_rng(1)
    accuracy = rng.uniform(0.3, 0.9, 12)
    noisy = accuracy + rng.normal(0, 0.15, 12)
    trials = [create_trial(state=TrialState.COMPLETE, value=float(a), user_attrs={"val_accuracy": float(a), "metric.n": float(v)})
              for a, v in zip(accuracy, noisy, strict=True)]
    (row,) = correlate("noisy", trials).rows
    assert row.low < row.rho < row.high and row.high - row.low > 0.1
    extra = [create_trial(state=TrialState.COMPLETE, value=float(a), user_attrs={**t.user_attrs, "metric.m": float(i)})
             for i, (a, t) in enumerate(zip(accuracy, trials, strict=True))]
    assert next(r for r in correlate("noisy", extra).rows if r.name == "metric.n") == row


def test_params_is_not_counted_twice_when_the_space_records_cost_params():
    t = create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs={"val_accuracy": 0.5, "params": 2000, "cost.params": 2000.0})
    assert measurements(t) == {"cost.params": 2000.0}
