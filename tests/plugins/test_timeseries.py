"""Time-series datasets (plugins/timeseries.py): UCR-layout files and their errors, a _TRAIN/_TEST pair (the test
split is the test file), the generated shapes; the preparation of series (normalisation, missing values, unequal
lengths, channels); the file formats through the dataset: .ts (univariate, multivariate, unequal lengths, missing values)
and .arff through aeon, the UCR layout with the archive's NaN padding, .npz from save_series; the four archive datasets
aeon ships, read from their own files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from iasf_search.components import SplitSpec
from iasf_search.data import check_task
from iasf_search.errors import BadInput
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.timeseries import SHAPES, generate_shapes
from iasf_search.plugins.timeseries import standardize as standardize_channels
from iasf_search.series import read_ucr as read_series
from iasf_search.series import save_series
from iasf_search.testing import check_dataset

DATASETS = load_components(autoload=False).datasets


def options(name, **given):
    return {**{k: p.default for k, p in DATASETS.get(name).params.items()}, **given}


def standardize(x: np.ndarray) -> np.ndarray:
    """Each row of ``x (N, T)`` z-normalised."""
    return standardize_channels(np.asarray(x, dtype=np.float64)[:, None, :])[:, 0]


def read_ucr(path: Path, name: str) -> tuple[np.ndarray, list[str]]:
    """``(values (N, T), labels)`` of an equal-length UCR file."""
    read = read_series(path, name)
    return np.stack([s[0] for s in read.series]), read.labels


def test_generated_shapes_and_standardize():
    x, labels = generate_shapes(400, 32, 0.1, seed=0)
    assert x.shape == (400, 32) and set(labels) == set(SHAPES)
    z = standardize(x)
    assert np.allclose(z.mean(1), 0, atol=1e-5) and np.allclose(z.std(1), 1, atol=1e-4)
    assert np.array_equal(x, generate_shapes(400, 32, 0.1, seed=0)[0])


@pytest.mark.parametrize("sep", [",", "\t", " "])
def test_ucr_file_is_read_with_any_separator(tmp_path, sep):
    x, labels = generate_shapes(80, 16, 0.1, seed=2)
    path = tmp_path / "series.txt"
    path.write_text("".join(sep.join([str(SHAPES.index(lab) + 1)] + [f"{v:.5f}" for v in row]) + "\n"
                            for row, lab in zip(x, labels, strict=True)))
    dataset = DATASETS.get("timeseries_file")
    data = dataset.load(options("timeseries_file", path=str(path)), SplitSpec())
    assert data.sample_shape == (16, 1) and data.num_classes == 4 and data.info["classes"] == ["1", "2", "3", "4"]
    check_dataset(dataset, options("timeseries_file", path=str(path)))


@pytest.mark.parametrize(("content", "fragment"), [
    ("1,0.1,abc\n", "line 1: a value is not a number"),
    ("1,0.1,inf\n2,0.2,0.3\n", "line 1: holds infinite values"),
    ("1,0.1,1e39\n2,0.2,0.3\n", "line 1: holds infinite values"),
    ("1,0.1,0.2\n2,nan,NaN\n", "line 2: the series has no value"),
    ("\n", "no series found"),
])
def test_ucr_file_errors(tmp_path, content, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(BadInput, match=fragment):
        DATASETS.get("timeseries_file").load(options("timeseries_file", path=str(path)), SplitSpec())


def test_classes_sort_numerically_and_labels_follow(tmp_path):
    path = tmp_path / "labels.csv"
    rows = [("10", [1.0, 2.0, 3.0]), ("2", [3.0, 2.0, 1.0]), ("1", [0.0, 1.0, 0.0])] * 8
    path.write_text("".join(",".join([label, *map(str, values)]) + "\n" for label, values in rows))
    x, labels = read_ucr(path, "timeseries_file")
    assert x.shape == (24, 3) and labels[:3] == ["10", "2", "1"]
    data = DATASETS.get("timeseries_file").load(options("timeseries_file", path=str(path), normalize=False), SplitSpec())
    assert data.info["classes"] == ["1", "2", "10"]  # "2" before "10"
    for split_x, split_y in ((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)):
        for series, label in zip(split_x[:, :, 0].tolist(), split_y.tolist(), strict=True):
            assert series == {0: [0.0, 1.0, 0.0], 1: [3.0, 2.0, 1.0], 2: [1.0, 2.0, 3.0]}[label]  # not normalised


def test_generated_shapes_dataset():
    dataset = DATASETS.get("timeseries_shapes")
    data = dataset.load(options("timeseries_shapes", samples=200, length=16), SplitSpec())
    check_task("timeseries_shapes", data)
    assert data.modality == "sequence" and data.sample_shape == (16, 1) and data.num_classes == 4
    assert data.info["classes"] == ["sine", "chirp", "square", "sawtooth"]  # by name length, then name
    everything = np.concatenate([data.x_train.numpy(), data.x_val.numpy(), data.x_test.numpy()])[:, :, 0]
    assert np.allclose(everything.mean(1), 0, atol=1e-5)  # each series z-normalised
    raw = dataset.load(options("timeseries_shapes", samples=200, length=16, normalize=False), SplitSpec())
    assert not np.allclose(raw.x_train.numpy()[:, :, 0].mean(1), 0, atol=1e-3)


# -- a dataset with its own test file: the UCR archive's NAME_TRAIN.tsv / NAME_TEST.tsv pair -----------------------


def _write_ucr(path: Path, labels: list[str], x: np.ndarray) -> Path:
    """A UCR-layout file (tab-separated: the label, then the values) of ``x`` (N, T)."""
    path.write_text("".join("\t".join([label, *(f"{v:.6f}" for v in row)]) + "\n" for label, row in zip(labels, x, strict=True)))
    return path


def _ucr_pair(folder: Path, length: int = 151, train: int = 45, test: int = 30) -> tuple[Path, Path]:
    """``Pair_TRAIN.tsv`` (classes "1", "2", "10", in turn) and ``Pair_TEST.tsv`` (the same classes, in another order),
    series of ``length`` values whose level and slope depend on the class."""
    rng = np.random.default_rng(7)

    def series(labels: list[str]) -> np.ndarray:
        level = np.array([float(lab) for lab in labels])[:, None]
        return level + level * np.linspace(0, 1, length)[None, :] + rng.normal(size=(len(labels), length))

    train_labels = [("1", "2", "10")[i % 3] for i in range(train)]
    test_labels = [("10", "10", "1", "2", "1")[i % 5] for i in range(test)]
    return (_write_ucr(folder / "Pair_TRAIN.tsv", train_labels, series(train_labels)),
            _write_ucr(folder / "Pair_TEST.tsv", test_labels, series(test_labels)))


def _rows(x) -> list[tuple[float, ...]]:
    return sorted(tuple(row) for row in np.asarray(x).reshape(len(x), -1).tolist())


def test_a_train_test_pair_makes_the_test_file_the_test_split(tmp_path):
    train_path, test_path = _ucr_pair(tmp_path)
    dataset = DATASETS.get("timeseries_file")
    given = options("timeseries_file", path=str(train_path), test_path=str(test_path))
    data = dataset.load(given, SplitSpec(val=0.2, test=0.5, seed=3))  # split.test is ignored
    check_task("timeseries_file", data)
    assert data.info == {"source": str(train_path), "test_source": str(test_path), "classes": ["1", "2", "10"],
                         "own_test_split": True, "channels": 1}
    assert data.sample_shape == (151, 1) and data.num_classes == 3
    # the test split: every series of the test file, in file order, normalised one by one, labels by the training file's classes
    x_test, test_labels = read_ucr(test_path, "timeseries_file")
    assert len(data.x_test) == 30
    np.testing.assert_allclose(data.x_test[:, :, 0].numpy(), standardize(x_test), atol=1e-6)
    assert data.y_test.tolist() == [{"1": 0, "2": 1, "10": 2}[lab] for lab in test_labels]
    assert data.y_test[:5].tolist() == [2, 2, 0, 1, 0]
    # train and validation: a stratified partition of the training file, split.val of it for validation
    x_train, train_labels = read_ucr(train_path, "timeseries_file")
    assert (len(data.x_train), len(data.x_val)) == (36, 9)
    assert np.bincount(data.y_val.numpy()).tolist() == [3, 3, 3]
    assert _rows(np.concatenate([data.x_train.numpy(), data.x_val.numpy()])) == _rows(standardize(x_train).astype(np.float32))
    by_row = {tuple(row): {"1": 0, "2": 1, "10": 2}[lab] for row, lab in zip(standardize(x_train).astype(np.float32).tolist(),
                                                                                   train_labels, strict=True)}
    for split_x, split_y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        assert [by_row[tuple(row)] for row in split_x[:, :, 0].tolist()] == split_y.tolist()
    check_dataset(dataset, given, SplitSpec(val=0.2, test=0.5, seed=3))
    # without normalisation the test split holds the file's values as written
    raw = dataset.load({**given, "normalize": False}, SplitSpec(val=0.2))
    np.testing.assert_array_equal(raw.x_test[:, :, 0].numpy(), x_test.astype(np.float32))


def test_without_a_test_file_the_training_file_is_split_three_ways(tmp_path):
    train_path, _ = _ucr_pair(tmp_path)
    data = DATASETS.get("timeseries_file").load(options("timeseries_file", path=str(train_path)), SplitSpec(val=0.2, test=0.2))
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (27, 9, 9) and "test_source" not in data.info


@pytest.mark.parametrize(("test_file", "fragments"), [
    (None, ["Pair_TEST.tsv: no such file", "set task.options.test_path"]),
    ("7", ["Pair_TEST.tsv: classes '7' do not occur in the training data", "Pair_TRAIN.tsv",
           "fix the labels or remove those samples"]),
])
def test_a_test_file_that_does_not_match_the_training_file(tmp_path, test_file, fragments):
    train_path, test_path = _ucr_pair(tmp_path)
    test_path.unlink()
    if test_file == "7":
        _write_ucr(test_path, ["1", "7", "2"], np.arange(3 * 151, dtype=float).reshape(3, 151))
    with pytest.raises(BadInput) as info:
        DATASETS.get("timeseries_file").load(options("timeseries_file", path=str(train_path), test_path=str(test_path)), SplitSpec())
    message = str(info.value)
    assert message.startswith(f"dataset 'timeseries_file': {test_path}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("split", [None, {"folds": 3}], ids=["holdout", "folds"])
def test_a_search_on_a_train_test_pair_through_the_cli(tmp_path, split):
    """The shipped time-series space, made small, on a _TRAIN/_TEST pair of series whose length (151, a prime)
    no patch of the space divides: trials are tested on exactly the test file, with or without cross-validation."""
    from conftest import make_doc

    from iasf_search.cli import main

    train_path, test_path = _ucr_pair(tmp_path, length=151, train=60, test=30)
    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "search_spaces" / "timeseries.yaml").read_text(encoding="utf-8"))
    changes = {"task.dataset": "timeseries_file", "task.options": {"path": str(train_path), "test_path": str(test_path)},
               "manifold.nodes": 1, "manifold.width": 16, "training.epochs": 1, "training.min_steps": 0,
               "search.sampler": "random", "search.pruner": "none", "search.enqueue": []}
    doc = make_doc({**changes, **({"task.split": split} if split else {})}, drop=["auxiliary", "costs"], base=shipped)
    space = tmp_path / "pair.yaml"
    space.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'pair.db'}"
    assert main(["--space", str(space), "--storage", url, "--trials", "1", "-q"]) == 0
    study = optuna.load_study(study_name="timeseries", storage=url)
    data = study.user_attrs["data"]
    assert data["source"] == str(train_path) and data["test_source"] == str(test_path)
    assert (data["train"] + data["val"], data["val"], data["test"]) == (60, 9, 30)  # split.val 0.15 of the training file
    assert data["sample_shape"] == [151, 1] and data["num_classes"] == 3
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    correct = trial.user_attrs["test_accuracy"] * 30
    assert abs(correct - round(correct)) < 1e-6  # measured on the 30 series of the test file
    if split:  # three folds of all 60 training series: 20 validation series each
        assert data["cross_validation"] == {"folds": 3, "repeats": 1}
        assert all(abs(a * 20 - round(a * 20)) < 1e-6 for a in trial.user_attrs["fold_val_accuracies"])


# -- end to end: unequal multivariate series with missing values, through the CLI and the Python API -------------


def _unequal_series(seed: int = 0, n: int = 60) -> tuple[list[np.ndarray], list[str]]:
    """``n`` series of 2 channels and 12 to 24 steps; class "up" rises, "down" falls; a few values missing."""
    rng = np.random.default_rng(seed)
    series, labels = [], []
    for i in range(n):
        length = 12 + (i * 5) % 13
        slope = 1.0 if i % 2 else -1.0
        values = slope * np.linspace(0, 2, length)[None, :] + 0.3 * rng.normal(size=(2, length))
        if i % 7 == 0:
            values[1, length // 2] = np.nan
        series.append(values)
        labels.append("up" if i % 2 else "down")
    return series, labels


def test_unequal_multivariate_series_search_export_and_serve_padded(tmp_path, capsys, monkeypatch):
    """A .npz of unequal, 2-channel series (written by save_series) searched through the CLI: the study records the
    padding, an export's model.json too, and the exported model and its ONNX file give the same logits on padded input."""
    onnxruntime = pytest.importorskip("onnxruntime")
    import torch
    from conftest import make_doc, run

    import iasf_search

    monkeypatch.chdir(tmp_path)
    x, y = _unequal_series()
    x_test, y_test = _unequal_series(seed=1, n=20)
    save_series("series.npz", x, y, x_test=x_test, y_test=y_test)
    doc = make_doc({"task": {"dataset": "timeseries_file", "options": {"path": "series.npz"}, "split": {"val": 0.25}},
                    "stem": {"patch": 2, "overlap": True, "position": "learned"},
                    "manifold.ops": {"attention": {"heads": 2, "pattern": ["full", "local"], "window": 3}, "conv": {"kernel": 3},
                                     "pool": {"kind": ["avg", "max"]}},
                    "manifold.readouts": ["mean", "max", "class_token"], "training.epochs": 3, "training.lr": 0.01})
    Path("series.yaml").write_text(yaml.safe_dump(doc))
    rc, out, err = run(capsys, "--space", "series.yaml", "--trials", "4")
    assert rc == 0, err
    assert "missing values imputed" in err
    study = optuna.load_study(study_name="tiny", storage="sqlite:///runs/tiny.db")
    assert study.user_attrs["data"]["padded"] is True and study.user_attrs["data"]["sample_shape"] == [24, 2]
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 4
    rc, _, err = run(capsys, "export", "--space", "series.yaml", "--out", "exported", "--onnx")
    assert rc == 0, err
    assert json.loads(Path("exported/model.json").read_text())["padded"] is True
    model = iasf_search.load_model("exported")
    batch = torch.full((3, 24, 2), float("nan"))
    for i, length in enumerate((24, 13, 5)):
        batch[i, :length] = torch.randn(length, 2)
    with torch.no_grad():
        logits = model(batch)
    assert torch.isfinite(logits).all()
    session = onnxruntime.InferenceSession("exported/model.onnx")
    np.testing.assert_allclose(session.run(None, {"x": batch.numpy()})[0], logits.numpy(), atol=1e-4)


