"""Generated sequence tasks that probe what attention is for (offline, deterministic under a seed).

Both are classification tasks over one-hot token sequences ``(T, vocabulary)`` for the
``sequence`` stem.

* ``associative_recall``: ``k1 v1 k2 v2 ... kn vn q``; the label is the value paired with the
  query key ``q`` (one of the ``k_i``). A model must match ``q`` to an earlier key by content.
* ``selective_copying``: ``data`` coloured tokens sit at random positions among blanks, followed
  by a query token naming an index ``j``; the label is the colour of the ``j``-th coloured token.
  The positions change from sample to sample, so a fixed convolution cannot solve it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from iasf_search import hookimpl
from iasf_search.components import Dataset, SplitSpec, TaskData
from iasf_search.data import split_arrays
from iasf_search.errors import BadInput
from iasf_search.params import Param


def associative_recall(samples: int, pairs: int, keys: int, values: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``x``: ``(samples, 2*pairs + 1, keys + values)`` one-hot; ``y``: the queried value in ``[0, values)``."""
    rng = np.random.default_rng(seed)
    length, vocab = 2 * pairs + 1, keys + values
    x = np.zeros((samples, length, vocab), dtype=np.float32)
    y = np.empty(samples, dtype=np.int64)
    rows = np.arange(samples)
    chosen_keys = np.argsort(rng.random((samples, keys)), axis=1)[:, :pairs]  # distinct keys per sample
    chosen_values = rng.integers(0, values, size=(samples, pairs))
    for p in range(pairs):
        x[rows, 2 * p, chosen_keys[:, p]] = 1.0
        x[rows, 2 * p + 1, keys + chosen_values[:, p]] = 1.0
    query = rng.integers(0, pairs, size=samples)
    x[rows, length - 1, chosen_keys[rows, query]] = 1.0
    y[:] = chosen_values[rows, query]
    return x, y


def selective_copying(samples: int, length: int, data: int, colours: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``x``: ``(samples, length + 1, colours + 1 + data)`` one-hot (colours, blank, query index); ``y``: a colour."""
    rng = np.random.default_rng(seed)
    blank, vocab = colours, colours + 1 + data
    x = np.zeros((samples, length + 1, vocab), dtype=np.float32)
    x[:, :length, blank] = 1.0
    rows = np.arange(samples)
    positions = np.sort(np.argsort(rng.random((samples, length)), axis=1)[:, :data], axis=1)
    tokens = rng.integers(0, colours, size=(samples, data))
    for d in range(data):
        x[rows, positions[:, d], blank] = 0.0
        x[rows, positions[:, d], tokens[:, d]] = 1.0
    query = rng.integers(0, data, size=samples)
    x[rows, length, colours + 1 + query] = 1.0
    return x, tokens[rows, query]


def _unique_samples(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated sequences (so no test sample is also a training sample)."""
    _, keep = np.unique(x.reshape(len(x), -1), axis=0, return_index=True)
    keep.sort()
    return x[keep], y[keep]


class AssociativeRecall(Dataset):
    name = "associative_recall"
    modality = "sequence"
    description = "generated key-value recall: return the value paired with the queried key"
    params = {
        "samples": Param(6000, int, low=100, help="sequences generated (repeats are dropped)"),
        "pairs": Param(6, int, low=1, help="key-value pairs per sequence"),
        "keys": Param(16, int, low=2, help="key vocabulary (>= pairs)"),
        "values": Param(8, int, low=2, help="value vocabulary = number of classes"),
        "seed": Param(0, int, help="generator seed"),
    }

    def load(self, options: Mapping[str, Any], split: SplitSpec) -> TaskData:
        if options["keys"] < options["pairs"]:
            raise BadInput(f"dataset 'associative_recall': keys ({options['keys']}) must be at least pairs ({options['pairs']})")
        x, y = _unique_samples(*associative_recall(options["samples"], options["pairs"], options["keys"],
                                                   options["values"], options["seed"]))
        return split_arrays(x, y, split, modality=self.modality, info={"generator": "associative_recall", **options})


class SelectiveCopying(Dataset):
    name = "selective_copying"
    modality = "sequence"
    description = "generated selective copying: the colour of the j-th coloured token among blanks"
    params = {
        "samples": Param(6000, int, low=100, help="sequences generated (repeats are dropped)"),
        "length": Param(24, int, low=2, help="positions before the query"),
        "data": Param(4, int, low=1, help="coloured tokens per sequence (<= length)"),
        "colours": Param(8, int, low=2, help="colour vocabulary = number of classes"),
        "seed": Param(0, int, help="generator seed"),
    }

    def load(self, options: Mapping[str, Any], split: SplitSpec) -> TaskData:
        if options["data"] > options["length"]:
            raise BadInput(f"dataset 'selective_copying': data ({options['data']}) must not exceed length ({options['length']})")
        x, y = _unique_samples(*selective_copying(options["samples"], options["length"], options["data"],
                                                  options["colours"], options["seed"]))
        return split_arrays(x, y, split, modality=self.modality, info={"generator": "selective_copying", **options})


@hookimpl
def iasf_register_datasets(registry) -> None:
    registry.register(AssociativeRecall())
    registry.register(SelectiveCopying())
