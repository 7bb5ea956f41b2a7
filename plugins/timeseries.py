"""Time-series classification, offline: local files (``timeseries_file``) or a generated example
(``timeseries_shapes``). Samples are ``(T, C)``, ``C`` channels over ``T`` steps, for the ``sequence`` stem.

``timeseries_file`` reads the archives' own formats (:mod:`iasf_search.series`: the UCR text layout, ``.ts``,
``.arff``, and ``.npz`` files :func:`iasf_search.series.save_series` writes). A dataset that
comes as a ``NAME_TRAIN`` / ``NAME_TEST`` pair is read with ``path`` (training file) and ``test_path``: the test
split is then the test file as it is, and validation is drawn from the training file.

The series then go through, in this order (training and test files alike):

1. **normalisation** (``normalize``): each series and channel z-normalised over its own values (the UEA
   convention; a constant channel becomes zeros), missing values left out;
2. **missing values** (``impute``): ``interpolate`` (linear between the neighbouring values, the nearest value
   at either end; a channel with no value at all becomes zeros), ``zero`` (the normalised series' mean), or
   ``refuse`` (an error); a warning counts what was imputed;
3. **lengths** (``lengths``), when the series differ in length: ``pad`` (the longest length, NaN after each
   series' end: the model masks it, see :mod:`iasf_search.build`), ``resample`` (every series linearly
   interpolated to the longest length) or ``truncate`` (every series cut to the shortest length).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from iasf_search import hookimpl
from iasf_search.components import Dataset, SplitSpec, TaskData
from iasf_search.data import class_indices, split_arrays
from iasf_search.errors import BadInput
from iasf_search.params import Param
from iasf_search.series import FORMATS, SeriesSet, file_format, read_file

LENGTHS = ("pad", "resample", "truncate")
IMPUTE = ("interpolate", "zero", "refuse")


def class_order(labels: list[str]) -> list[str]:
    """The distinct labels, shorter first, then by name: ``"2"`` before ``"10"``; a label's index is its class."""
    return sorted(set(labels), key=lambda c: (len(c), c))