def test_series_in_memory_through_the_python_api(tmp_path, monkeypatch):
    """The documented recipe: save_series, then a space whose task reads the file, then run_search."""
    from conftest import make_doc

    import iasf_search

    monkeypatch.chdir(tmp_path)
    x, y = _unequal_series()
    iasf_search.save_series("data/mine.npz", x, np.array(y))
    doc = make_doc({"task": {"dataset": "timeseries_file", "options": {"path": "data/mine.npz", "lengths": "resample"}},
                    "stem": {"patch": 2, "overlap": False, "position": "learned"}})
    Path("mine.yaml").write_text(yaml.safe_dump(doc))
    result = iasf_search.run_search(iasf_search.open_session("mine.yaml"), trials=2)
    assert result.study.user_attrs["data"]["sample_shape"] == [24, 2] and "padded" not in result.study.user_attrs["data"]
    assert len(result.study.trials) == 2 and all(t.state.name == "COMPLETE" for t in result.study.trials)


def test_imputation_choices(tmp_path):
    """``zero`` fills a missing value with the normalised series' mean (0); ``interpolate`` fills a channel without any
    value with zeros; both count what they filled."""
    x = [np.array([[1.0, np.nan, 3.0, 5.0], [np.nan] * 4]), np.array([[2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 1.0, 2.0]])] * 12
    path = save_series(tmp_path / "gaps.npz", x, ["a", "b"] * 12)
    dataset = DATASETS.get("timeseries_file")
    for how in ("zero", "interpolate"):
        with pytest.warns(UserWarning, match=rf"60 missing values imputed \(task.options.impute: {how}\)"):
            data = dataset.load(options("timeseries_file", path=str(path), impute=how), SplitSpec())
        everything = np.concatenate([data.x_train, data.x_val, data.x_test])
        gappy = everything[np.concatenate([data.y_train, data.y_val, data.y_test]) == 0]  # class "a"
        assert len(gappy) == 12 and np.all(gappy[:, :, 1] == 0.0)  # the channel without a value: zeros
        known = standardize(np.array([[1.0, 3.0, 5.0]]))[0]  # normalised over the values there are, then filled
        np.testing.assert_allclose(gappy[:, 1, 0], {"zero": 0.0, "interpolate": (known[0] + known[1]) / 2}[how], atol=1e-6)
        assert np.isfinite(everything).all()


