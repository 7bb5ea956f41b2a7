"""Dataset helpers (stratified splits, ingestion checks) and the built-in datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iasf_search.components import SplitSpec
from iasf_search.data import check_task, split_arrays
from iasf_search.errors import BadInput
from iasf_search.plugins.synthetic import associative_recall, selective_copying


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


def test_digits(components):
    data = components.datasets.get("digits").load({"shift": 0}, SplitSpec())
    check_task("digits", data)
    assert data.sample_shape == (1, 8, 8) and data.num_classes == 10 and data.modality == "image"
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 1797
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    assert data.augment is None
    shifted = components.datasets.get("digits").load({"shift": 2}, SplitSpec())
    assert shifted.augment is not None and shifted.augment.keywords == {"pixels": 2}
    out = shifted.augment(shifted.x_train[:5], torch.Generator().manual_seed(0))
    assert out.shape == (5, 1, 8, 8)


def test_mnist1d_small(components):
    data = components.datasets.get("mnist1d").load({"samples": 500, "seed": 42}, SplitSpec(val=0.15, test=0.2))
    check_task("mnist1d", data)
    assert data.sample_shape == (40, 1) and data.num_classes == 10 and data.modality == "sequence"
    assert len(data.x_test) == 100  # its own test split (a fifth of the samples), not split.test
    assert len(data.x_train) + len(data.x_val) == 400


def test_samples_shared_between_splits_are_rejected():
    x, y = _toy()
    data = split_arrays(x, y, SplitSpec(val=0.25, test=0.25, seed=0), modality="image")
    data.x_test[0] = data.x_train[3]
    with pytest.raises(BadInput, match=r"dataset 'toy': 1 test samples also appear in the training split"):
        check_task("toy", data)


# -- generated sequence tasks -----------------------------------------------------------------------


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


# -- local image data ---------------------------------------------------------------------------------

def _cifar_folder(tmp_path, per_batch=20):
    import pickle

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
                 b"labels": [i % 10 for i in range(per_batch)]}
        with (root / name).open("wb") as f:
            pickle.dump(batch, f)
    return root


def test_cifar10_reads_the_python_batches(tmp_path):
    from iasf_search.plugin_manager import load_components
    from iasf_search.testing import check_dataset

    root = _cifar_folder(tmp_path)
    dataset = load_components(autoload=False).datasets.get("cifar10")
    data = dataset.load({"path": str(root), "train_batches": 5}, SplitSpec(val=0.2))
    assert data.sample_shape == (3, 32, 32) and data.num_classes == 10
    assert len(data.x_train) + len(data.x_val) == 100 and len(data.x_test) == 20  # its own test batch
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0
    check_dataset(dataset, {"path": str(root), "train_batches": 5}, SplitSpec(val=0.2))


def test_cifar10_refuses_foreign_pickles_and_missing_files(tmp_path):
    import os
    import pickle

    from iasf_search.plugin_manager import load_components

    dataset = load_components(autoload=False).datasets.get("cifar10")
    root = _cifar_folder(tmp_path)
    with (root / "data_batch_1").open("wb") as f:
        pickle.dump(os.getcwd, f)  # a callable: loading it must not be allowed
    with pytest.raises(BadInput, match=r"data_batch_1: not a CIFAR-10 python batch \(refusing to load"):
        dataset.load({"path": str(root), "train_batches": 1}, SplitSpec())
    with pytest.raises(BadInput, match="no such file"):
        dataset.load({"path": str(tmp_path / "nowhere"), "train_batches": 1}, SplitSpec())
    with pytest.raises(BadInput, match="task.options.path is required"):
        dataset.load({"path": None, "train_batches": 1}, SplitSpec())


def test_image_folder(tmp_path):
    from PIL import Image

    from iasf_search.plugin_manager import load_components
    from iasf_search.testing import check_dataset

    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, size=(10, 14, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "dogs" / "notes.txt").write_text("ignored")
    dataset = load_components(autoload=False).datasets.get("image_folder")
    opts = {"path": str(tmp_path / "imgs"), "size": 8, "channels": 1}
    data = dataset.load(opts, SplitSpec(val=0.25, test=0.25))
    assert data.sample_shape == (1, 8, 8) and data.info["classes"] == ["cats", "dogs"]
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 24
    check_dataset(dataset, opts, SplitSpec(val=0.25, test=0.25))
    (tmp_path / "imgs" / "dogs" / "broken.png").write_text("not an image")
    with pytest.raises(BadInput, match="broken.png: cannot read the image"):
        dataset.load(opts, SplitSpec())
