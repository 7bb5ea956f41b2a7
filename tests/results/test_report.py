"""``iasf-search report``: an offline HTML page with the study's figures, embedded and as PNG files."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import optuna
import pytest
import yaml
from conftest import make_doc
from PIL import Image

from iasf_search.cli import main
from iasf_search.plugin_manager import DISABLE_AUTOLOAD_ENV
from iasf_search.results.access import best_trials, load_results
from iasf_search.results.report import write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ATTENTION = {"attention": {"heads": 2, "pattern": "full"}, "mlp": {"expansion": 1}}
SINGLE = {"name": "rep", "manifold.ops": ATTENTION, "manifold.nodes": 2, "auxiliary": {"cds": {}}}
MULTI = {"name": "rep-multi", "manifold.ops": ATTENTION, "costs": ["params"],
         "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}]}


class Page(HTMLParser):
    """The parts of the report a test looks at: image sources (by alt text), headings, all text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, str] = {}
        self.headings: list[str] = []
        self.text: list[str] = []
        self.tags: set[str] = set()
        self._heading = False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.images[attrs["alt"]] = attrs["src"]
        self._heading = tag in ("h1", "h2", "h3")

    def handle_endtag(self, tag):
        self._heading = False

    def handle_data(self, data):
        self.text.append(data)
        if self._heading:
            self.headings.append(data)


def parse(index: Path) -> Page:
    page = Page()
    page.feed(index.read_text(encoding="utf-8"))
    page.close()
    return page


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def search(root: Path, set: dict) -> tuple[Path, str]:
    """A 3-trial, 1-epoch search of a tiny space in ``root``; returns the space file and the storage URL."""
    doc = make_doc(set)
    space = root / f"{doc['name']}.yaml"
    space.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    url = f"sqlite:///{root / 'runs' / (doc['name'] + '.db')}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(DISABLE_AUTOLOAD_ENV, "1")
        mp.chdir(root)
        assert main(["search", "--space", str(space), "--storage", url, "--trials", "3", "--device", "cpu", "-q"]) == 0
    return space, url


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return search(tmp_path_factory.mktemp("single"), SINGLE)


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return search(tmp_path_factory.mktemp("multi"), MULTI)


def test_report_renders_every_figure(single, tmp_path: Path, capsys) -> None:
    space, url = single
    out = tmp_path / "report"
    style = dict(matplotlib.rcParams)
    assert main(["report", "--space", str(space), "--storage", url, "--out", str(out)]) == 0
    assert "index.html" in capsys.readouterr().out
    assert dict(matplotlib.rcParams) == style  # optuna's ggplot style does not leak into other figures

    index = out / "index.html"
    page = parse(index)
    assert not {"script", "link"} & page.tags  # nothing loaded from elsewhere
    assert all(src.startswith("data:image/png;base64,") for src in page.images.values())
    embedded = {alt: base64.b64decode(src.split(",", 1)[1], validate=True) for alt, src in page.images.items()}
    for data in embedded.values():
        width, height = png_size(data)
        assert width > 0 and height > 0
    for name in ("history.png", "importances.png", "architecture.png", "metrics.png"):
        assert png_size((out / name).read_bytes())[0] > 0
    assert not (out / "pareto.png").exists()
    assert {"Optimisation history", "Parameter importances", "Best architecture"} <= set(embedded)
    assert embedded["Optimisation history"] == (out / "history.png").read_bytes()

    study = load_results(url, "rep")
    best = best_trials(study)[0]
    text = " ".join(page.text)
    assert f"#{best.number}" in text
    assert f"{best.user_attrs['test_accuracy']:,.4g}" in text
    assert best.user_attrs["summary"] in text
    cosine = best.user_attrs["aux.cds"]["cosine"]  # two nodes: CDS measures how they relate
    assert f"aux.cds.cosine {cosine:,.4g}" in " ".join(t.strip() for t in page.text if t.strip())  # the metrics table
    assert "Representation metric against validation accuracy" in embedded
    baselines = study.user_attrs["baselines"]  # fitted by the search, shown in their own table
    assert "Baselines" in page.headings
    assert f"1-NN {baselines['1nn']['test_accuracy']:.4f}, logistic regression" in text

    ops = {node.get("op") for node in json.loads(best.system_attrs["architecture"])["nodes"]}
    if "attention" in ops:
        assert png_size(embedded["Attention heat maps"])[0] > 0
        assert (out / "attention.png").read_bytes() == embedded["Attention heat maps"]
        assert "first 64 validation samples" in text
    else:
        assert "has no attention node" in text
    assert any("attention" in {n.get("op") for n in json.loads(t.system_attrs["architecture"])["nodes"]}
               for t in study.trials)


