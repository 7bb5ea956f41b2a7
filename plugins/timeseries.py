"""Time-series classification, offline: a local file in the UCR archive layout (``timeseries_file``)
or a generated example (``timeseries_shapes``). Samples are ``(T, 1)`` for the ``sequence`` stem.

UCR layout: one series per row, the class label in the first column, the values after it;
comma-, tab- or whitespace-separated. A dataset that comes as a ``NAME_TRAIN`` / ``NAME_TEST`` pair
is read with ``path`` (training file) and ``test_path``: the test split is then the test file as it
is, and validation is drawn from the training file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from iasf_search import hookimpl
from iasf_search.components import Dataset, SplitSpec, TaskData
from iasf_search.data import class_indices, split_arrays
from iasf_search.errors import BadInput
from iasf_search.params import Param


def standardize(x: np.ndarray) -> np.ndarray:
    """Z-normalise each series (constant series become zeros)."""
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    return (x - mean) / np.where(std > 0, std, 1.0)


def read_ucr(path: Path, name: str, option: str = "path") -> tuple[np.ndarray, list[str]]:
    """``(values (N, T), labels)`` from a UCR-layout text file; BadInput naming the file and the problem
    (``option``: the ``task.options`` key that named the file)."""
    if not path.is_file():
        raise BadInput(f"dataset '{name}': {path}: no such file; set task.options.{option} to a local UCR-style file")
    rows, labels = [], []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.replace(",", " ").split()
            try:
                values = [float(v) for v in fields[1:]]
            except ValueError:
                raise BadInput(f"dataset '{name}': {path}: line {i}: a value is not a number") from None
            if not np.isfinite(values).all():
                raise BadInput(f"dataset '{name}': {path}: line {i}: holds NaN or infinite values; clean the data")
            if rows and len(values) != len(rows[0]):
                raise BadInput(f"dataset '{name}': {path}: line {i} has {len(values)} values, line 1 has {len(rows[0])}; "
                               f"series must have equal length")
            rows.append(values)
            labels.append(fields[0])
    if not rows or not rows[0]:
        raise BadInput(f"dataset '{name}': {path}: no series found (one per line: label, then values)")
    x = np.asarray(rows, dtype=np.float32)
    if not np.isfinite(x).all():  # a value beyond float32's range
        raise BadInput(f"dataset '{name}': {path}: holds NaN or infinite values; clean the data")
    return x, labels


def _task(x: np.ndarray, labels: list[str], split: SplitSpec, normalize: bool, info: dict[str, Any],
          test: tuple[np.ndarray, np.ndarray] | None = None) -> TaskData:
    """``test``: the dataset's own test series and their class indices (into the classes of ``labels``)."""
    classes = class_order(labels)
    y = np.array([classes.index(c) for c in labels], dtype=np.int64)
    if normalize:
        x = standardize(x)
    x_test = y_test = None
    if test is not None:
        x_test, y_test = test
        x_test = (standardize(x_test) if normalize else x_test)[:, :, None]
    return split_arrays(x[:, :, None], y, split, modality="sequence", info={**info, "classes": classes},
                        x_test=x_test, y_test=y_test)


def class_order(labels: list[str]) -> list[str]:
    """The distinct labels, shorter first, then by name: ``"2"`` before ``"10"``; a label's index is its class."""
    return sorted(set(labels), key=lambda c: (len(c), c))


class TimeSeriesFile(Dataset):
    name = "timeseries_file"
    modality = "sequence"
    description = "time-series classification from a local file in the UCR layout (label, then values, per line)"
    params = {
        "path": Param(None, str, nullable=True, help="the local file (required)"),
        "test_path": Param(None, str, nullable=True,
                           help="the dataset's own test file (e.g. NAME_TEST.tsv beside NAME_TRAIN.tsv): all its series, in "
                                "file order, are the test split; validation comes from path (split.val of it; split.test is ignored)"),
        "normalize": Param(True, bool, help="z-normalise each series"),
    }

    def load(self, options: Mapping[str, Any], split: SplitSpec) -> TaskData:
        if not options["path"]:
            raise BadInput("dataset 'timeseries_file': task.options.path is required: a local file, one series per line")
        path = Path(options["path"]).expanduser()
        x, labels = read_ucr(path, self.name)
        info: dict[str, Any] = {"source": str(path)}
        test = None
        if options.get("test_path"):
            test_path = Path(options["test_path"]).expanduser()
            x_test, test_labels = read_ucr(test_path, self.name, "test_path")
            if x_test.shape[1] != x.shape[1]:
                raise BadInput(f"dataset '{self.name}': {test_path}: series of {x_test.shape[1]} values, but those of the training "
                               f"file {path} have {x.shape[1]}; task.options.test_path must be the test file of the same dataset")
            test = x_test, class_indices(test_labels, class_order(labels), name=self.name, where=str(test_path), train=str(path))
            info["test_source"] = str(test_path)
        return _task(x, labels, split, options["normalize"], info, test)


SHAPES = ("sine", "square", "sawtooth", "chirp")


def generate_shapes(samples: int, length: int, noise: float, seed: int) -> tuple[np.ndarray, list[str]]:
    """Noisy periodic series of four shapes with random frequency, phase, amplitude and offset."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, length, dtype=np.float64)
    kinds = rng.integers(0, len(SHAPES), size=samples)
    freq = rng.uniform(2.0, 5.0, size=(samples, 1))
    phase = rng.uniform(0.0, 1.0, size=(samples, 1))
    cycles = freq * t[None, :] + phase
    waves = {
        "sine": np.sin(2 * np.pi * cycles),
        "square": np.sign(np.sin(2 * np.pi * cycles)),
        "sawtooth": 2 * (cycles - np.floor(cycles + 0.5)),
        "chirp": np.sin(2 * np.pi * (freq * t[None, :] * (1 + 2 * t[None, :]) + phase)),
    }
    x = np.stack([waves[s] for s in SHAPES])[kinds, np.arange(samples)]
    x = x * rng.uniform(0.5, 2.0, size=(samples, 1)) + rng.normal(0, 1, size=(samples, 1))
    x = x + noise * rng.normal(size=x.shape)
    return x.astype(np.float32), [SHAPES[k] for k in kinds]


class TimeSeriesShapes(Dataset):
    name = "timeseries_shapes"
    modality = "sequence"
    description = "generated example: noisy sine, square, sawtooth and chirp series"
    params = {
        "samples": Param(3000, int, low=40, help="series generated"),
        "length": Param(64, int, low=8, help="steps per series"),
        "noise": Param(0.4, float, low=0.0, help="standard deviation of the added white noise"),
        "seed": Param(0, int, help="generator seed"),
        "normalize": Param(True, bool, help="z-normalise each series"),
    }

    def load(self, options: Mapping[str, Any], split: SplitSpec) -> TaskData:
        x, labels = generate_shapes(options["samples"], options["length"], options["noise"], options["seed"])
        return _task(x, labels, split, options["normalize"], {"generator": "timeseries_shapes", "seed": options["seed"]})


@hookimpl
def iasf_register_datasets(registry) -> None:
    registry.register(TimeSeriesFile())
    registry.register(TimeSeriesShapes())
