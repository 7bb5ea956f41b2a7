"""`iasf-search dashboard`: optuna-dashboard over HTTP shows the trials, their attributes, notes and files."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import made_up_study, make_doc
from optuna_dashboard import get_note

import iasf_search
from iasf_search.cli import main
from iasf_search.results.access import open_stored_study
from iasf_search.results.dashboard import make_dashboard_server, refresh_study_page
from iasf_search.results.study_plots import TITLES

ROOT = Path(__file__).resolve().parents[2]

SPACE = make_doc({"manifold.ops": {"attention": {"heads": 2, "pattern": "full"}, "conv": {"kernel": 3}},
                  "manifold.width": 16, "training.lr": 0.01, "training.epochs": 2, "costs": ["params"]})


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    url = f"sqlite:///{tmp / 'runs' / 'tiny.db'}"
    iasf_search.run_search(iasf_search.load_space(path), trials=3, storage=url)
    return url, tmp / "runs" / "artifacts"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return response.read()


@pytest.fixture
def served(study_db):
    """``iasf-search dashboard`` in a subprocess on a free loopback port; yields (base URL, printed lines)."""
    url, _ = study_db
    proc = subprocess.Popen([sys.executable, "-m", "iasf_search", "dashboard", "--storage", url, "--study", "tiny", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        match = re.search(r"open (http://127\.0\.0\.1:(\d+))(/dashboard/studies/\d+)", lines[1])
        assert match, (lines, proc.stderr.read() if proc.poll() is not None else "")
        base = match.group(1)
        deadline = time.monotonic() + 30
        while True:
            try:
                get(base + "/api/studies")
                break
            except OSError:
                assert time.monotonic() < deadline, "dashboard did not answer"
                time.sleep(0.2)
        yield base, lines, match.group(3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_dashboard_serves_trials_attributes_notes_and_artifacts(served):
    base, lines, page = served
    assert "artifacts from" in lines[0] and "runs/artifacts" in lines[0]
    summaries = json.loads(get(base + "/api/studies"))["study_summaries"]
    assert [s["study_name"] for s in summaries] == ["tiny"]
    study_id = summaries[0]["study_id"]
    assert page == f"/dashboard/studies/{study_id}"
    detail = json.loads(get(f"{base}/api/studies/{study_id}?after=0"))
    assert detail["objective_names"] == ["val accuracy"]
    trials = detail["trials"]
    assert len(trials) == 3
    for trial in trials:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert {"arch_hash", "summary", "params", "cost.params"} <= set(attrs)
        assert max(len(str(v)) for v in attrs.values()) < 200  # no attribute widens the dashboard's page
        assert trial["note"]["body"].startswith(f"## Trial {trial['number']}: {attrs['summary']}")
        files = {a["filename"]: a for a in trial["artifacts"]}
        assert files["architecture.svg"]["mimetype"] == "image/svg+xml"
        svg = get(f"{base}/artifacts/{study_id}/{trial['trial_id']}/{files['architecture.svg']['artifact_id']}")
        assert b"<svg" in svg
    # the first trial is the best so far when it finishes: it keeps a checkpoint
    first = {a["filename"] for a in trials[0]["artifacts"]}
    assert "model.safetensors" in first
    page_html = get(base + page)
    assert b"<html" in page_html.lower()


def test_busy_port_is_bad_input(study_db, capsys):
    url, artifacts = study_db
    server = make_dashboard_server(url, artifacts, port=0)
    try:
        rc = main(["dashboard", "--storage", url, "--port", str(server.server_port)])
    finally:
        server.server_close()
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot listen on 127.0.0.1:{server.server_port}" in err and "--port" in err


def test_missing_database_is_bad_input(tmp_path, capsys):
    rc = main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'nothing.db'}"])
    assert rc == 2 and "no such study database" in capsys.readouterr().err
    assert not (tmp_path / "nothing.db").exists()


def test_unknown_study_is_bad_input(study_db, capsys):
    rc = main(["dashboard", "--storage", study_db[0], "--study", "nope", "--port", "0"])
    assert rc == 2 and "no study 'nope'" in capsys.readouterr().err


def _screenshots_script():
    spec = importlib.util.spec_from_file_location("dashboard_screenshots", ROOT / "scripts" / "dashboard_screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dashboard_refreshes_the_page_of_a_study_no_search_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'made.db'}"
    study = optuna.create_study(storage=url, study_name="made-up")
    for trial in made_up_study(6).get_trials():
        study.add_trial(trial)
    out = io.StringIO()
    assert not refresh_study_page(open_stored_study(url, "made-up"), url, out)  # no space recorded: not ours to write
    assert get_note(study) == ""
    study.set_user_attr("space", {"name": "made-up"})
    assert refresh_study_page(open_stored_study(url, "made-up"), url, out)
    assert get_note(study).startswith("## made-up: what the search found")
    study.ask()  # a trial runs: a search is going on, and its worker 0 writes the page
    assert not refresh_study_page(open_stored_study(url, "made-up"), url, out)
    assert out.getvalue() == "a search is running: its worker 0 keeps the study page up to date\n"


def test_the_study_page_in_a_real_browser(page_search):
    """``iasf-search dashboard --port 0`` on a finished search, read by headless Chromium: the study note's table of
    the best trials, every NAS plot's title, and a trial's architecture diagram are rendered."""
    script = _screenshots_script()
    if (why := script.missing()) is not None:
        pytest.skip(f"no browser to drive: {why}")
    _, _, url = page_search
    best = iasf_search.best_trials(iasf_search.load_results(url, "tiny"))[0]
    proc = subprocess.Popen([sys.executable, "-m", "iasf_search", "dashboard", "--storage", url, "--study", "tiny", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver = None
    try:
        proc.stdout.readline()
        match = re.search(r"open (http://127\.0\.0\.1:\d+/dashboard/studies/\d+)", proc.stdout.readline())
        assert match, proc.stderr.read() if proc.poll() is not None else ""
        page = match.group(1)
        driver = script.chromium()
        driver.get(page + "/note")
        script.wait_for_text(driver, "The best 5 architectures")
        rows = driver.find_elements("css selector", "table tbody tr")
        assert len(rows) == 5 and rows[0].text.split()[0].strip("\u2003") == f"#{best.number}"
        link = rows[0].find_element("tag name", "a")
        assert link.get_attribute("href").endswith(f"/dashboard/studies/1/trials?numbers={best.number}")
        driver.get(page)
        for title in ("Accuracy against parameters (Pareto set ringed)", "Accuracy against FLOPs per sample (Pareto set ringed)",
                      *TITLES.values()):
            script.wait_for_text(driver, title)
        driver.get(f"{page}/trials?numbers={best.number}")
        script.wait_for_text(driver, "Artifacts")
        deadline = time.monotonic() + 30
        while True:
            diagrams = driver.find_elements("css selector", "img[alt='architecture.svg']")
            if diagrams and driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", diagrams[0]):
                break
            assert time.monotonic() < deadline, "the trial's diagram was not rendered"
            time.sleep(0.3)
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(timeout=10)
