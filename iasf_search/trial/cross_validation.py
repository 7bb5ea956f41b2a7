"""K-fold cross-validation for small datasets (``task.split.folds``).

A dataset plugin returns training, validation and test splits as always. With ``folds: K`` the
engine pools the training and validation splits (every sample that is not test data) and cuts the
pool into K stratified folds, ``repeats`` times with different shuffles (scikit-learn's
``RepeatedStratifiedKFold``, seeded by ``split.seed``, so every trial of a study sees the same
folds). A trial trains one model per fold and its objective is their mean validation accuracy;
the model it keeps is trained once more on the whole pool and is the only one evaluated on the
test split. Every fold model holds its own copy of its samples, so folds suit the small datasets
they are meant for (on a GPU the copies live in device memory).
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import torch

from iasf_search.components import SplitSpec, TaskData
from iasf_search.errors import BadInput


def pooled(data: TaskData) -> TaskData:
    """``data`` with its training and validation splits joined as the training split (training samples
    first); the validation and test splits are kept as they are."""
    return replace(data, x_train=torch.cat([data.x_train, data.x_val]), y_train=torch.cat([data.y_train, data.y_val]),
                   info=dict(data.info))


def fold_indices(y: np.ndarray, split: SplitSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, val)`` index arrays into ``y`` for each of the ``split.folds x split.repeats`` folds,
    stratified by class as far as the class counts allow (a class with fewer samples than folds is
    missing from some validation folds).

    :raises BadInput: naming ``task.split.folds``, when ``y`` cannot be cut into that many folds.
    """
    from sklearn.model_selection import RepeatedStratifiedKFold  # imported here: scikit-learn takes a second to import

    assert split.folds is not None, "fold_indices needs split.folds"
    counts = np.bincount(y)
    most = int(counts.max()) if len(counts) else 0
    if split.folds > len(y) or split.folds > most:
        raise BadInput(f"task.split.folds: {split.folds} folds, but the {len(y)} training and validation samples hold at "
                       f"most {most} of any class; use folds: {max(2, most)} or fewer, or remove folds")
    cv = RepeatedStratifiedKFold(n_splits=split.folds, n_repeats=split.repeats, random_state=split.seed)
    with warnings.catch_warnings():  # "the least populated class has only n members": allowed, documented above
        warnings.simplefilter("ignore", UserWarning)
        return list(cv.split(np.zeros(len(y)), y))


def fold_tasks(data: TaskData, split: SplitSpec) -> list[TaskData]:
    """One task per fold of the pooled training and validation data (:func:`pooled`, :func:`fold_indices`),
    each with the fold's training and validation samples, on ``data``'s device, and ``data``'s test split.

    :raises BadInput: the data cannot be cut into ``split.folds`` folds.
    """
    pool = pooled(data)
    out = []
    for train, val in fold_indices(pool.y_train.cpu().numpy(), split):
        train_idx, val_idx = (torch.as_tensor(i, device=pool.x_train.device) for i in (train, val))
        out.append(replace(data, x_train=pool.x_train[train_idx], y_train=pool.y_train[train_idx], x_val=pool.x_train[val_idx],
                           y_val=pool.y_train[val_idx], info=dict(data.info)))
    return out


def check_folds(name: str, data: TaskData, split: SplitSpec, file: str = "") -> None:
    """With ``split.folds`` set, raise :class:`BadInput` (naming ``file`` and the key) if dataset ``name``'s
    data cannot be cut into that many folds; nothing to check without folds."""
    if split.folds is None:
        return
    try:
        fold_indices(torch.cat([data.y_train, data.y_val]).cpu().numpy(), split)
    except BadInput as exc:
        where = f"{file}: " if file else ""
        raise BadInput(f"{where}{exc} (dataset '{name}')") from None
