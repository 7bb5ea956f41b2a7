"""The report's page: one self-contained HTML document with the study's overview and tables
(:mod:`iasf_search.results.report_html`)."""

from __future__ import annotations

import base64
import re

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from iasf_search.results.analysis import analyze
from iasf_search.results.report_figures import Figured, correlations_figured
from iasf_search.results.report_html import figure_html, report_page


def trial(values=None, state=TrialState.COMPLETE, **user_attrs):
    return create_trial(state=state, values=values, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                        user_attrs=user_attrs)


def cells(page: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    for row in re.findall(r"<tr>(.*?)</tr>", page):
        found = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)
        if found and found[0] == first:
            return found
    raise AssertionError(f"no row starting with {first!r}")


def test_figure_html_embeds_the_png_with_its_caption():
    html = figure_html(Figured("Pareto <front>", "pareto.png", png=b"\x89PNG-bytes", caption="a & b"))
    data = base64.b64encode(b"\x89PNG-bytes").decode("ascii")
    assert html.startswith("<h2>Pareto &lt;front&gt;</h2>\n")
    assert f'<img src="data:image/png;base64,{data}" alt="Pareto &lt;front&gt;">' in html
    assert '<figcaption class="caption">a &amp; b</figcaption>' in html


def test_figure_html_without_a_png_shows_the_note():
    html = figure_html(Figured("Metrics", "metrics.png", note="none <recorded>"), heading=False)
    assert html == '<h3>Metrics</h3>\n<p class="note">none &lt;recorded&gt;</p>'


def page_of(study, url="postgresql://me:s3cret@db/nas", names=("val accuracy",), lead=None, figures=()):
    trials = study.get_trials(deepcopy=False)
    best = [t for t in study.best_trials] if any(t.state == TrialState.COMPLETE for t in trials) else []
    analysis = analyze(study)
    return report_page(study, url, list(names), trials, sorted(best, key=lambda t: t.number), lead, list(figures),
                       Figured("Representation metric against validation accuracy", "metrics.png", note="no metric"),
                       analysis, correlations_figured(analysis))


def test_page_overview_and_best_trial():
    study = optuna.create_study(study_name="vision", direction="maximize")
    study.set_user_attr("space", {"task": {"dataset": "digits", "options": {"shift": 0}}})
    study.set_user_attr("data", {"sample_shape": [1, 8, 8], "num_classes": 10, "train": 900, "val": 200, "test": 300})
    study.set_user_attr("commands", ["iasf-search --space v.yaml"])
    study.add_trial(trial([0.9], val_accuracy=0.9, val_loss=0.3, test_accuracy=0.875, params=12345, epochs=2,
                          train_seconds=1.25, summary="mlp", reused_from=0))
    study.add_trial(trial(state=TrialState.PRUNED))
    study.add_trial(trial(state=TrialState.FAIL))
    page = page_of(study, figures=[Figured("Best architecture", "architecture.png", note="no diagram")])
    assert page.startswith("<!DOCTYPE html>") and "<title>iasf-search report: vision</title>" in page
    assert "<script" not in page and "<link" not in page
    assert cells(page, "storage") == ["storage", "postgresql://me:***@db/nas"] and "s3cret" not in page
    assert cells(page, "objectives") == ["objectives", "val accuracy (maximize)"]
    assert cells(page, "dataset") == ["dataset", 'digits {&quot;shift&quot;: 0}; samples (1, 8, 8), 10 classes, train/val/test 900/200/300']
    assert cells(page, "trials") == ["trials", "1 complete, 1 pruned, 1 fail"]
    assert "<p>Produced by: <code>iasf-search --space v.yaml</code></p>" in page
    assert "<h2>Best trial</h2>" in page
    assert cells(page, "trial") == ["trial", "val accuracy", "val loss", "test accuracy", "parameters", "epochs", "train s", "summary"]
    assert cells(page, "#0") == ["#0", "0.9", "0.3", "0.875", "12,345", "2", "1.25", "mlp (result reused from #0)"]
    assert page.index("<h2>Best architecture</h2>") < page.index("<h2>Representation metrics</h2>") < page.index("<h2>Failed trials</h2>")
    assert page.index("<h2>Representation metrics</h2>") < page.index("<h2>What predicts accuracy</h2>") < page.index("<h2>Failed")
    assert ('<p class="note">study &#x27;vision&#x27; has 1 complete trial with a validation accuracy; correlating needs at least 5'
            "</p>") in page
    assert cells(page, "#2") == ["#2", "fail", "", "(no reason recorded)"]