# -- the file formats through the dataset ------------------------------------------------------------------------


def load_file(path: Path, split: SplitSpec | None = None, **given):
    dataset = DATASETS.get("timeseries_file")
    options = {**{k: p.default for k, p in dataset.params.items()}, "path": str(path), **given}
    data = dataset.load(options, split or SplitSpec(val=0.25, test=0.25))
    check_task("timeseries_file", data)
    return data


def ts_text(rows: list[list[list[float | None]]], labels: list[str], *, equal: bool, missing: bool) -> str:
    """A .ts file of ``rows[i][channel]`` values (None: missing, written ``?``)."""
    channels = len(rows[0])
    header = ["@problemName toy", "@timeStamps false", f"@missing {str(missing).lower()}",
              f"@univariate {str(channels == 1).lower()}", *([f"@dimensions {channels}"] if channels > 1 else []),
              f"@equalLength {str(equal).lower()}", *([f"@seriesLength {len(rows[0][0])}"] if equal else []),
              f"@classLabel true {' '.join(sorted(set(labels)))}", "@data"]
    lines = [":".join(",".join("?" if v is None else f"{v:g}" for v in channel) for channel in row) + f":{label}"
             for row, label in zip(rows, labels, strict=True)]
    return "\n".join(header + lines) + "\n"