def test_report_multi_objective_has_pareto_front(multi, tmp_path: Path) -> None:
    space, url = multi
    out = tmp_path / "report"
    assert main(["report", "--storage", url, "--study", "rep-multi", "--out", str(out)]) == 0
    page = parse(out / "index.html")
    for name in ("pareto.png", "history.png", "history-2.png"):
        assert png_size((out / name).read_bytes())[0] > 0
    assert {"Pareto front", "Optimisation history: val accuracy", "Optimisation history: params"} <= set(page.images)
    assert any(h.startswith("Pareto set (") for h in page.headings)
    study = load_results(url, "rep-multi")
    text = " ".join(page.text)
    assert all(f"#{t.number}" in text for t in best_trials(study))


def test_report_without_artifacts_says_why(single, tmp_path: Path) -> None:
    """No artifact store: no checkpoint to recompute heat maps from, and the page says so."""
    _, url = single
    study = optuna.load_study(study_name="rep", storage=url)
    index = write_report(study, tmp_path / "out", store=None)
    text = " ".join(parse(index).text)
    assert "no heat maps" in text and "no artifact store" in text
    assert not (tmp_path / "out" / "attention.png").exists()
    assert (tmp_path / "out" / "architecture.png").is_file()


def test_report_bad_input(single, tmp_path: Path, capsys) -> None:
    space, url = single
    capsys.readouterr()
    assert main(["report", "--storage", f"sqlite:///{tmp_path / 'missing.db'}", "--study", "x", "--out", "o"]) == 2
    assert main(["report", "--storage", url, "--study", "nope", "--out", "o"]) == 2
    assert "no study 'nope'" in capsys.readouterr().err
    assert main(["report", "--out", "o"]) == 2  # neither --space nor --storage/--study
    (tmp_path / "file").write_text("x")
    assert main(["report", "--storage", url, "--study", "rep", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["report", "--storage", url, "--study", "rep", "--artifacts", str(tmp_path / "none"), "--out", "o"]) == 2
    assert not Path("o").exists()
    assert main(["report", "--storage", url, "--study", "rep"]) == 2  # --out is required
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_report_of_a_sparse_study_escapes_and_lists_failures(tmp_path: Path) -> None:
    """A study with one bare completed trial and a failed one: no crash, reasons shown, text escaped."""
    study = optuna.create_study(study_name="<sparse>")
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"summary": "<b>mlp</b>"}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                              user_attrs={"failure_reason": "ValueError: <script>x</script>",
                                                          "failed_plugin": "my_ops"}))
    index = write_report(study, tmp_path / "out")
    raw = index.read_text(encoding="utf-8")
    assert "<script>" not in raw and "&lt;script&gt;" in raw and "&lt;b&gt;mlp&lt;/b&gt;" in raw
    text = " ".join(parse(index).text)
    assert "ValueError: <script>x</script>" in text and "my_ops" in text
    assert "needs at least 2 completed trials" in text
    assert "does not record its architecture" in text
    assert (tmp_path / "out" / "history.png").is_file()


def test_report_says_what_predicts_accuracy(tmp_path: Path) -> None:
    """Enough trials: the correlations table and correlations.png; too few on a rerun: one note, the stale figure gone."""
    study = optuna.create_study(study_name="fab", direction="maximize")
    for i, accuracy in enumerate((0.31, 0.52, 0.47, 0.66, 0.58, 0.73)):
        study.add_trial(optuna.trial.create_trial(value=accuracy, user_attrs={
            "val_accuracy": accuracy, "metric.a": accuracy * 2, "metric_details.a": {"n0": 1.0}, "cost.flops": 10, "params": 100 + i}))
    out = tmp_path / "out"
    page = parse(write_report(study, out))
    text = " ".join(t.strip() for t in page.text if t.strip())
    assert "What predicts accuracy" in page.headings
    assert "metric.a +1.000 [+1.000, +1.000] 6" in text and "params" in text
    assert "cost.flops (constant)" in text and "metric_details" not in text
    assert base64.b64decode(page.images["Rank correlation with validation accuracy"].split(",", 1)[1]) == (
        out / "correlations.png").read_bytes()
    assert (out / "metrics.png").is_file() and "metric.a (measured after training)" in text  # metric.* is plotted too

    few = optuna.create_study(study_name="few")
    few.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"val_accuracy": 0.5, "metric.a": 1.0}))
    page = parse(write_report(few, out))
    assert "study 'few' has 1 complete trial with a validation accuracy; correlating needs at least 5" in page.text
    assert not (out / "correlations.png").exists()


def test_analyze_finds_the_study_from_the_space_alone(single, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """``analyze --space PATH`` opens the study as ``report`` does; three trials are too few to correlate."""
    space, _ = single
    monkeypatch.chdir(space.parent)  # the default storage, runs/<name>.db, is relative to the working directory
    capsys.readouterr()
    assert main(["analyze", "--space", str(space)]) == 2
    assert capsys.readouterr().err == ("iasf-search: error: study 'rep' has 3 complete trials with a validation accuracy; "
                                       "correlating needs at least 5\n")
