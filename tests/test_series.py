"""Time series in and out (iasf_search/series.py): the array conventions accepted, the .npz file save_series writes
and read_series_file reads back, and their errors; formats by extension; the extra aeon's formats need. (Every
format read through the timeseries_file dataset: tests/plugins/test_timeseries.py.)"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from iasf_search.errors import BadInput
from iasf_search.series import as_series, file_format, read_file, read_series_file, save_series


@pytest.mark.parametrize(("x", "shapes"), [
    (np.zeros((3, 2, 5)), [(2, 5)] * 3),  # (n, C, T)
    (np.zeros((3, 5)), [(1, 5)] * 3),  # (n, T)
    ([np.zeros((2, 4)), np.zeros((2, 7))], [(2, 4), (2, 7)]),  # (C, T_i)
    ([np.zeros(4), [1.0, 2.0]], [(1, 4), (1, 2)]),  # (T_i,)
])
def test_the_accepted_conventions(x, shapes):
    series = as_series(x)
    assert [s.shape for s in series] == shapes and all(s.dtype == np.float64 for s in series)


@pytest.mark.parametrize(("x", "message"), [
    (np.zeros((2, 2, 2, 2)), "x: an array of shape (2, 2, 2, 2); give (n, C, T), (n, T)"),
    ([np.zeros((2, 4)), np.zeros((3, 4))], "x: series with [2, 3] channels"),
    ([np.zeros((2, 0))], "x[0]: shape (2, 0); each series must be (C, T) or (T,) with T >= 1"),
    ([["a", "b"]], "x[0]: not an array of numbers"),
    ([], "x: no series"),
    ("abc", "x[0]: not an array of numbers"),
    (3.0, "x: a float; give an array"),
])
def test_what_is_refused(x, message):
    with pytest.raises(BadInput) as info:
        as_series(x)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_saved_file_reads_back_series_labels_and_test_set(tmp_path):
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(3, n)) for n in (5, 9, 2)]
    x[1][0, 4] = np.nan  # a missing value is kept as NaN
    x_test = rng.normal(size=(2, 3, 6))
    path = save_series(tmp_path / "sub" / "data.npz", x, np.array([1, 2, 1]), x_test=x_test, y_test=["2", "1"])
    assert path == tmp_path / "sub" / "data.npz" and not list(path.parent.glob("*.partial"))
    train, test = read_series_file(path, dataset="timeseries_file")
    assert train.labels == ["1", "2", "1"] and test.labels == ["2", "1"]
    for got, want in zip(train.series + test.series, x + list(x_test), strict=True):
        np.testing.assert_array_equal(got, want)
    only, none = read_series_file(save_series(tmp_path / "train.npz", x, [0, 1, 0]), dataset="d")
    assert none is None and len(only.series) == 3


@pytest.mark.parametrize(("call", "message"), [
    (lambda p: save_series(p / "d.csv", np.zeros((2, 3)), [0, 1]), "series files end in .npz; name it d.npz"),
    (lambda p: save_series(p / "d.npz", np.zeros((2, 3)), [0, 1, 1]), "y: 3 labels for 2 series"),
    (lambda p: save_series(p / "d.npz", np.zeros((2, 3)), [0, 1], x_test=np.zeros((1, 3))), "give both x_test and y_test"),
    (lambda p: save_series(p / "d.npz", np.zeros((2, 2, 3)), [0, 1], x_test=np.zeros((1, 3)), y_test=[0]),
     "x_test: series of 1 channels, x has 2"),
])
def test_save_series_refuses_what_would_not_load(tmp_path, call, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(tmp_path)
    assert not (tmp_path / "d.npz").exists()


@pytest.mark.parametrize(("arrays", "message"), [
    ({"values": np.zeros((4, 1)), "lengths": np.array([2, 3]), "labels": np.array(["a", "b"])}, "do not fit together"),
    ({"values": np.zeros((4, 1)), "labels": np.array(["a", "b"])}, "has no lengths"),
    ({"other": np.zeros(2)}, "holds no series"),
])
def test_a_file_that_is_not_a_series_file(tmp_path: Path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(BadInput, match=f"dataset 'ts': {path}: .*{message}"):
        read_series_file(path, dataset="ts")


def test_formats_by_extension():
    assert [file_format(Path(p), "auto") for p in ("a.ts", "a.ARFF", "a.npz", "a.tsv", "a.csv", "a_TRAIN")] == \
        ["ts", "arff", "npz", "ucr", "ucr", "ucr"]
    assert file_format(Path("a.txt"), "ts") == "ts"


def test_without_aeon_a_ts_file_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)  # import fails as if aeon were not installed
    path = tmp_path / "toy.ts"
    path.write_text("@data\n")
    with pytest.raises(BadInput, match=r"toy.ts: reading .ts files needs aeon: pip install 'iasf-search\[timeseries\]'"):
        read_file(path, "ts", dataset="timeseries_file", option="path")
