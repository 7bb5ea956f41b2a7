"""Cross-validation folds: the pooled data, stratified and seeded folds, repeats, the check at load time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iasf_search.components import SplitSpec
from iasf_search.errors import BadInput
from iasf_search.trial.cross_validation import check_folds, fold_indices, fold_tasks, pooled


def test_pooled_trains_on_train_and_val_and_keeps_test_apart(digits):
    merged = pooled(digits)
    assert len(merged.x_train) == len(digits.x_train) + len(digits.x_val)
    assert torch.equal(merged.x_train[len(digits.x_train):], digits.x_val)
    assert torch.equal(merged.y_train[:len(digits.y_train)], digits.y_train)
    assert torch.equal(merged.x_val, digits.x_val)  # kept for the per-epoch log
    assert torch.equal(merged.x_test, digits.x_test) and torch.equal(merged.y_test, digits.y_test)
    assert (merged.num_classes, merged.modality) == (digits.num_classes, digits.modality)


def test_folds_partition_the_pool_stratified_and_repeat_with_other_shuffles():
    y = np.repeat(np.arange(3), [20, 10, 5])  # 35 samples, imbalanced
    folds = fold_indices(y, SplitSpec(folds=5, repeats=2, seed=1))
    assert len(folds) == 10
    for repeat in (folds[:5], folds[5:]):
        vals = np.concatenate([val for _, val in repeat])
        assert sorted(vals) == list(range(35))  # each sample validates exactly once per repeat
        for train, val in repeat:
            assert not set(train) & set(val) and len(train) + len(val) == 35
            assert np.bincount(y[val], minlength=3).tolist() == [4, 2, 1]  # stratified: the class shares of the pool
    assert [list(v) for _, v in folds[:5]] != [list(v) for _, v in folds[5:]]  # the repeat shuffles again


def test_folds_are_seeded():
    y = np.repeat(np.arange(2), 12)
    same = [fold_indices(y, SplitSpec(folds=3, seed=0)) for _ in range(2)]
    other = fold_indices(y, SplitSpec(folds=3, seed=1))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(*same, strict=True))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(same[0], other, strict=True))


def test_a_class_smaller_than_the_folds_is_allowed():
    y = np.array([0] * 10 + [1] * 2)
    folds = fold_indices(y, SplitSpec(folds=5))
    assert sum(int((y[val] == 1).sum()) for _, val in folds) == 2  # in two validation folds, never lost
    assert all((y[train] == 1).any() for train, _ in folds)


def test_fold_tasks_hold_the_folds_samples_and_the_test_split(digits):
    split = SplitSpec(folds=4)
    tasks = fold_tasks(digits, split)
    pool = pooled(digits)
    assert len(tasks) == 4
    for task, (train, val) in zip(tasks, fold_indices(pool.y_train.numpy(), split), strict=True):
        assert torch.equal(task.x_train, pool.x_train[train]) and torch.equal(task.y_val, pool.y_train[val])
        assert task.x_test is digits.x_test and task.num_classes == digits.num_classes
    assert sum(len(t.x_val) for t in tasks) == len(pool.x_train)


def test_too_many_folds_name_the_file_the_key_and_the_fix(digits):
    check_folds("digits", digits, SplitSpec())  # no folds: nothing to check
    check_folds("digits", digits, SplitSpec(folds=10))
    with pytest.raises(BadInput) as err:
        check_folds("digits", digits, SplitSpec(folds=500), "space.yaml")
    message = str(err.value)
    assert message.startswith("space.yaml: task.split.folds: 500 folds")
    assert "use folds: " in message and "(dataset 'digits')" in message
