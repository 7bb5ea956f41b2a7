"""Built-in node operations: self-attention with connectivity patterns, convolution, MLP, token-mixing MLPs
(MLP-Mixer's token MLP, gMLP), pooling, identity.

Every op maps tokens ``(B, T, D) -> (B, T, D)``. Ops that care about locality read the token grid
from ``ctx.layout`` (``(T,)`` for sequences, ``(H, W)`` for image patches), so "local" means a
neighbourhood in the grid, not in the flattened order.

The token-mixing MLPs (``token_mlp``, ``gmlp``) hold weights over all ``T = ctx.layout.length``
tokens in token order, so a model built for one input shape takes inputs of that shape only (as
learned position encodings already do); ``gmlp``'s ``T x T`` matrix grows with the square of the
token count (a larger patch keeps it small). The image and sequence stems pad by less than one patch, so no
token is padding alone, and the padding ids of a text sample are ordinary tokens (the zero pad embedding plus its position),
seen by attention, pooling and these MLPs alike.

Series of unequal lengths padded to one length (:mod:`iasf_search.build`) are masked: ``attention`` attends
to real tokens only and ``pool`` pools them only; ``conv``, ``token_mlp`` and ``gmlp`` see padded tokens as
zeros, as a convolution sees the zero padding beyond a sequence's end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import BuildContext, NodeOp, Suggest, TokenLayout
from iasf_search.params import Param, Range

PATTERNS = ("full", "local", "dilated", "topk")


def connectivity_mask(layout: TokenLayout, pattern: str, window: int, dilation: int) -> torch.Tensor | None:
    """Boolean ``(T, T)`` mask (True = may attend) for a static pattern; None for ``full``/``topk``.

    ``local``: tokens within ``window // 2`` steps along every grid axis.
    ``dilated``: tokens whose offset along every axis is a multiple of ``dilation`` and at most
    ``(window // 2) * dilation`` steps away. Every token always sees itself.
    """
    if pattern in ("full", "topk"):
        return None
    coords = layout.coordinates()
    offset = (coords[:, None, :] - coords[None, :, :]).abs()  # (T, T, axes)
    reach = window // 2
    if pattern == "local":
        return (offset <= reach).all(-1)
    if pattern == "dilated":
        return ((offset <= reach * dilation) & (offset % dilation == 0)).all(-1)
    raise ValueError(f"unknown attention pattern {pattern!r}")


def heads_fit_widths(ranges: Mapping[str, Range], widths: tuple[int, ...] | None) -> tuple[str, str] | None:
    """Every allowed ``heads`` value must divide every allowed width."""
    heads = ranges["heads"].values()
    for w in widths or ():
        for h in heads or ():
            if w % h:
                return "heads", f"{h} heads do not divide width {w} (manifold.width); choose heads that divide every width"
    return None


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` with an optional mask.

    ``topk``: each query attends to its ``topk`` highest-scoring keys (a data-dependent mask).
    With a padding ``mask`` (``(B, T)``, True at real tokens), queries attend to real keys only; a padded
    query keeps its pattern's keys (its output is discarded, and a row with no key would be NaN).
    """

    def __init__(self, width: int, heads: int, mask: torch.Tensor | None, topk: int | None) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"{heads} heads do not divide width {width}")
        self.heads, self.topk = heads, topk
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.register_buffer("mask", mask, persistent=False)

    def _qkv_mask(self, x: torch.Tensor, padding: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, hd) each
        mask = self.mask
        real_keys = None if padding is None else padding[:, None, None, :]  # (B, 1, 1, T)
        if self.topk is not None and self.topk < T:
            with torch.no_grad():
                scores = q @ k.transpose(-2, -1)  # (B, H, T, T); the scale does not change the ranking
                if real_keys is not None:
                    scores = scores.masked_fill(~real_keys, float("-inf"))
                kth = scores.topk(self.topk, dim=-1).values[..., -1:]
                mask = scores >= kth
        if real_keys is not None:
            allowed = real_keys | ~padding[:, None, :, None]  # padded queries: every key their pattern allows
            mask = allowed if mask is None else mask & allowed
        return q, k, v, mask

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v, attend = self._qkv_mask(x, mask)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # (B, H, T, hd)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))

    def attention_weights(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention probabilities ``(B, heads, T, T)`` that :meth:`forward` applies to ``x``
        (rows: queries; masked keys get 0; with a padding ``mask``, so do the rows of padded queries, whose
        output is discarded). Reports and the dashboard draw them as heat maps."""
        q, k, _, attend = self._qkv_mask(x, mask)
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        if attend is not None:
            scores = scores.masked_fill(~attend, float("-inf"))
        weights = scores.softmax(dim=-1)
        return weights if mask is None else weights * mask[:, None, :, None].to(weights.dtype)


class Attention(NodeOp):
    name = "attention"
    description = "multi-head self-attention; pattern: full, local window, dilated or top-k sparse"
    params = {
        "heads": Param([1, 2, 4], int, low=1, help="attention heads (must divide the width)"),
        "pattern": Param(list(PATTERNS), str, choices=PATTERNS, help="connectivity pattern"),
        "window": Param([3, 5], int, low=1, help="neighbourhood size per grid axis (local, dilated)"),
        "dilation": Param(2, int, low=1, help="stride between attended tokens (dilated)"),
        "topk": Param(8, int, low=1, help="keys kept per query (topk)"),
    }

    def sample(self, ranges: Mapping[str, Any], suggest: Suggest) -> dict[str, Any]:
        config = {"heads": suggest("heads"), "pattern": suggest("pattern")}
        if config["pattern"] in ("local", "dilated"):
            config["window"] = suggest("window")
        if config["pattern"] == "dilated":
            config["dilation"] = suggest("dilation")
        if config["pattern"] == "topk":
            config["topk"] = suggest("topk")
        return config

    def check_ranges(self, ranges: Mapping[str, Range], *, widths: tuple[int, ...] | None) -> tuple[str, str] | None:
        return heads_fit_widths(ranges, widths)

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        pattern = config["pattern"]
        mask = connectivity_mask(ctx.layout, pattern, config.get("window", 1), config.get("dilation", 1))
        return SelfAttention(ctx.width, config["heads"], mask, config.get("topk") if pattern == "topk" else None)

    def describe(self, config: Mapping[str, Any]) -> str:
        pattern = {"full": "full", "local": f"loc{config.get('window')}",
                   "dilated": f"dil{config.get('window')}x{config.get('dilation')}",
                   "topk": f"top{config.get('topk')}"}[config["pattern"]]
        return f"attn-{pattern}/h{config['heads']}"


class GridMixer(nn.Module):
    """Applies a spatial ``layer`` to tokens laid out on ``layout``'s grid: (B, T, D) -> (B, T, D)."""

    def __init__(self, layout: TokenLayout, layer: nn.Module, pointwise: nn.Module | None = None) -> None:
        super().__init__()
        self.shape = layout.shape
        self.layer = layer
        self.pointwise = pointwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        grid = x.transpose(1, 2).reshape(B, D, *self.shape)  # (B, D, *grid)
        y = self.layer(grid).reshape(B, D, T).transpose(1, 2)  # (B, T, D)
        return self.pointwise(y) if self.pointwise is not None else y


def _spatial(layout: TokenLayout, conv1d: type, conv2d: type) -> type:
    if len(layout.shape) == 1:
        return conv1d
    if len(layout.shape) == 2:
        return conv2d
    raise ValueError(f"token grids of {len(layout.shape)} axes are not supported (1 or 2)")


class Conv(NodeOp):
    name = "conv"
    description = "depthwise convolution over the token grid, then a pointwise projection"
    params = {
        "kernel": Param([3, 5], int, low=1, help="kernel size per grid axis"),
        "dilation": Param(1, int, low=1, help="dilation of the kernel"),
    }

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        conv = _spatial(ctx.layout, nn.Conv1d, nn.Conv2d)
        D = ctx.width
        depthwise = conv(D, D, config["kernel"], padding="same", dilation=config["dilation"], groups=D)
        return GridMixer(ctx.layout, depthwise, nn.Sequential(nn.GELU(), nn.Linear(D, D)))

    def describe(self, config: Mapping[str, Any]) -> str:
        d = config["dilation"]
        return f"conv{config['kernel']}" + (f"d{d}" if d != 1 else "")


class MLP(NodeOp):
    name = "mlp"
    description = "per-token feed-forward block D -> expansion*D -> D"
    params = {"expansion": Param([2, 4], int, low=1, help="hidden width as a multiple of D")}

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        hidden = ctx.width * config["expansion"]
        return nn.Sequential(nn.Linear(ctx.width, hidden), nn.GELU(), nn.Linear(hidden, ctx.width))

    def describe(self, config: Mapping[str, Any]) -> str:
        return f"mlp{config['expansion']}"


TOKEN_MLP_MAX_HIDDEN = 512
"""The token-mixing MLP's hidden token count is ``min(expansion * T, TOKEN_MLP_MAX_HIDDEN)``: its two
``T x hidden`` matrices then grow linearly, not quadratically, with the token count (MLP-Mixer's
own token-mixing widths are 256 to 640 at 196 to 256 tokens)."""


class TokenMLP(nn.Module):
    """MLP-Mixer's token-mixing MLP (Tolstikhin et al. 2021): ``T -> hidden -> T`` along the token
    axis, one MLP shared by every channel: (B, T, D) -> (B, D, T) -> MLP -> (B, T, D)."""

    def __init__(self, tokens: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(tokens, hidden), nn.GELU(), nn.Linear(hidden, tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x.transpose(1, 2)))).transpose(1, 2)


