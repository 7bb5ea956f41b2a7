"""`iasf-search dashboard`: optuna-dashboard over HTTP shows the trials, their attributes, notes and files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from conftest import make_doc

import iasf_search
from iasf_search.cli import main
from iasf_search.results.dashboard import make_dashboard_server

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