def test_page_of_a_pareto_set_shows_objectives_costs_and_the_lead_trial():
    study = optuna.create_study(study_name="m", directions=["maximize", "minimize"])
    for acc, ms in ((0.9, 5.0), (0.7, 2.0)):
        study.add_trial(trial([acc, ms], val_accuracy=acc, params=100, **{"cost.params": 100, "cost.flops": 7e6,
                                                                           "aux.cds": {"cosine": 0.5}}))
    page = page_of(study, url=None, names=("val accuracy", "latency_ms"), lead=study.trials[0])
    assert cells(page, "storage") == ["storage", "(not an RDB storage)"]
    assert "<h2>Pareto set (2 trials)</h2>" in page
    header = cells(page, "trial")
    assert header[:2] == ["trial", "latency_ms"] and "flops" in header and "params" not in header  # cost.params repeats parameters
    assert cells(page, "#1")[:2] == ["#1", "2"]
    assert "The figures below show trial #0, the Pareto-optimal trial with the highest validation accuracy." in page
    assert "Measured by the auxiliary objectives" in page and re.search(r"<td>#0</td><td>aux\.cds\.cosine</td>", page)
    assert "<h2>Failed trials</h2>\n<p>none</p>" in page


def test_page_of_a_study_without_completed_trials():
    study = optuna.create_study(study_name="e")
    study.add_trial(trial(state=TrialState.PRUNED, failure_reason="diverged: nan", failed_plugin="ops"))
    page = page_of(study)
    assert '<h2>Best trial</h2>\n<p class="note">no trial completed yet</p>' in page
    assert "the best trials recorded no representation metrics" in page
    assert cells(page, "#0") == ["#0", "pruned", "ops", "diverged: nan"]
    assert cells(page, "trials") == ["trials", "1 pruned"]


def test_page_has_a_baselines_table_and_the_verdict():
    from iasf_search.results.baselines import record_baselines

    study = optuna.create_study(study_name="b", direction="maximize")
    study.add_trial(trial([0.9], val_accuracy=0.9, test_accuracy=0.95, train_seconds=12.5))
    record_baselines(study, {"1nn": {"val_accuracy": 0.91, "test_accuracy": 0.9, "seconds": 0.25},
                             "logistic_regression": {"val_accuracy": 0.8, "test_accuracy": 0.85, "seconds": 0.5}}, {"train": 10})
    page = page_of(study)
    assert page.index("<h2>Best trial</h2>") < page.index("<h2>Baselines</h2>") < page.index("<h2>Representation metrics</h2>")
    assert cells(page, "model") == ["model", "val accuracy", "test accuracy", "seconds"]
    assert cells(page, "1-NN") == ["1-NN", "0.91", "0.9", "0.25"]
    assert cells(page, "logistic regression") == ["logistic regression", "0.8", "0.85", "0.5"]
    assert cells(page, "trial #0") == ["trial #0", "0.9", "0.95", "12.5"]
    assert ("<p>baselines (test accuracy): 1-NN 0.9000, logistic regression 0.8500; the best trial (0.9500) beats both</p>"
            in page)


def test_page_of_a_study_without_baselines_says_how_to_fit_them():
    study = optuna.create_study(study_name="n", direction="maximize")
    study.add_trial(trial([0.9], val_accuracy=0.9))
    page = page_of(study)
    assert "<h2>Baselines</h2>\n<p class=\"note\">none recorded" in page and "iasf-search baseline --space PATH" in page
