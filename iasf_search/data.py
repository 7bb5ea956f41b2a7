"""Dataset helpers shared by dataset plugins: stratified splitting and checks at ingestion."""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from iasf_search.components import SplitSpec, TaskData
from iasf_search.errors import BadInput

OWN_TEST_SPLIT = "own_test_split"
"""The ``TaskData.info`` key set True when the test split is the dataset's own (a test file, a published test set)
rather than cut from its data by the engine: :func:`check_task` then warns about training samples repeated in
it instead of refusing them, since results published on that split include them."""


def split_indices(y: np.ndarray, split: SplitSpec, *, has_test: bool = False,
                  source: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified ``(train, val, test)`` index arrays over ``len(y)`` samples (``test`` empty when ``has_test``).

    :param source: where the samples came from (a file), named first in the error.
    :raises BadInput: a class has too few samples to be stratified.
    """
    from sklearn.model_selection import train_test_split  # imported here: scikit-learn takes a second to import

    idx = np.arange(len(y))
    try:
        if has_test:
            rest, test, val_share = idx, idx[:0], split.val
        else:
            rest, test = train_test_split(idx, test_size=_held_out(split.test, y, "test"), random_state=split.seed, stratify=y)
            val_share = split.val / (1.0 - split.test)
        train, val = train_test_split(rest, test_size=_held_out(val_share, y[rest], "val"), random_state=split.seed,
                                      stratify=y[rest])
    except ValueError as exc:
        where = f"{source}: " if source else ""
        raise BadInput(f"{where}cannot split {len(y)} samples into train/val/test by class: {exc}; use more data, or smaller "
                       f"split.val and split.test") from None
    return train, val, test


def _held_out(share: float, y: np.ndarray, name: str) -> float | int:
    """What ``train_test_split`` holds out of ``y`` for a ``share``: the share, or one sample per class (with a
    warning) when the share holds fewer samples than there are classes, so that a stratified split of a small
    dataset with many classes (the UCR archive has 50 series of 10 classes) still works."""
    classes = len(np.unique(y))
    if math.ceil(share * len(y)) >= classes:
        return share
    warnings.warn(f"split.{name}: {share:.2f} of {len(y)} samples is fewer than their {classes} classes; "
                  f"{name} holds {classes} samples instead, one per class", stacklevel=4)
    return classes


def split_arrays(x: np.ndarray, y: np.ndarray, split: SplitSpec, *, modality: str, info: dict | None = None,
                 x_test: np.ndarray | None = None, y_test: np.ndarray | None = None, padded: bool = False) -> TaskData:
    """Stratified train/val/test split of ``(x, y)`` into a :class:`TaskData` (integer ``x`` stays int64).

    When the dataset ships its own test set (``x_test``, ``y_test``), that is the test split and
    ``split.val`` is taken from the rest; ``split.test`` is then ignored, and ``info`` gets
    :data:`OWN_TEST_SPLIT`. ``padded``: see :attr:`TaskData.padded`.
    """
    y = np.asarray(y)
    info = dict(info or {})
    train, val, test = split_indices(y, split, has_test=x_test is not None, source=info.get("source"))
    if x_test is None:
        x_test, y_test = x[test], y[test]
    else:
        info[OWN_TEST_SPLIT] = True

    def tensor(a: np.ndarray) -> torch.Tensor:
        dtype = torch.int64 if np.issubdtype(np.asarray(a).dtype, np.integer) else torch.float32
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=torch.int64)

    num_classes = int(max(y.max(), np.asarray(y_test).max())) + 1
    return TaskData(tensor(x[train]), labels(y[train]), tensor(x[val]), labels(y[val]), tensor(x_test), labels(y_test),
                    num_classes=num_classes, modality=modality, info=info, padded=padded)


def class_indices(labels: Sequence[str], classes: Sequence[str], *, name: str, where: str, train: str) -> np.ndarray:
    """``labels`` (of a dataset's own test file ``where``) as int64 indices into ``classes``, the classes
    of the training data ``train``, so that a class has the same index in both.

    :raises BadInput: naming ``where``, when it holds a class the training data does not have.
    """
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - index.keys())
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise BadInput(f"dataset '{name}': {where}: classes {shown} do not occur in the training data {train}; "
                       f"the test data may only hold the training data's classes: fix the labels or remove those samples")
    return np.array([index[c] for c in labels], dtype=np.int64)


def check_task(name: str, data: TaskData) -> None:
    """Raise :class:`BadInput` naming ``name`` if the task's tensors are unusable.

    Checks: non-empty splits, dtypes (float or int64 samples, int64 labels), matching sample shapes and lengths, finite values
    (but for the NaN padding of a padded task, :attr:`TaskData.padded`, at the end of each sample only), labels in
    ``[0, num_classes)``, every class present in the training split, and no sample of the
    validation or test split repeated in the training split. Test samples repeated in the training
    split are only a warning when the test split is the dataset's own (:data:`OWN_TEST_SPLIT`): a
    published test split is kept as published, so that results compare.
    """
    shape = data.sample_shape
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if len(x) == 0:
            raise BadInput(f"dataset '{name}': the {split} split is empty; use more data or smaller split fractions")
        if y.dtype != torch.int64 or not (x.dtype.is_floating_point or x.dtype == torch.int64):
            raise BadInput(f"dataset '{name}': {split} split has x of {x.dtype} and labels of {y.dtype}; "
                           f"expected float (or int64 token ids) samples and int64 labels")
        if len(x) != len(y):
            raise BadInput(f"dataset '{name}': {split} split has {len(x)} samples but {len(y)} labels")
        if tuple(x.shape[1:]) != shape:
            raise BadInput(f"dataset '{name}': {split} samples have shape {tuple(x.shape[1:])}, train samples {shape}")
        if data.padded:
            _check_padding(name, split, x)
        elif not torch.isfinite(x).all():
            raise BadInput(f"dataset '{name}': the {split} split holds NaN or infinite values; clean the data")
        if y.min() < 0 or y.max() >= data.num_classes:
            raise BadInput(f"dataset '{name}': {split} labels must lie in [0, {data.num_classes}), got {int(y.min())}..{int(y.max())}")
    missing = sorted(set(range(data.num_classes)) - set(data.y_train.tolist()))
    if missing:
        raise BadInput(f"dataset '{name}': classes {missing} have no training sample; check the labels")
    train_rows = _row_digests(data.x_train)
    for split in ("val", "test"):
        shared = len(train_rows & _row_digests(getattr(data, f"x_{split}")))
        if shared and split == "test" and data.info.get(OWN_TEST_SPLIT):
            warnings.warn(f"dataset '{name}': {shared} of the {len(data.x_test)} samples of its own test split also appear in "
                          f"the training data; kept, as published (test accuracy counts them)", stacklevel=2)
        elif shared:
            raise BadInput(f"dataset '{name}': {shared} {split} samples also appear in the training split; "
                           f"remove the duplicates so that {split} accuracy is measured on unseen data")


def _check_padding(name: str, split: str, x: torch.Tensor) -> None:
    """A padded task's samples ``(N, T, ...)``: no infinite value, and NaN only as padding: whole steps (every
    feature NaN) at the end of a sample that starts with a real step."""
    if torch.isinf(x).any():
        raise BadInput(f"dataset '{name}': the {split} split holds infinite values; clean the data")
    nan = torch.isnan(x).reshape(x.shape[0], x.shape[1], -1)
    padding = nan.all(dim=-1)  # (N, T)
    problem = None
    if (nan.any(dim=-1) & ~padding).any():
        problem = "NaN in some features of a step only (missing values: impute them)"
    elif padding[:, 0].any():
        problem = "a sample with no real value (all padding)"
    elif (padding[:, :-1] & ~padding[:, 1:]).any():
        problem = "NaN before a sample's last real step (missing values: impute them)"
    if problem:
        raise BadInput(f"dataset '{name}': the {split} split is padded, but holds {problem}; "
                       f"NaN may only pad a sample's end")


def _row_digests(x: torch.Tensor) -> set[bytes]:
    """One digest per sample, for finding samples shared between splits."""
    rows = x.detach().cpu().reshape(len(x), -1).numpy()
    return {hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows}