def stack(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(values (n, C, L), lengths (n,))``: the series side by side, NaN after each one's end (``L``: the longest)."""
    lengths = np.array([s.shape[1] for s in series], dtype=np.int64)
    values = np.full((len(series), series[0].shape[0], int(lengths.max())), np.nan)
    for i, s in enumerate(series):
        values[i, :, : s.shape[1]] = s
    return values, lengths


def standardize(values: np.ndarray) -> np.ndarray:
    """Z-normalise each series and channel of ``values (n, C, L)`` over its values that are not NaN (a constant
    or empty channel becomes zeros; NaN stays NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN channel: its mean is NaN, handled below
        mean = np.nanmean(values, axis=2, keepdims=True)
        std = np.nanstd(values, axis=2, keepdims=True)
    mean, std = np.nan_to_num(mean), np.nan_to_num(std)
    return (values - mean) / np.where(std > 0, std, 1.0)


def missing_mask(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``(n, C, L)`` bool: the missing values, NaN before a series' end."""
    inside = np.arange(values.shape[2])[None, None, :] < lengths[:, None, None]
    return np.isnan(values) & inside


def impute(values: np.ndarray, lengths: np.ndarray, how: str) -> None:
    """Fill the missing values of ``values (n, C, L)`` in place: ``interpolate`` or ``zero`` (see the module's docstring)."""
    missing = missing_mask(values, lengths)
    if how == "zero":
        values[missing] = 0.0
        return
    for i, c in zip(*np.nonzero(missing.any(axis=2)), strict=True):
        row = values[i, c, : lengths[i]]
        known = np.flatnonzero(~np.isnan(row))
        row[:] = np.interp(np.arange(len(row)), known, row[known]) if len(known) else 0.0


def resample(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Every series of ``values (n, C, L)`` linearly interpolated from its own length to ``L`` steps."""
    out = values.copy()
    target = np.linspace(0.0, 1.0, values.shape[2])
    for i in np.flatnonzero(lengths != values.shape[2]):
        source = np.linspace(0.0, 1.0, lengths[i]) if lengths[i] > 1 else np.zeros(1)
        for c in range(values.shape[1]):
            out[i, c] = np.interp(target, source, values[i, c, : lengths[i]])
    return out


def prepare(sets: list[SeriesSet], options: Mapping[str, Any], *, dataset: str, sources: list[str]) -> tuple[list[np.ndarray], bool, dict]:
    """The samples ``(n, T, C)`` float32 of each set in ``sets`` (read from ``sources``), normalised, imputed and
    brought to one length as ``options`` say (see the module's docstring); whether they are padded; and what
    :class:`TaskData`'s ``info`` records of it (``lengths``: the shortest and longest, when they differ;
    ``channels``).

    :raises BadInput: a test file with other channels, or missing values with ``impute: refuse``.
    """
    channels = sets[0].channels
    for s, source in zip(sets[1:], sources[1:], strict=True):
        if s.channels != channels:
            raise BadInput(f"dataset '{dataset}': {source}: series of {s.channels} channels, but those of {sources[0]} have "
                           f"{channels}; task.options.test_path must be the test file of the same dataset")
    values, lengths = stack([a for s in sets for a in s.series])
    bounds = np.cumsum([len(s.series) for s in sets])[:-1]  # where each set's series start in values
    if options["normalize"]:
        values = standardize(values)
    masks = np.split(missing_mask(values, lengths), bounds)
    counts = [int(m.sum()) for m in masks]
    for count, mask, source in zip(counts, masks, sources, strict=True):
        if count and options["impute"] == "refuse":
            first = int(np.flatnonzero(mask.any(axis=(1, 2)))[0]) + 1
            raise BadInput(f"dataset '{dataset}': {source}: series {first} holds missing values (NaN), {count} in the file; "
                           f"clean the data, or set task.options.impute to interpolate or zero")
        if count:
            warnings.warn(f"dataset '{dataset}': {source}: {count} missing values imputed (task.options.impute: "
                          f"{options['impute']})", stacklevel=3)
    if sum(counts):
        impute(values, lengths, options["impute"])
    info: dict[str, Any] = {"channels": channels}
    shortest, longest = int(lengths.min()), int(lengths.max())
    padded = False
    if shortest != longest:
        info["lengths"] = {"shortest": shortest, "longest": longest, "made": options["lengths"]}
        if options["lengths"] == "resample":
            values = resample(values, lengths)
        elif options["lengths"] == "truncate":
            values = values[:, :, :shortest]
        else:
            padded = True
    samples = values.transpose(0, 2, 1).astype(np.float32)  # (n, T, C)
    return np.split(samples, bounds), padded, info


def series_task(sets: list[SeriesSet], options: Mapping[str, Any], split: SplitSpec, *, dataset: str, sources: list[str],
                info: dict[str, Any]) -> TaskData:
    """The task of ``sets`` (the training series, then the dataset's own test series if any), prepared by :func:`prepare`."""
    arrays, padded, prepared = prepare(sets, options, dataset=dataset, sources=sources)
    classes = class_order(sets[0].labels)
    y = np.array([classes.index(c) for c in sets[0].labels], dtype=np.int64)
    x_test = y_test = None
    if len(sets) > 1:
        x_test = arrays[1]
        y_test = class_indices(sets[1].labels, classes, name=dataset, where=sources[1], train=sources[0])
    return split_arrays(arrays[0], y, split, modality="sequence", info={**info, **prepared, "classes": classes},
                        x_test=x_test, y_test=y_test, padded=padded)


PREPARATION = {
    "normalize": Param(True, bool, help="z-normalise each series and channel"),
    "impute": Param("interpolate", str, choices=IMPUTE,
                    help="missing values (NaN inside a series): interpolate linearly, zero (0: a normalised series' mean), or refuse"),
    "lengths": Param("pad", str, choices=LENGTHS,
                     help="series of unequal lengths: pad (masked), resample to the longest, or truncate to the shortest"),
}
"""The options of how series are prepared, shared by the time-series datasets."""


class TimeSeriesFile(Dataset):
    name = "timeseries_file"
    modality = "sequence"
    description = "time-series classification from local files: the UCR text layout, .ts, .arff or .npz (save_series)"
    params = {
        "path": Param(None, str, nullable=True, help="the local file (required)"),
        "test_path": Param(None, str, nullable=True,
                           help="the dataset's own test file (e.g. NAME_TEST.ts beside NAME_TRAIN.ts): all its series, in "
                                "file order, are the test split; validation comes from path (split.val of it; split.test is ignored)"),
        "format": Param("auto", str, choices=FORMATS, help="the files' format; auto: by extension (.ts, .arff, .npz; else UCR text)"),
        **PREPARATION,
    }

    def load(self, options: Mapping[str, Any], split: SplitSpec) -> TaskData:
        if not options["path"]:
            raise BadInput("dataset 'timeseries_file': task.options.path is required: a local file, one series per line")
        path = Path(options["path"]).expanduser()
        train, test = read_file(path, file_format(path, options["format"]), dataset=self.name, option="path")
        info: dict[str, Any] = {"source": str(path)}
        sets, sources = [train], [str(path)]
        if options.get("test_path"):
            test_path = Path(options["test_path"]).expanduser()
            if test is not None:
                raise BadInput(f"dataset '{self.name}': {path} holds its own test set, and task.options.test_path names another; "
                               f"remove test_path")
            test, _ = read_file(test_path, file_format(test_path, options["format"]), dataset=self.name, option="test_path")
            info["test_source"] = sources_test = str(test_path)
        else:
            sources_test = f"{path} (its test set)"
        if test is not None:
            sets.append(test)
            sources.append(sources_test)
        return series_task(sets, options, split, dataset=self.name, sources=sources, info=info)


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
        "normalize": PREPARATION["normalize"],
    }

    def load(self, options: Mapping[str, Any], split: SplitSpec) -> TaskData:
        x, labels = generate_shapes(options["samples"], options["length"], options["noise"], options["seed"])
        generated = SeriesSet(list(x[:, None, :].astype(np.float64)), labels)
        return series_task([generated], {**options, "impute": "refuse", "lengths": "pad"}, split, dataset=self.name,
                           sources=["generated"], info={"generator": "timeseries_shapes", "seed": options["seed"]})


@hookimpl
def iasf_register_datasets(registry) -> None:
    registry.register(TimeSeriesFile())
    registry.register(TimeSeriesShapes())
