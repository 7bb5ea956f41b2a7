"""The generated sequence tasks of plugins/synthetic.py: associative recall and selective copying."""

from __future__ import annotations

import numpy as np
import pytest

from iasf_search.components import SplitSpec
from iasf_search.data import check_task
from iasf_search.errors import BadInput
from iasf_search.plugins.synthetic import associative_recall, selective_copying


def test_associative_recall_labels_are_the_queried_values():
    x, y = associative_recall(samples=200, pairs=5, keys=12, values=7, seed=3)
    assert x.shape == (200, 11, 19) and y.shape == (200,)
    assert (x.sum(-1) == 1).all()  # one token per position
    tokens = x.argmax(-1)
    for seq, label in zip(tokens, y, strict=True):
        keys, values, query = seq[0:10:2], seq[1:10:2] - 12, seq[10]
        assert len(set(keys.tolist())) == 5 and (keys < 12).all() and query in keys
        assert label == values[list(keys).index(query)]
    again, _ = associative_recall(samples=200, pairs=5, keys=12, values=7, seed=3)
    assert np.array_equal(x, again)
    assert not np.array_equal(x, associative_recall(samples=200, pairs=5, keys=12, values=7, seed=4)[0])


def test_selective_copying_labels_are_the_indexed_colours():
    x, y = selective_copying(samples=200, length=16, data=3, colours=5, seed=0)
    assert x.shape == (200, 17, 9)
    assert (x.sum(-1) == 1).all()
    tokens = x.argmax(-1)
    for seq, label in zip(tokens, y, strict=True):
        coloured = [t for t in seq[:16] if t < 5]
        assert len(coloured) == 3 and (seq[:16] != 5).sum() == 3  # 5 is the blank
        assert label == coloured[seq[16] - 6]


@pytest.mark.parametrize(("name", "options", "fragment"), [
    ("associative_recall", {"pairs": 6, "keys": 4}, "keys (4) must be at least pairs (6)"),
    ("selective_copying", {"data": 9, "length": 4}, "data (9) must not exceed length (4)"),
])
def test_generated_tasks_reject_impossible_options(name, options, fragment):
    from iasf_search.plugin_manager import load_components

    dataset = load_components(autoload=False).datasets.get(name)
    with pytest.raises(BadInput, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        dataset.load({**{k: p.default for k, p in dataset.params.items()}, **options}, SplitSpec())


def _all_samples(data) -> np.ndarray:
    return np.concatenate([data.x_train.numpy(), data.x_val.numpy(), data.x_test.numpy()]).reshape(-1, np.prod(data.sample_shape))


def test_associative_recall_task_drops_repeated_sequences(components):
    # 4 * 3 key orders x 3**2 value choices x 2 queries = 216 distinct sequences: 300 draws must repeat
    options = {"samples": 300, "pairs": 2, "keys": 4, "values": 3, "seed": 0}
    data = components.datasets.get("associative_recall").load(options, SplitSpec())
    check_task("associative_recall", data)
    assert data.modality == "sequence" and data.sample_shape == (5, 7) and data.num_classes == 3
    samples = _all_samples(data)
    assert len(samples) <= 216 and len(np.unique(samples, axis=0)) == len(samples)
    assert data.info == {"generator": "associative_recall", **options}


def test_selective_copying_task(components):
    options = {"samples": 300, "length": 8, "data": 2, "colours": 3, "seed": 1}
    data = components.datasets.get("selective_copying").load(options, SplitSpec())
    check_task("selective_copying", data)
    assert data.modality == "sequence" and data.sample_shape == (9, 3 + 1 + 2) and data.num_classes == 3
    samples = _all_samples(data)
    assert len(np.unique(samples, axis=0)) == len(samples)
    assert data.info["generator"] == "selective_copying"


def test_generators_are_seeded():
    a, ya = selective_copying(samples=50, length=6, data=2, colours=3, seed=5)
    b, yb = selective_copying(samples=50, length=6, data=2, colours=3, seed=5)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert not np.array_equal(a, selective_copying(samples=50, length=6, data=2, colours=3, seed=6)[0])
