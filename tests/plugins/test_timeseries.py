"""Time-series datasets (plugins/timeseries.py): UCR-layout files and their errors, a _TRAIN/_TEST pair (the test
split is the test file), the generated shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from iasf_search.components import SplitSpec
from iasf_search.data import check_task
from iasf_search.errors import BadInput
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.timeseries import SHAPES, generate_shapes, read_ucr, standardize
from iasf_search.testing import check_dataset

DATASETS = load_components(autoload=False).datasets


def options(name, **given):
    return {**{k: p.default for k, p in DATASETS.get(name).params.items()}, **given}


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
    ("1,0.1,0.2\n2,0.3\n", "line 2 has 1 values, line 1 has 2"),
    ("1,0.1,abc\n", "line 1: a value is not a number"),
    ("1,0.1,nan\n2,0.2,0.3\n", "NaN or infinite"),
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
                         "own_test_split": True}
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
    np.testing.assert_array_equal(raw.x_test[:, :, 0].numpy(), x_test)


def test_without_a_test_file_the_training_file_is_split_three_ways(tmp_path):
    train_path, _ = _ucr_pair(tmp_path)
    data = DATASETS.get("timeseries_file").load(options("timeseries_file", path=str(train_path)), SplitSpec(val=0.2, test=0.2))
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (27, 9, 9) and "test_source" not in data.info


@pytest.mark.parametrize(("test_file", "fragments"), [
    (None, ["Pair_TEST.tsv: no such file", "set task.options.test_path"]),
    ("150", ["Pair_TEST.tsv: series of 150 values, but those of the training file", "Pair_TRAIN.tsv have 151",
             "task.options.test_path must be the test file of the same dataset"]),
    ("7", ["Pair_TEST.tsv: classes '7' do not occur in the training data", "Pair_TRAIN.tsv",
           "fix the labels or remove those samples"]),
])
def test_a_test_file_that_does_not_match_the_training_file(tmp_path, test_file, fragments):
    train_path, test_path = _ucr_pair(tmp_path)
    test_path.unlink()
    if test_file == "150":
        _write_ucr(test_path, ["1", "2"], np.ones((2, 150)))
    elif test_file == "7":
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
