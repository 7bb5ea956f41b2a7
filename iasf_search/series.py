"""Time series in and out: the archives' file formats, and arrays held in Python.

**Files** (:func:`read_file`), each read into :class:`SeriesSet` objects: series ``(C, T_i)`` (NaN: a missing value)
with string labels; the format comes from the extension or is named (:func:`file_format`):

* ``ucr`` (``.tsv``, ``.csv``, ``.txt`` and any other name): the UCR archive's text layout, one series per
  line, the label first, then the values, comma-, tab- or whitespace-separated; univariate. ``NaN`` (or ``?``)
  at the end of a line is padding, as the UCR 2018 archive pads its unequal-length datasets (the series ends
  before it); anywhere else it is a missing value. Read here, no extra needed.
* ``ts`` (``.ts``): sktime's and aeon's format, univariate or multivariate, equal or unequal lengths, ``?``
  for a missing value (the UEA and UCR archives' ``.ts`` releases). Read with aeon's ``load_from_ts_file``.
* ``arff`` (``.arff``): Weka's format as the archives use it (multivariate series as relational
  attributes). Read with aeon's ``load_from_arff_file``.
* ``npz`` (``.npz``): a file :func:`save_series` wrote, optionally with a test set of its own.

aeon is an optional dependency: ``pip install 'iasf-search[timeseries]'``.

**Arrays.** :func:`save_series` writes NumPy arrays in the aeon/sktime/tslearn conventions to an ``.npz``
file that the ``timeseries_file`` dataset reads (``task.options.path``), so a user with data in memory
writes no plugin, and workers, ``report``, ``export`` and a resumed search read the very same samples.
Accepted series ``x``:

* an array ``(n, C, T)``: ``n`` series of ``C`` channels and ``T`` steps (aeon's and sktime's ``numpy3D``);
* an array ``(n, T)``: ``n`` univariate series;
* a list of ``(C, T_i)`` or ``(T_i,)`` arrays: series of different lengths (aeon's unequal-length collections).

NaN marks a missing value (``task.options.impute`` decides what becomes of it). Labels may be any values;
they are kept as strings, and classes are ordered as for every file (shorter first, then by name).

The ``.npz`` file (read without pickle): ``values`` ``(sum of T_i, C)`` float64, the series one after another,
steps along axis 0; ``lengths`` ``(n,)`` int64; ``labels`` ``(n,)`` str; and the same three prefixed ``test_``
for the dataset's own test set, when given.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iasf_search.errors import BadInput
from iasf_search.files import write_atomically

TEST_PREFIX = "test_"
"""The prefix of the test set's arrays in a series file."""
FORMATS = ("auto", "ucr", "ts", "arff", "npz")
"""``task.options.format`` values; ``auto`` picks by the file's extension."""
MISSING = ("nan", "?")
"""Values a UCR-layout line may hold for "no value" (case-insensitive)."""
EXTRA = "pip install 'iasf-search[timeseries]'"


@dataclass
class SeriesSet:
    """Labelled series as read from a file or given in memory: ``series[i]`` is ``(C, T_i)`` float64 (NaN: a
    missing value), ``labels[i]`` its class as a string; every series has the same ``C``."""

    series: list[np.ndarray]
    labels: list[str]

    @property
    def channels(self) -> int:
        return self.series[0].shape[0]


def as_series(x: Any, *, what: str = "x") -> list[np.ndarray]:
    """``x`` (see the module's docstring) as a list of ``(C, T_i)`` float64 arrays.

    :raises BadInput: ``x`` is none of the accepted shapes, holds no series, a series has no step, or the
        series have different numbers of channels (``what`` names the argument in the message).
    """
    if isinstance(x, np.ndarray) and x.dtype != object:
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3:
            raise BadInput(f"{what}: an array of shape {x.shape}; give (n, C, T), (n, T) or a list of (C, T_i) arrays")
        items = list(x)
    elif isinstance(x, (Sequence, np.ndarray)):
        items = list(x)
    else:
        raise BadInput(f"{what}: a {type(x).__name__}; give an array (n, C, T) or (n, T), or a list of (C, T_i) arrays")
    out = []
    for i, item in enumerate(items):
        try:
            a = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError):
            raise BadInput(f"{what}[{i}]: not an array of numbers") from None
        a = a[None, :] if a.ndim == 1 else a
        if a.ndim != 2 or a.shape[1] == 0:
            raise BadInput(f"{what}[{i}]: shape {np.shape(item)}; each series must be (C, T) or (T,) with T >= 1")
        out.append(a)
    if not out:
        raise BadInput(f"{what}: no series")
    channels = {a.shape[0] for a in out}
    if len(channels) > 1:
        raise BadInput(f"{what}: series with {sorted(channels)} channels; every series must have the same number of channels")
    return out