class TokenMLPOp(NodeOp):
    name = "token_mlp"
    description = (f"MLP-Mixer token mixing: an MLP along the token axis, T -> min(expansion*T, {TOKEN_MLP_MAX_HIDDEN}) -> T, "
                   "shared by all channels")
    params = {"expansion": Param(2, int, low=1, help=f"hidden token count as a multiple of T (at most {TOKEN_MLP_MAX_HIDDEN})")}

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        tokens = ctx.layout.length
        return TokenMLP(tokens, min(config["expansion"] * tokens, TOKEN_MLP_MAX_HIDDEN))

    def describe(self, config: Mapping[str, Any]) -> str:
        return f"tmlp{config['expansion']}"


class SpatialGatingUnit(nn.Module):
    """gMLP's spatial gating unit: ``u * (W @ LayerNorm(v) + b)`` with ``u, v`` the two halves of the
    channels and ``W`` a ``T x T`` projection along the token axis. ``W`` starts near zero and ``b``
    at one, so the unit starts close to ``u`` (per token) and learns its token mixing (Liu et al. 2021)."""

    def __init__(self, tokens: int, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.spatial = nn.Linear(tokens, tokens)
        eps = 1e-3 / tokens
        nn.init.uniform_(self.spatial.weight, -eps, eps)
        nn.init.ones_(self.spatial.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u, v = z.chunk(2, dim=-1)  # (B, T, C) each
        v = self.spatial(self.norm(v).transpose(1, 2)).transpose(1, 2)
        return u * v


class GatedMLP(nn.Module):
    """gMLP's block without its norm and shortcut (the engine adds both):
    ``D -> 2*e*D``, GELU, spatial gating (``e*D`` channels), ``e*D -> D``."""

    def __init__(self, tokens: int, width: int, expansion: int) -> None:
        super().__init__()
        hidden = expansion * width
        self.proj_in, self.act = nn.Linear(width, 2 * hidden), nn.GELU()
        self.gate = SpatialGatingUnit(tokens, hidden)
        self.proj_out = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.gate(self.act(self.proj_in(x))))


class GMLP(NodeOp):
    name = "gmlp"
    description = "gMLP block: channel MLP whose hidden half is gated by a T x T projection of the other half along the tokens"
    params = {"expansion": Param(2, int, low=1, help="width of each gated half as a multiple of D")}

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        return GatedMLP(ctx.layout.length, ctx.width, config["expansion"])

    def describe(self, config: Mapping[str, Any]) -> str:
        return f"gmlp{config['expansion']}"


class PoolMix(nn.Module):
    """PoolFormer-style token mixer: pool(x) - x over the token grid; with a padding ``mask``, over the real
    tokens of each window only (as the grid's own edges are: ``count_include_pad=False``)."""

    def __init__(self, layout: TokenLayout, kind: str, kernel: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "avg":
            pool = _spatial(layout, nn.AvgPool1d, nn.AvgPool2d)(kernel, stride=1, padding=kernel // 2, count_include_pad=False)
        else:
            pool = _spatial(layout, nn.MaxPool1d, nn.MaxPool2d)(kernel, stride=1, padding=kernel // 2)
        self.mix = GridMixer(layout, pool)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            return self.mix(x) - x
        real = mask[..., None].to(x.dtype)  # (B, T, 1)
        if self.kind == "avg":  # the mean of a window's real tokens: their sum over their count
            pooled = self.mix(x * real) / self.mix(real).clamp(min=1e-6)
        else:
            pooled = self.mix(x.masked_fill(~mask[..., None], float("-inf")))
        return pooled.masked_fill(~mask[..., None], 0.0) - x  # a window of padding only: nothing, not -inf


class Pool(NodeOp):
    name = "pool"
    description = "pooling over the token grid (stride 1, odd kernel), PoolFormer-style"
    params = {
        "kind": Param(["avg", "max"], str, choices=("avg", "max"), help="pooling function"),
        "kernel": Param(3, int, low=1, help="odd window size per grid axis",
                        rule=lambda k: None if k % 2 else "is even: pooling keeps the token count only with an odd kernel"),
    }

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        if config["kernel"] % 2 == 0:
            raise ValueError(f"pool kernel must be odd to keep the token count, got {config['kernel']}")
        return PoolMix(ctx.layout, config["kind"], config["kernel"])

    def describe(self, config: Mapping[str, Any]) -> str:
        return f"{config['kind']}pool{config['kernel']}"


class Identity(NodeOp):
    name = "identity"
    description = "skip: passes its (fused) input through unchanged"
    residual = False

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        return nn.Identity()

    def describe(self, config: Mapping[str, Any]) -> str:
        return "id"


@hookimpl
def iasf_register_ops(registry) -> None:
    for op in (Attention(), Conv(), MLP(), TokenMLPOp(), GMLP(), Pool(), Identity()):
        registry.register(op)
