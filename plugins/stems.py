"""Built-in stems: images ``(C, H, W)`` -> patch tokens on an ``(⌈H/p⌉, ⌈W/p⌉)`` grid; sequences
``(T, F)`` -> tokens on a ``(⌈T/p⌉,)`` grid. Both add a position encoding chosen by the space.

Any length or size works with any patch: an input that a patch does not divide is padded with
zeros at its end (right and bottom) up to the next multiple of the patch. The padding is always
less than one patch, so every token still covers real samples: no token is padding alone, and
attention, pooling and normalisation over tokens see no token to mask.

Series of unequal lengths padded to one length with NaN (a padded task, :attr:`~iasf_search.components.TaskData.padded`)
are another matter: the ``sequence`` stem's module then gives the model the token mask (``padding_mask``):
a token is real when its own patch of steps holds a real value (:mod:`iasf_search.build`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import Stem, TokenLayout
from iasf_search.params import Param

POSITIONS = ("learned", "sinusoidal", "none")


def sinusoidal(layout: TokenLayout, width: int) -> torch.Tensor:
    """``(1, T, width)`` fixed sin/cos encoding; each grid axis gets an equal share of channels."""
    coords = layout.coordinates().float()  # (T, axes)
    axes = coords.shape[1]
    share = (width // axes) // 2 * 2
    parts = []
    for a in range(axes):
        freq = torch.exp(torch.arange(0, share, 2).float() * (-math.log(10000.0) / max(share, 1)))
        angle = coords[:, a : a + 1] * freq  # (T, share/2)
        parts += [angle.sin(), angle.cos()]
    enc = torch.cat(parts, dim=-1)
    return nn.functional.pad(enc, (0, width - enc.shape[1]))[None]


class PositionEncoding(nn.Module):
    """Adds a ``learned``, ``sinusoidal`` or no (``none``) position encoding to tokens (B, T, D)."""

    def __init__(self, layout: TokenLayout, width: int, kind: str) -> None:
        super().__init__()
        if kind == "learned":
            self.pos = nn.Parameter(torch.randn(1, layout.length, width) * 0.02)
        elif kind == "sinusoidal":
            self.register_buffer("pos", sinusoidal(layout, width), persistent=False)
        else:
            self.pos = None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens if self.pos is None else tokens + self.pos


class GridStem(nn.Module):
    """Zero padding to a multiple of the patch, conv patch embedding (overlapping when ``overlap``)
    and position encoding -> (B, T, D)."""

    def __init__(self, channels: int, axes: int, patch: int, overlap: bool, width: int, layout: TokenLayout,
                 position: str, channels_last: bool) -> None:
        super().__init__()
        conv = nn.Conv1d if axes == 1 else nn.Conv2d
        kernel, pad = (patch + 2, 1) if overlap else (patch, 0)
        self.embed = conv(channels, width, kernel, stride=patch, padding=pad)
        self.patch = patch
        self.channels_last = channels_last
        self.position = PositionEncoding(layout, width, position)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:  # (B, T, F) -> (B, F, T)
            x = x.transpose(1, 2)
        padding = padding_to_multiple(x.shape[2:], self.patch)
        if any(padding):  # F.pad copies the input even when there is nothing to pad
            x = nn.functional.pad(x, padding)
        return self.position(self.embed(x).flatten(2).transpose(1, 2))  # (B, T, D)


class SequenceStemModule(GridStem):
    """The ``sequence`` stem's module: a :class:`GridStem` over ``(B, T, F)`` that also masks NaN padding."""

    def padding_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, ⌈T/p⌉)`` bool: True where the token's own ``p`` steps hold a value that is not NaN padding
        (a step is padding when every feature is NaN)."""
        real = ~torch.isnan(x).all(dim=-1)  # (B, T)
        pad = -real.shape[1] % self.patch
        if pad:
            real = nn.functional.pad(real, (0, pad), value=False)
        return real.view(real.shape[0], -1, self.patch).any(dim=-1)


def padding_to_multiple(grid: tuple[int, ...], patch: int) -> tuple[int, ...]:
    """``F.pad``'s argument (last axis first, ``(before, after)`` each) that zero-pads each axis of
    ``grid`` at its end up to the next multiple of ``patch``."""
    out: tuple[int, ...] = ()
    for size in reversed(grid):
        out += (0, -size % patch)
    return out


class _GridStemPlugin(Stem):
    axes: int
    channels_last: bool
    params = {
        "patch": Param([1, 2], int, low=1, help="tokens are patches of this many pixels/steps per axis"),
        "overlap": Param(True, bool, help="overlapping patches (a small conv stem) instead of disjoint ones"),
        "position": Param("learned", str, choices=POSITIONS, help="position encoding added to the tokens"),
    }

    def _grid(self, sample_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
        if len(sample_shape) != self.axes + 1:
            raise ValueError(f"{self.name} inputs must have {self.axes + 1} axes per sample, got shape {sample_shape}")
        if self.channels_last:
            return sample_shape[:-1], sample_shape[-1]
        return sample_shape[1:], sample_shape[0]

    def layout(self, config: Mapping[str, Any], sample_shape: tuple[int, ...]) -> TokenLayout:
        grid, _ = self._grid(sample_shape)
        p = config["patch"]
        return TokenLayout(tuple(-(-s // p) for s in grid))  # ceil: the input is padded to a multiple of p

    def build(self, config: Mapping[str, Any], sample_shape: tuple[int, ...], width: int) -> nn.Module:
        _, channels = self._grid(sample_shape)
        module = SequenceStemModule if self.channels_last else GridStem
        return module(channels, self.axes, config["patch"], config["overlap"], width,
                        self.layout(config, sample_shape), config["position"], self.channels_last)

    def describe(self, config: Mapping[str, Any]) -> str:
        return f"p{config['patch']}{'o' if config['overlap'] else ''}/{config['position']}"


class ImageStem(_GridStemPlugin):
    name = "image"
    description = "images (C, H, W) of any size -> patch tokens on the (H/p, W/p) grid (padded up to a multiple of p)"
    axes, channels_last = 2, False


class SequenceStem(_GridStemPlugin):
    name = "sequence"
    description = "sequences (T, F) of any length -> tokens on the (T/p,) grid (padded up to a multiple of p)"
    axes, channels_last = 1, True


@hookimpl
def iasf_register_stems(registry) -> None:
    registry.register(ImageStem())
    registry.register(SequenceStem())