def _labels(y: Any, n: int, what: str) -> list[str]:
    labels = [str(v) for v in np.asarray(y).reshape(-1).tolist()]
    if len(labels) != n:
        raise BadInput(f"{what}: {len(labels)} labels for {n} series; give one label per series")
    return labels


def save_series(path: str | os.PathLike, x: Any, y: Any, *, x_test: Any = None, y_test: Any = None) -> Path:
    """Write labelled series (and, optionally, the dataset's own test set) to ``path`` (an ``.npz`` file) for
    ``task: {dataset: timeseries_file, options: {path: ...}}``; returns the path. The file is written whole or
    not at all (a temporary file, then a rename).

    :raises BadInput: unusable arrays (see :func:`as_series`), labels that do not match them, a test set
        with other channels, or one of ``x_test`` / ``y_test`` without the other.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise BadInput(f"{path}: series files end in .npz; name it {path.with_suffix('.npz').name}")
    if (x_test is None) != (y_test is None):
        raise BadInput("save_series: give both x_test and y_test, or neither")
    sets = {"": SeriesSet(series := as_series(x), _labels(y, len(series), "y"))}
    if x_test is not None:
        test = as_series(x_test, what="x_test")
        sets[TEST_PREFIX] = SeriesSet(test, _labels(y_test, len(test), "y_test"))
        if sets[TEST_PREFIX].channels != sets[""].channels:
            raise BadInput(f"x_test: series of {sets[TEST_PREFIX].channels} channels, x has {sets[''].channels}; "
                           f"the test set must have the training set's channels")
    arrays: dict[str, np.ndarray] = {}
    for prefix, s in sets.items():
        arrays[prefix + "values"] = np.concatenate([a.T for a in s.series])  # (sum T_i, C)
        arrays[prefix + "lengths"] = np.array([a.shape[1] for a in s.series], dtype=np.int64)
        arrays[prefix + "labels"] = np.array(s.labels, dtype=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return write_atomically(path, buffer.getvalue())


def read_series_file(path: Path, *, dataset: str, option: str = "path") -> tuple[SeriesSet, SeriesSet | None]:
    """``(series, test series or None)`` from a file :func:`save_series` wrote.

    :raises BadInput: naming the file (and ``task.options.<option>``) when it is not such a file.
    """
    where = f"dataset '{dataset}': {path}"
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # a damaged file fails in numpy, zipfile or zlib in many ways (zlib.error, KeyError, ...)
        raise BadInput(f"{where}: not a series file ({type(exc).__name__}: {str(exc)[:100]}); "
                       f"write it with iasf_search.save_series or fix task.options.{option}") from None
    out: list[SeriesSet | None] = []
    for prefix in ("", TEST_PREFIX):
        keys = [prefix + k for k in ("values", "lengths", "labels")]
        if not any(k in arrays for k in keys):
            out.append(None)
            continue
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise BadInput(f"{where}: has no {', '.join(missing)}; write it with iasf_search.save_series")
        values, lengths, labels = (arrays[k] for k in keys)
        if values.ndim != 2 or lengths.ndim != 1 or len(labels) != len(lengths) or (lengths < 1).any() \
                or lengths.sum() != len(values) or not np.issubdtype(values.dtype, np.number):
            raise BadInput(f"{where}: its {', '.join(keys)} do not fit together; write it with iasf_search.save_series")
        series = [a.T.astype(np.float64) for a in np.split(values, np.cumsum(lengths)[:-1])]
        out.append(SeriesSet(series, [str(v) for v in labels.tolist()]))
    if out[0] is None:
        raise BadInput(f"{where}: holds no series (values, lengths, labels); write it with iasf_search.save_series")
    return out[0], out[1]


def file_format(path: Path, given: str) -> str:
    """The format to read ``path`` in: ``given``, or for ``auto`` its extension's (``ucr`` for any unknown one)."""
    if given != "auto":
        return given
    return {".ts": "ts", ".arff": "arff", ".npz": "npz"}.get(path.suffix.lower(), "ucr")


