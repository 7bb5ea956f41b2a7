"""The built-in stems (plugins/stems.py): images and sequences to tokens, the token grid, position encodings.
(The conformance kit on every stem: tests/test_testing.py.)"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from iasf_search.components import TokenLayout
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.stems import GridStem, PositionEncoding, sinusoidal

COMPONENTS = load_components(autoload=False)


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "none"])
@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize(("modality", "sample_shape", "patch", "grid"), [
    ("image", (1, 8, 8), 1, (8, 8)), ("image", (1, 8, 8), 2, (4, 4)), ("image", (3, 8, 4), 4, (2, 1)),
    ("sequence", (40, 1), 1, (40,)), ("sequence", (40, 1), 2, (20,)), ("sequence", (12, 3), 4, (3,)),
])
def test_stem_shapes(modality, sample_shape, patch, grid, overlap, position):
    stem = COMPONENTS.stems.get(modality)
    config = {"patch": patch, "overlap": overlap, "position": position}
    assert stem.layout(config, sample_shape).shape == grid
    module = stem.build(config, sample_shape, 12)
    tokens = module(torch.randn(2, *sample_shape))
    assert tokens.shape == (2, TokenLayout(grid).length, 12)


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize(("modality", "sample_shape", "patch", "grid"), [
    ("image", (1, 8, 8), 3, (3, 3)), ("image", (3, 7, 5), 2, (4, 3)), ("image", (1, 5, 5), 8, (1, 1)),
    ("sequence", (40, 1), 3, (14,)), ("sequence", (151, 1), 4, (38,)), ("sequence", (251, 2), 2, (126,)),
])
def test_a_patch_that_does_not_divide_the_input_pads_it(modality, sample_shape, patch, grid, overlap):
    stem = COMPONENTS.stems.get(modality)
    config = {"patch": patch, "overlap": overlap, "position": "learned"}
    assert stem.layout(config, sample_shape).shape == grid  # ceil(size / patch) tokens per axis
    tokens = stem.build(config, sample_shape, 6)(torch.randn(2, *sample_shape))
    assert tokens.shape == (2, TokenLayout(grid).length, 6) and torch.isfinite(tokens).all()


def test_padding_is_zeros_at_the_end_and_every_token_covers_real_samples():
    stem = COMPONENTS.stems.get("sequence")
    config = {"patch": 4, "overlap": False, "position": "none"}
    torch.manual_seed(0)
    odd = stem.build(config, (151, 1), 6)
    even = stem.build(config, (152, 1), 6)
    even.load_state_dict(odd.state_dict())
    x = torch.randn(2, 151, 1)
    padded = torch.cat([x, torch.zeros(2, 1, 1)], dim=1)
    assert torch.allclose(odd(x), even(padded))  # the same as padding the series by hand
    changed = x.clone()
    changed[:, -1] += 1.0  # the last real step lives in the last (partly padded) token
    assert not torch.allclose(odd(changed)[:, -1], odd(x)[:, -1]) and torch.equal(odd(changed)[:, :-1], odd(x)[:, :-1])


def test_stem_rejects_wrong_sample_rank():
    with pytest.raises(ValueError, match="axes per sample"):
        COMPONENTS.stems.get("image").layout({"patch": 1, "overlap": False, "position": "none"}, (8, 8))



def test_patch_tokens_are_in_row_major_grid_order():
    torch.manual_seed(0)
    stem = COMPONENTS.stems.get("image")
    module = stem.build({"patch": 2, "overlap": False, "position": "none"}, (1, 4, 4), 6)
    x = torch.randn(1, 1, 4, 4)
    x2 = x.clone()
    x2[0, 0, 3, 3] += 1.0  # a pixel of the bottom-right patch
    changed = (module(x) - module(x2)).abs().sum(-1)[0] > 0
    assert changed.tolist() == [False, False, False, True]


def test_overlapping_patches_use_a_wider_padded_kernel():
    stem = COMPONENTS.stems.get("image")
    overlap = stem.build({"patch": 2, "overlap": True, "position": "none"}, (3, 8, 8), 6)
    disjoint = stem.build({"patch": 2, "overlap": False, "position": "none"}, (3, 8, 8), 6)
    assert isinstance(overlap, GridStem) and isinstance(overlap.embed, nn.Conv2d)
    assert (overlap.embed.kernel_size, overlap.embed.stride, overlap.embed.padding) == ((4, 4), (2, 2), (1, 1))
    assert (disjoint.embed.kernel_size, disjoint.embed.stride, disjoint.embed.padding) == ((2, 2), (2, 2), (0, 0))
    assert overlap.embed.in_channels == 3
    sequence = COMPONENTS.stems.get("sequence").build({"patch": 2, "overlap": False, "position": "none"}, (10, 5), 6)
    assert isinstance(sequence.embed, nn.Conv1d) and sequence.embed.in_channels == 5 and sequence.channels_last


def test_sinusoidal_encoding_values():
    enc = sinusoidal(TokenLayout((5,)), 8)
    assert enc.shape == (1, 5, 8)
    t = torch.arange(5.0)
    torch.testing.assert_close(enc[0, :, 0], torch.sin(t))  # the first frequency is 1
    torch.testing.assert_close(enc[0, :, 4], torch.cos(t))
    torch.testing.assert_close(enc[0, :, 1], torch.sin(t * math.exp(-2 * math.log(10000.0) / 8)))


def test_sinusoidal_encoding_shares_channels_between_axes_and_pads():
    enc = sinusoidal(TokenLayout((2, 3)), 10)  # 2 axes: 4 channels each, 2 zero channels left over
    assert enc.shape == (1, 6, 10)
    assert not enc[0, :, 8:].any()
    rows, cols = torch.tensor([0.0, 0, 0, 1, 1, 1]), torch.tensor([0.0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(enc[0, :, 0], torch.sin(rows))
    torch.testing.assert_close(enc[0, :, 4], torch.sin(cols))


def test_position_encodings():
    layout = TokenLayout((2, 2))
    tokens = torch.randn(3, 4, 6)
    learned = PositionEncoding(layout, 6, "learned")
    assert isinstance(learned.pos, nn.Parameter) and learned.pos.shape == (1, 4, 6)
    torch.testing.assert_close(learned(tokens), tokens + learned.pos)
    fixed = PositionEncoding(layout, 6, "sinusoidal")
    assert list(fixed.parameters()) == [] and "pos" not in fixed.state_dict()  # recomputed, not saved
    torch.testing.assert_close(fixed(tokens), tokens + sinusoidal(layout, 6))
    none = PositionEncoding(layout, 6, "none")
    assert none(tokens) is tokens and list(none.parameters()) == []


def test_describe_and_modalities():
    image, sequence = COMPONENTS.stems.get("image"), COMPONENTS.stems.get("sequence")
    assert image.describe({"patch": 2, "overlap": True, "position": "learned"}) == "p2o/learned"
    assert sequence.describe({"patch": 1, "overlap": False, "position": "none"}) == "p1/none"
    assert [n for n in COMPONENTS.stems if COMPONENTS.stems.owner(n) == "iasf_search.plugins.stems"] == ["image", "sequence"]
    assert sequence.layout({"patch": 4, "overlap": False, "position": "none"}, (12, 3)) == TokenLayout((3,))


@pytest.mark.parametrize(("patch", "expected"), [(1, [[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0]]),
                                                 (3, [[1, 1, 1], [1, 0, 0]])])
def test_the_sequence_stem_masks_tokens_of_padding_only(patch, expected):
    """A token is real when its own patch holds a step that is not padding (every feature NaN)."""
    stem = load_components(autoload=False).stems.get("sequence").build({"patch": patch, "overlap": True, "position": "none"}, (7, 2), 8)
    x = torch.randn(2, 7, 2)
    x[1, 3:] = float("nan")
    x[0, 5, 0] = float("nan")  # one feature missing is not padding
    assert stem.padding_mask(x).int().tolist() == expected