def toy_rows(n: int = 24, channels: int = 3, lengths=(10,), seed: int = 0) -> tuple[list, list[str]]:
    """``n`` series of ``channels`` channels, lengths cycling through ``lengths``; the class sets the level of channel 0."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for i in range(n):
        length = lengths[i % len(lengths)]
        values = rng.normal(size=(channels, length)) + np.linspace(0, 1 + i % 2, length)[None, :]
        rows.append(values.round(4).tolist())
        labels.append("ab"[i % 2])
    return rows, labels


@pytest.fixture
def aeon():
    return pytest.importorskip("aeon", reason="the timeseries extra (aeon) is not installed")


def test_a_multivariate_equal_length_ts_file(tmp_path, aeon):
    rows, labels = toy_rows()
    path = tmp_path / "toy_TRAIN.ts"
    path.write_text(ts_text(rows, labels, equal=True, missing=False))
    data = load_file(path)
    assert data.sample_shape == (10, 3) and not data.padded and data.info["channels"] == 3 and data.info["classes"] == ["a", "b"]
    everything = np.concatenate([data.x_train, data.x_val, data.x_test])  # (n, T, C)
    np.testing.assert_allclose(everything.mean(axis=1), 0, atol=1e-5)  # each series and channel z-normalised
    np.testing.assert_allclose(everything.std(axis=1), 1, atol=1e-4)


def test_an_unequal_length_ts_file_with_missing_values_is_padded_and_imputed(tmp_path, aeon):
    rows, labels = toy_rows(lengths=(10, 6, 8))
    rows[4][1][2] = None  # two missing values, inside series
    rows[5][0][0] = None
    path = tmp_path / "toy_TRAIN.ts"
    path.write_text(ts_text(rows, labels, equal=False, missing=True))
    with pytest.warns(UserWarning, match=rf"{path}: 2 missing values imputed \(task.options.impute: interpolate\)"):
        data = load_file(path, normalize=False)
    assert data.sample_shape == (10, 3) and data.padded
    assert data.info["lengths"] == {"shortest": 6, "longest": 10, "made": "pad"}
    everything = np.concatenate([data.x_train, data.x_val, data.x_test])
    real_steps = sorted((~np.isnan(everything).all(axis=2)).sum(axis=1).tolist())
    assert real_steps == sorted([10, 6, 8] * 8)  # each series keeps its own length; NaN after it
    by_first_value = {round(float(s[0, 0]), 4): s for s in everything}
    series = by_first_value[round(rows[4][0][0], 4)]
    assert series[2, 1] == pytest.approx((rows[4][1][1] + rows[4][1][3]) / 2, abs=1e-4)  # interpolated


@pytest.mark.parametrize(("lengths", "shape"), [("resample", (10, 2)), ("truncate", (6, 2))])
def test_unequal_lengths_resampled_or_truncated(tmp_path, aeon, lengths, shape):
    rows, labels = toy_rows(channels=2, lengths=(10, 6))
    path = tmp_path / "toy.ts"
    path.write_text(ts_text(rows, labels, equal=False, missing=False))
    data = load_file(path, lengths=lengths, normalize=False)
    assert data.sample_shape == shape and not data.padded and np.isfinite(data.x_train.numpy()).all()
    everything = {round(float(s[0, 1]), 4): s for s in np.concatenate([data.x_train, data.x_val, data.x_test])}
    short = np.array(rows[1])  # 6 steps
    got = everything[round(float(short[1, 0]), 4)]
    if lengths == "truncate":
        np.testing.assert_allclose(got.T, short, atol=1e-4)
    else:  # linear interpolation of 6 steps onto 10: the ends stay, the middle is interpolated
        np.testing.assert_allclose(got.T, [np.interp(np.linspace(0, 1, 10), np.linspace(0, 1, 6), c) for c in short], atol=1e-4)


def test_an_arff_file(tmp_path, aeon):
    rows, labels = toy_rows(channels=1)
    lines = ["@relation toy", *[f"@attribute t{i} numeric" for i in range(10)], "@attribute target {a,b}", "@data"]
    lines += [",".join(f"{v:g}" for v in row[0]) + f",{label}" for row, label in zip(rows, labels, strict=True)]
    path = tmp_path / "toy.arff"
    path.write_text("\n".join(lines) + "\n")
    data = load_file(path, normalize=False)
    assert data.sample_shape == (10, 1) and data.num_classes == 2
    firsts = np.concatenate([data.x_train, data.x_val, data.x_test])[:, 0, 0].tolist()
    assert sorted(round(v, 4) for v in firsts) == sorted(round(r[0][0], 4) for r in rows)


def test_the_ucr_text_layout_pads_with_trailing_nan_and_imputes_inner_nan(tmp_path):
    # series of 4, 5 or 6 values, each line padded to 6 with NaN (the archive's padding); series 0 misses its third value
    rows = [f"{i % 2}\t" + "\t".join([f"{i}", "2", "NaN" if i == 0 else "3", "4", *(["5"] * (i % 3)), *(["NaN"] * (2 - i % 3))])
            for i in range(24)]
    path = tmp_path / "toy_TRAIN.tsv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match="1 missing values imputed"):
        data = load_file(path, normalize=False)
    assert data.sample_shape == (6, 1) and data.padded
    everything = {int(s[0, 0]): s[:, 0] for s in np.concatenate([data.x_train, data.x_val, data.x_test])}
    np.testing.assert_array_equal(everything[0], [0, 2, 3, 4, np.nan, np.nan])  # interpolated between 2 and 4
    np.testing.assert_array_equal(everything[5], [5, 2, 3, 4, 5, 5])


def test_an_npz_file_with_its_own_test_set(tmp_path):
    rng = np.random.default_rng(1)
    x = [rng.normal(size=(2, n)) for n in [5, 8] * 12]
    path = save_series(tmp_path / "mine.npz", x, ["a", "b"] * 12, x_test=rng.normal(size=(6, 2, 8)), y_test=["b", "a"] * 3)
    data = load_file(path, SplitSpec(val=0.25))
    assert data.sample_shape == (8, 2) and data.padded and len(data.x_test) == 6 and data.y_test.tolist() == [1, 0] * 3
    assert data.info["own_test_split"]
    with pytest.raises(BadInput, match="holds its own test set, and task.options.test_path names another; remove test_path"):
        load_file(path, test_path=str(path))


ARCHIVE = {"BasicMotions": ((100, 6), False, 40, 40, 4), "JapaneseVowels": ((29, 12), True, 270, 370, 9),
           "PickupGestureWiimoteZ": ((361, 1), True, 50, 50, 10), "ACSF1": ((1460, 1), False, 100, 100, 10)}


@pytest.mark.parametrize("name", list(ARCHIVE))
def test_the_archive_datasets_aeon_ships_load_from_their_own_files(aeon, name):
    folder = Path(aeon.__file__).parent / "datasets" / "data" / name
    shape, padded, train, test, classes = ARCHIVE[name]
    data = load_file(folder / f"{name}_TRAIN.ts", SplitSpec(val=0.15), test_path=str(folder / f"{name}_TEST.ts"))
    assert (data.sample_shape, data.padded, len(data.x_train) + len(data.x_val), len(data.x_test), data.num_classes) == \
        (shape, padded, train, test, classes)
