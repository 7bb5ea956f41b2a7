"""Dataset helpers (iasf_search.data): stratified splits and the ingestion checks every loaded task passes.
(The built-in datasets: tests/plugins/test_datasets.py, test_synthetic.py, test_text.py, test_timeseries.py.)"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from iasf_search.components import SplitSpec, TaskData
from iasf_search.data import check_task, class_indices, split_arrays, split_indices
from iasf_search.errors import BadInput


def _toy(n_per_class: int = 20, classes: int = 4):
    y = np.repeat(np.arange(classes), n_per_class)
    x = np.arange(len(y), dtype=np.float64)[:, None, None] * np.ones((1, 2, 3))
    return x, y


def test_split_arrays_is_stratified_disjoint_and_complete():
    x, y = _toy()
    data = split_arrays(x, y, SplitSpec(val=0.25, test=0.25, seed=0), modality="image", info={"k": "v"})
    sizes = (len(data.x_train), len(data.x_val), len(data.x_test))
    assert sizes == (40, 20, 20)
    ids = [data.x_train[:, 0, 0], data.x_val[:, 0, 0], data.x_test[:, 0, 0]]
    all_ids = torch.cat(ids).long().tolist()
    assert sorted(all_ids) == list(range(80))  # disjoint and complete
    for part in (data.y_train, data.y_val, data.y_test):
        assert torch.bincount(part, minlength=4).tolist() == [len(part) // 4] * 4  # stratified
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.sample_shape == (2, 3) and data.num_classes == 4
    assert data.modality == "image" and data.info == {"k": "v"}
    # each sample keeps its label
    assert all(int(i) // 20 == int(label) for i, label in zip(ids[0], data.y_train, strict=True))


def test_split_arrays_is_reproducible_and_seeded():
    x, y = _toy()
    a = split_arrays(x, y, SplitSpec(seed=1), modality="image")
    b = split_arrays(x, y, SplitSpec(seed=1), modality="image")
    c = split_arrays(x, y, SplitSpec(seed=2), modality="image")
    assert torch.equal(a.x_val, b.x_val)
    assert not torch.equal(a.x_val, c.x_val)


def test_split_arrays_with_a_shipped_test_set():
    x, y = _toy()
    x_test, y_test = x[:8] + 1000, y[:8]
    data = split_arrays(x, y, SplitSpec(val=0.25, test=0.5), modality="sequence", x_test=x_test, y_test=y_test)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (60, 20, 8)  # split.test is ignored
    assert data.x_test.min() >= 1000


def test_class_indices_map_a_test_file_onto_the_training_classes():
    classes = ["1", "2", "10"]
    indices = class_indices(["10", "1", "10", "2"], classes, name="toy", where="t_TEST.tsv", train="t_TRAIN.tsv")
    assert indices.tolist() == [2, 0, 2, 1] and indices.dtype == np.int64
    with pytest.raises(BadInput) as info:
        class_indices(["1", *"abcdefg"], classes, name="toy", where="t_TEST.tsv", train="t_TRAIN.tsv")
    assert str(info.value).startswith("dataset 'toy': t_TEST.tsv: classes 'a', 'b', 'c', 'd', 'e' and 2 more do not occur "
                                      "in the training data t_TRAIN.tsv; ")


def test_check_task_accepts_a_good_task():
    x, y = _toy()
    check_task("toy", split_arrays(x, y, SplitSpec(), modality="image"))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: setattr(d, "x_val", d.x_val[:0]) or setattr(d, "y_val", d.y_val[:0]), "the val split is empty"),
    (lambda d: setattr(d, "y_test", d.y_test[:-1]), "test split has"),
    (lambda d: setattr(d, "x_test", d.x_test[:, :1]), "test samples have shape"),
    (lambda d: d.x_train.__setitem__((0, 0, 0), float("nan")), "NaN or infinite"),
    (lambda d: d.y_val.__setitem__(0, 7), "labels must lie in [0, 4)"),
    (lambda d: setattr(d, "num_classes", 5), "classes [4] have no training sample"),
])
def test_check_task_rejects(damage, message):
    x, y = _toy()
    data = split_arrays(x, y, SplitSpec(), modality="image")
    damage(data)
    with pytest.raises(BadInput) as info:
        check_task("toy", data)
    assert str(info.value).startswith("dataset 'toy': ")
    assert message in str(info.value)


def test_samples_shared_between_splits_are_rejected():
    x, y = _toy()
    data = split_arrays(x, y, SplitSpec(val=0.25, test=0.25, seed=0), modality="image")
    data.x_test[0] = data.x_train[3]
    with pytest.raises(BadInput, match=r"dataset 'toy': 1 test samples also appear in the training split"):
        check_task("toy", data)


def test_a_dataset_s_own_test_split_keeps_repeated_training_samples_with_a_warning():
    x, y = _toy()
    test = np.arange(len(y)) % 4 == 0
    data = split_arrays(x[~test], y[~test], SplitSpec(val=0.25, seed=0), modality="image", x_test=x[test], y_test=y[test])
    assert data.info["own_test_split"] is True
    data.x_test[0] = data.x_train[3]
    data.x_test[1] = data.x_train[5]
    with pytest.warns(UserWarning, match=r"dataset 'toy': 2 of the 20 samples of its own test split also appear in the training data"):
        check_task("toy", data)
    data.x_val[0] = data.x_train[3]  # a split the engine cut: still refused
    with pytest.raises(BadInput, match=r"1 val samples also appear in the training split"):
        check_task("toy", data)


def _padded_task() -> TaskData:
    """40 series of 6 steps and 2 features; every other one ends after 3 steps (NaN padding)."""
    x = np.random.default_rng(0).normal(size=(40, 6, 2)).astype(np.float32)
    x[::2, 3:] = np.nan
    return split_arrays(x, np.arange(40) % 2, SplitSpec(), modality="sequence", padded=True)


def test_check_task_accepts_nan_padding_at_the_end_of_a_padded_task_only():
    data = _padded_task()
    assert data.padded
    check_task("toy", data)
    unpadded = replace(data, padded=False)
    with pytest.raises(BadInput, match="NaN or infinite"):
        check_task("toy", unpadded)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda x: x.__setitem__((0, 1, 0), float("nan")), "NaN in some features of a step only (missing values: impute them)"),
    (lambda x: x.__setitem__((0, slice(None)), float("nan")), "a sample with no real value"),
    (lambda x: x.__setitem__((0, 1), float("nan")), "NaN before a sample's last real step"),
    (lambda x: x.__setitem__((0, 0, 0), float("inf")), "holds infinite values"),
])
def test_check_task_refuses_nan_that_is_not_padding(damage, message):
    """Damage done to a full-length series put first in the training split."""
    data = _padded_task()
    row = int(np.flatnonzero(torch.isfinite(data.x_train[:, 5, 0]).numpy())[0])  # a full-length series
    data.x_train = torch.cat([data.x_train[row:row + 1], data.x_train])
    data.y_train = torch.cat([data.y_train[row:row + 1], data.y_train])
    data.x_train[0] += 0.5  # not a copy of a training sample
    damage(data.x_train)
    with pytest.raises(BadInput, match=re.escape(message)):
        check_task("toy", data)


def test_a_split_too_small_for_every_class_holds_one_sample_per_class():
    """50 samples of 10 classes (the UCR archive's PickupGestureWiimoteZ): 15% is 8 samples, fewer than the classes."""
    y = np.arange(50) % 10
    with pytest.warns(UserWarning, match=r"split.val: 0.15 of 50 samples is fewer than their 10 classes; val holds 10 samples"):
        train, val, _ = split_indices(y, SplitSpec(val=0.15), has_test=True)
    assert len(val) == 10 and sorted(y[val].tolist()) == list(range(10)) and len(train) == 40
