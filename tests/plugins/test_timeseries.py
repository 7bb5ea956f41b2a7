"""Time-series datasets (plugins/timeseries.py): UCR-layout files and their errors, the generated shapes."""

from __future__ import annotations

import numpy as np
import pytest

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
