"""Built-in datasets, all offline: scikit-learn's 8x8 digits (images) and MNIST-1D (sequences)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from iasf_search import hookimpl
from iasf_search.components import Dataset, SplitSpec, TaskData
from iasf_search.data import split_arrays
from iasf_search.params import Param


def random_shift(x: torch.Tensor, generator: torch.Generator, pixels: int = 1) -> torch.Tensor:
    """Shift each image of a batch ``(B, C, H, W)`` by up to ``pixels`` in each direction, zero-filled."""
    B, _, H, W = x.shape
    padded = F.pad(x, (pixels, pixels, pixels, pixels))
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, B), generator=generator, device="cpu").to(x.device)
    rows = (torch.arange(H, device=x.device)[None, :] + dy[:, None])  # (B, H)
    cols = (torch.arange(W, device=x.device)[None, :] + dx[:, None])  # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class Digits(Dataset):
    name = "digits"
    modality = "image"
    description = "scikit-learn's 1,797 8x8 handwritten digits, pixels scaled to [0, 1]; shipped with scikit-learn"
    params = {"shift": Param(1, int, low=0, high=3, help="random shift in pixels when training.augment is on")}

    def load(self, options: Mapping[str, Any], split: SplitSpec) -> TaskData:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).reshape(-1, 1, 8, 8)
        data = split_arrays(x, y, split, modality=self.modality, info={"source": "sklearn.datasets.load_digits"})
        if options["shift"]:
            data.augment = partial(random_shift, pixels=options["shift"])
        return data


class MNIST1D(Dataset):
    name = "mnist1d"
    modality = "sequence"
    description = "MNIST-1D (40-step sequences, 10 classes) generated locally by the mnist1d package; its own test set"
    params = {
        "samples": Param(5000, int, low=100, help="total samples generated (train+test); the generator's default is 5000"),
        "seed": Param(42, int, help="generator seed (42 reproduces the published dataset)"),
    }

    def load(self, options: Mapping[str, Any], split: SplitSpec) -> TaskData:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples, args.seed = options["samples"], options["seed"]
        d = make_dataset(args)
        x, x_test = (np.asarray(d[k], dtype=np.float32)[:, :, None] for k in ("x", "x_test"))  # (N, T, 1)
        return split_arrays(x, d["y"], split, modality=self.modality, x_test=x_test, y_test=d["y_test"],
                            info={"source": "mnist1d.data.make_dataset", "seed": options["seed"]})


@hookimpl
def iasf_register_datasets(registry) -> None:
    registry.register(Digits())
    registry.register(MNIST1D())
