"""The built-in datasets of plugins/datasets.py: digits (and its random-shift augmentation), MNIST-1D, CIFAR-10
batches and image folders read from a local path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iasf_search.components import SplitSpec
from iasf_search.data import check_task
from iasf_search.errors import BadInput
from iasf_search.plugins.datasets import random_shift


def test_builtin_datasets(components):
    mine = {n: components.datasets.get(n).modality for n in components.datasets
            if components.datasets.owner(n) == "iasf_search.plugins.datasets"}
    assert mine == {"digits": "image", "mnist1d": "sequence", "cifar10": "image", "image_folder": "image"}


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


def test_an_image_too_large_to_decode_safely_is_one_line(tmp_path, components, monkeypatch):
    from PIL import Image

    root = _image_folder(tmp_path / "imgs")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # Pillow refuses an image of over twice as many pixels (10x14 here)
    with pytest.raises(BadInput, match=r"0\.png: too large to decode safely \(Image size \(140 pixels\) exceeds limit"):
        components.datasets.get("image_folder").load({"path": str(root), "size": 8, "channels": 1}, SplitSpec())


def _image_folder(root, classes=("cats", "dogs"), per_class=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, size=(10, 14, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_image_folder_in_colour_is_resized_and_scaled(tmp_path, components):
    root = _image_folder(tmp_path / "imgs", classes=("b", "a", "c"))
    data = components.datasets.get("image_folder").load({"path": str(root), "size": 6, "channels": 3}, SplitSpec(val=0.25, test=0.25))
    check_task("image_folder", data)
    assert data.sample_shape == (3, 6, 6) and data.num_classes == 3
    assert data.info["classes"] == ["a", "b", "c"]  # sorted by name: label 0 is folder "a"
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0


def test_image_folder_without_images_or_classes(tmp_path, components):
    dataset = components.datasets.get("image_folder")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(BadInput, match="no images"):
        dataset.load({"path": str(tmp_path / "empty"), "size": 8, "channels": 1}, SplitSpec())
    _image_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(BadInput, match="at least two class sub-folders"):
        dataset.load({"path": str(tmp_path / "one"), "size": 8, "channels": 1}, SplitSpec())


def _solid_images(root, per_class):
    """``root/<class>/<i>.png``: 8x8 greyscale images of one grey level each (``per_class``: class -> levels)."""
    from PIL import Image

    for cls, levels in per_class.items():
        (root / cls).mkdir(parents=True)
        for i, level in enumerate(levels):
            Image.fromarray(np.full((8, 8), level, dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_image_folder_with_its_own_test_folder(tmp_path, components):
    """train/ and test/ with the same class folders: the test split is test/'s images (by class, then file name), labelled
    by the training folder's classes (test/ may lack a class); validation is split.val of train/."""
    from iasf_search.testing import check_dataset

    train = _image_folder(tmp_path / "train", classes=("a", "b", "c"), per_class=8)
    test = _solid_images(tmp_path / "test", {"c": [40, 50], "a": [10, 20, 30]})  # no "b"
    dataset = components.datasets.get("image_folder")
    opts = {"path": str(train), "test_path": str(test), "size": 8, "channels": 1}
    data = dataset.load(opts, SplitSpec(val=0.25, test=0.5))  # split.test is ignored
    check_task("image_folder", data)
    assert data.info == {"source": str(train), "test_source": str(test), "classes": ["a", "b", "c"],
                         "own_test_split": True}
    assert data.num_classes == 3 and data.sample_shape == (1, 8, 8)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (18, 6, 5)
    assert data.y_val.bincount().tolist() == [2, 2, 2]
    assert data.y_test.tolist() == [0, 0, 0, 2, 2]  # "c" is class 2, as in train/
    torch.testing.assert_close(data.x_test[:, 0], torch.tensor([10, 20, 30, 40, 50.0])[:, None, None].expand(5, 8, 8) / 255)
    check_dataset(dataset, opts, SplitSpec(val=0.25))


@pytest.mark.parametrize(("test_folder", "fragments"), [
    (None, ["test: no such folder", "set task.options.test_path"]),
    ({"a": [10], "d": [20], "e": [30]}, ["test: classes 'd', 'e' do not occur in the training data", "train",
                                         "fix the labels or remove those samples"]),
    ({"a": []}, ["test: no images"]),
])
def test_image_folder_whose_test_folder_does_not_fit(tmp_path, components, test_folder, fragments):
    train = _image_folder(tmp_path / "train", classes=("a", "b"))
    test = tmp_path / "test"
    if test_folder is not None:
        _solid_images(test, test_folder)
    with pytest.raises(BadInput) as info:
        components.datasets.get("image_folder").load({"path": str(train), "test_path": str(test), "size": 8, "channels": 1},
                                                     SplitSpec())
    message = str(info.value)
    assert message.startswith(f"dataset 'image_folder': {test}") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


# -- random shift (digits' augmentation) ------------------------------------------------------------------


def test_random_shift_moves_pixels_within_bounds():
    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 4, 4] = 1.0
    shifted = random_shift(x, torch.Generator().manual_seed(0), pixels=1)
    assert shifted.shape == x.shape
    rows, cols = shifted[:, 0].nonzero()[:, 1], shifted[:, 0].nonzero()[:, 2]
    assert shifted.sum() == 64  # one pixel each, none lost
    assert set(rows.tolist()) <= {3, 4, 5} and set(cols.tolist()) <= {3, 4, 5}
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 1


def test_random_shift_is_drawn_from_the_generator():
    x = torch.rand(16, 1, 8, 8)
    a = random_shift(x, torch.Generator().manual_seed(3), pixels=2)
    assert torch.equal(a, random_shift(x, torch.Generator().manual_seed(3), pixels=2))
    assert not torch.equal(a, random_shift(x, torch.Generator().manual_seed(4), pixels=2))
    assert torch.equal(random_shift(x, torch.Generator().manual_seed(3), pixels=0), x)  # no shift at all


def test_random_shift_moves_whole_images_with_zero_fill():
    x = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4).repeat(32, 1, 1, 1)
    shifted = random_shift(x, torch.Generator().manual_seed(0), pixels=1)
    for image in shifted[:, 0]:
        # each output is the input moved by (dy, dx) in {-1, 0, 1}^2, what falls off replaced by zeros
        found = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                 if torch.equal(image, torch.roll(x[0, 0], (-dy, -dx), (0, 1)) * _inside(dy, dx))]
        assert len(found) == 1


def _inside(dy: int, dx: int) -> torch.Tensor:
    """The 4x4 mask of pixels that stay inside the image after a shift by ``(dy, dx)``."""
    mask = torch.ones(4, 4)
    if dy > 0:
        mask[-dy:] = 0
    if dy < 0:
        mask[:-dy] = 0
    if dx > 0:
        mask[:, -dx:] = 0
    if dx < 0:
        mask[:, :-dx] = 0
    return mask