def read_file(path: Path, fmt: str, *, dataset: str, option: str) -> tuple[SeriesSet, SeriesSet | None]:
    """``(series, test series or None)`` of the file ``path`` (``task.options.<option>``) in format ``fmt``
    (see :func:`file_format`); only an ``npz`` file can hold a test set of its own.

    :raises BadInput: naming the file and what is wrong with it (or the extra that reads it).
    """
    if not path.is_file():
        raise BadInput(f"dataset '{dataset}': {path}: no such file; set task.options.{option} to a local time-series file "
                       f"(.tsv/.csv/.txt in the UCR layout, .ts, .arff or .npz)")
    if fmt == "npz":
        return read_series_file(path, dataset=dataset, option=option)
    if fmt == "ucr":
        return read_ucr(path, dataset), None
    return read_with_aeon(path, fmt, dataset=dataset), None


def read_ucr(path: Path, dataset: str) -> SeriesSet:
    """A UCR-layout text file (see the module's docstring)."""
    series, labels = [], []
    try:
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                fields = line.replace(",", " ").split()
                if not fields:
                    continue
                try:
                    values = np.array([np.nan if v.lower() in MISSING else float(v) for v in fields[1:]], dtype=np.float64)
                except ValueError:
                    raise BadInput(f"dataset '{dataset}': {path}: line {i}: a value is not a number") from None
                if np.isinf(values).any() or (np.abs(values[np.isfinite(values)]) > np.finfo(np.float32).max).any():
                    raise BadInput(f"dataset '{dataset}': {path}: line {i}: holds infinite values; clean the data")
                real = np.flatnonzero(~np.isnan(values))
                if not len(real):
                    raise BadInput(f"dataset '{dataset}': {path}: line {i}: the series has no value (all missing); "
                                   f"remove the line")
                series.append(values[None, : real[-1] + 1])  # trailing NaN: the archive's padding
                labels.append(fields[0])
    except UnicodeDecodeError as exc:
        raise BadInput(f"dataset '{dataset}': {path}: not a text file ({exc.reason} at byte {exc.start}); "
                       f"give a UCR-layout text file or set task.options.format") from None
    if not series:
        raise BadInput(f"dataset '{dataset}': {path}: no series found (one per line: label, then values)")
    return SeriesSet(series, labels)


def read_with_aeon(path: Path, fmt: str, *, dataset: str) -> SeriesSet:
    """A ``.ts`` or ``.arff`` file through aeon's readers; the labels a ``.ts`` header declares are checked."""
    try:
        from aeon.datasets import load_from_arff_file, load_from_ts_file
    except ImportError:
        raise BadInput(f"dataset '{dataset}': {path}: reading .{fmt} files needs aeon: {EXTRA}") from None
    meta: dict[str, Any] = {}
    try:
        if fmt == "ts":
            x, y, meta = load_from_ts_file(str(path), return_meta_data=True)
        else:
            x, y = load_from_arff_file(str(path))
    except UnicodeDecodeError as exc:
        raise BadInput(f"dataset '{dataset}': {path}: not a text file ({exc.reason} at byte {exc.start}); "
                       f"give a .{fmt} file or set task.options.format") from None
    except Exception as exc:  # aeon raises OSError, ValueError, IndexError ... for a malformed file
        message = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise BadInput(f"dataset '{dataset}': {path}: not a readable .{fmt} file: {message}") from None
    if y is None or len(y) != len(x):
        raise BadInput(f"dataset '{dataset}': {path}: no class labels (@classLabel true, a label after each series)")
    labels = [str(v) for v in np.asarray(y).tolist()]
    declared = [str(v) for v in meta.get("class_values") or []]
    undeclared = sorted(set(labels) - set(declared)) if declared else []
    if undeclared:
        raise BadInput(f"dataset '{dataset}': {path}: labels {undeclared[:5]} are not among those its header declares "
                       f"(@classLabel true {' '.join(declared)}); fix the header or the labels")
    series = as_series(x, what=str(path))
    if meta.get("univariate") and series[0].shape[0] > 1:
        raise BadInput(f"dataset '{dataset}': {path}: its header says @univariate true, but its series have "
                       f"{series[0].shape[0]} channels; fix the header (@univariate false, @dimensions {series[0].shape[0]})")
    empty = [i for i, s in enumerate(series) if np.isnan(s).all()]
    if empty:
        raise BadInput(f"dataset '{dataset}': {path}: series {empty[0] + 1} has no value (all missing); remove it")
    return SeriesSet(series, labels)
