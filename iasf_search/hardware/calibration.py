"""Calibration: fit a :class:`~iasf_search.hardware.profiles.HardwareProfile` of the local machine from micro-benchmarks.

Contract: :func:`calibrate` times micro-benchmarks of every kernel kind on ``device`` with
:func:`iasf_search.hardware.timing.time_call`, fits each figure by least squares, completes the profile from
timings of a small MLP network (:class:`_MLPStack`, traced with
:func:`iasf_search.hardware.kernels.trace_kernels` and predicted with
:func:`iasf_search.hardware.profiles.predict_latency_ms`) and returns the profile; it writes nothing. It
leaves the caller's random number generators as they were, and the profile holds for the current
``torch.get_num_threads()``. ``quick`` gives a rough profile in well under a second (for tests).
"""

from __future__ import annotations

import math
import platform
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from iasf_search.hardware.kernels import DTYPES, KINDS, Kernel, trace_kernels
from iasf_search.hardware.profiles import HardwareProfile, KindCost, predict_latency_ms
from iasf_search.hardware.timing import time_call


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """``(slope, intercept)`` of ``t = intercept + slope * x`` by least squares on the relative error
    (weights ``1 / t**2``, so small and large sizes count alike). A negative intercept (noise)
    refits through the origin; a fit with no positive slope falls back to the mean ratio."""
    weighted = [(x, t, 1.0 / t**2) for x, t in points]
    sw, sx, st = sum(w for *_, w in weighted), sum(w * x for x, _, w in weighted), sum(w * t for _, t, w in weighted)
    sxx, sxt = sum(w * x * x for x, _, w in weighted), sum(w * x * t for x, t, w in weighted)
    det = sw * sxx - sx * sx
    slope = (sw * sxt - sx * st) / det if det > 0 else 0.0
    intercept = (st - slope * sx) / sw
    if slope > 0 and intercept >= 0:
        return slope, intercept
    through_origin = sxt / sxx
    if through_origin > 0:
        return through_origin, 0.0
    return sum(t / x for x, t in points) / len(points), 0.0


def _fastest_in_rotation(calls: Sequence[Callable[[], object]], device: torch.device, rounds: int) -> list[float]:
    """The fastest of ``rounds`` timings (seconds) of each call. Each round times every call once,
    in a new shuffled order, and the last outputs are kept alive: as inside a network, the kernel
    before each is another one and each output lands in memory no kernel touched just before (a
    call repeated back to back reuses its last output's warm buffer and runs faster than it does in
    a network). The fastest, not the median: what the hardware does when no other process takes
    its cores."""
    live: deque[object] = deque(maxlen=_LIVE_OUTPUTS)
    for fn in calls:
        live.append(fn())
    best = [math.inf] * len(calls)
    order = list(range(len(calls)))
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for i in order:
            best[i] = min(best[i], time_call(lambda i=i: live.append(calls[i]()), device, warmup=0, repeats=1).samples_ms[0] / 1000.0)
    return best


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


Benchmarks = dict[str, list[tuple[Callable[[], object], float]]]
"""name -> ``(call, x)`` pairs; ``x``: the elements the call's kernel kind counts (FLOPs for
``matmul``, bytes for ``memory``)."""


def _kernel_benchmarks(device: torch.device, quick: bool) -> Benchmarks:
    """Micro-benchmarks of every kernel kind on token tensors ``(B, T, D)`` of a few sizes, and on
    the views a token mixer takes of them: ``(B, D, T)`` and the grid ``(B, D, 8, T / 8)``.
    Besides the kinds: ``matmul_outputs`` (bmm with a short inner dimension, x: output elements),
    ``copy`` and ``gather`` (contiguous and transposed copies, x: elements)."""
    shapes = ((4, 64, 32), (16, 32, 64)) if quick else ((4, 64, 32), (16, 32, 64), (32, 64, 32), (8, 128, 64))
    out: Benchmarks = {kind: [] for kind in (*KINDS, "matmul_outputs", "copy", "gather")}
    gen = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device)

    for B, T, D in shapes:
        x = randn(B, T, D)
        n = x.numel()
        seq, grid = x.transpose(1, 2), x.transpose(1, 2).reshape(B, D, 8, T // 8)  # the layouts GridMixer-style ops see
        out["matmul"] += [(partial(torch.matmul, x.view(B * T, D), randn(D, width)), 2.0 * n * width) for width in (D, 4 * D)]
        heads = D // 16
        q, scores = randn(B * heads, T, 16), randn(B, heads, T, T)
        out["matmul_outputs"].append((partial(torch.bmm, q, q.transpose(1, 2)), scores.numel()))
        out["convolution"] += [(partial(F.conv1d, randn(B, 1, T), randn(D, 1, 3), padding=1), n),
                               (partial(F.conv2d, randn(B, 1, 8, T // 8), randn(D, 1, 3, 3), padding=1), n)]
        for k in (3, 5):
            out["depthwise"] += [(partial(F.conv1d, seq, randn(D, 1, k), padding="same", groups=D), n),
                                 (partial(F.conv2d, grid, randn(D, 1, k, k), padding="same", groups=D), n)]
        for head_dim in (8, 32):  # per score, a fused attention kernel costs more with wider heads
            qkv = randn(B, D // head_dim, T, head_dim)
            out["attention"].append((partial(F.scaled_dot_product_attention, qkv, qkv, qkv), B * (D // head_dim) * T * T))
        out["pooling"] += [(partial(pool, view, 3, 1, 1), n * taps)
                           for pool, view, taps in ((F.max_pool2d, grid, 9), (F.avg_pool2d, grid, 9), (F.max_pool1d, seq, 3),
                                                    (F.avg_pool1d, seq, 3))]
        out["normalization"].append((partial(F.layer_norm, x, (D,), torch.ones(D, device=device), torch.zeros(D, device=device)), n))
        out["activation"] += [(partial(F.gelu, x), n), (partial(torch.sigmoid, x), n), (partial(torch.softmax, x, -1), n)]
        stacked = torch.stack([x, x])
        out["reduction"] += [(partial(torch.mean, x, 1), n), (partial(torch.sum, x, -1), n), (partial(torch.sum, stacked, 0), 2 * n)]
        mask, zero, minus_inf = scores > 0, torch.zeros((), device=device), torch.full((), -math.inf, device=device)
        out["compare"] += [(partial(torch.ge, scores, scores[..., :1]), scores.numel()),
                           (partial(torch.where, mask, zero, minus_inf), scores.numel())]
        out["selection"].append((partial(torch.topk, scores, 8, dim=-1), scores.numel()))
        y = randn(B, T, D)
        out["memory"] += [(partial(torch.add, x, y), 3.0 * x.nbytes), (partial(torch.mul, x, y), 3.0 * x.nbytes)]
        out["copy"].append((partial(torch.clone, x), n))
        out["gather"].append((partial(torch.clone, seq, memory_format=torch.contiguous_format), n))
    return out


_LIVE_OUTPUTS = 16
"""Outputs kept alive while calibrating, like the activations a network holds."""
_STACK_INPUTS = ((1, 4, 8), (4, 96, 48))
"""Tokens ``(B, T, D)`` the :class:`_MLPStack` runs on: tiny (its time is the framework's), and realistic."""


class _MLPStack(nn.Module):
    """Four pre-norm MLP blocks (``x + fc2(gelu(fc1(norm(x))))``, hidden width twice ``width``): the
    small generic network :func:`calibrate` times in place (see :func:`_in_network`)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(),
                                                  nn.Linear(2 * width, width)) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return x


def calibrate(device: torch.device | str = "cpu", *, name: str | None = None, quick: bool = False) -> HardwareProfile:
    """Fit a :class:`HardwareProfile` for ``device`` from micro-benchmarks (about 4 s on 2 CPU cores).

    Every figure comes from a least-squares fit ``t = overhead + x * cost`` over a few sizes, of the
    fastest of repeated timings (:func:`iasf_search.hardware.timing.time_call`) taken in rotation through all
    the micro-benchmarks (see :func:`_fastest_in_rotation`):

    * ``kernel_overhead_us``: one bare op call (an add of 1-element tensors), plus the framework's
      share per kernel of a stack of four pre-norm MLP blocks (:class:`_MLPStack`) on tiny tensors:
      its time less its kernels' predicted costs, per kernel. ``network_factor`` (CPU only): the same
      stack on realistic tensors, its time less the kernel overheads over its kernels' predicted own
      costs.
    * ``peak_flops``: matmuls, square and token-shaped ``(B*T, D) x (D, D or 4D)`` (x: FLOPs). On CUDA
      bfloat16 and float16 too; on a CPU both copy the float32 figure (CPU half-precision matmuls
      are rarely faster, and CPU inference in them is uncommon).
    * ``memory_bandwidth``: adds ``c = a + b`` of float32 tensors far larger than the caches (x: bytes).
    * CPU only: ``cache_bandwidth`` from adds and multiplies of token tensors (``cache_bytes``: the
      largest such working set), ``gather_ns`` from transposed against contiguous copies, and a
      ``kinds`` entry for every kind of :data:`KINDS` from its ops on token tensors of a few shapes
      (see :func:`_kernel_benchmarks`). On CUDA ``kinds`` stays empty: a GPU's small kernels are
      launch- and bandwidth-bound, which the plain roofline covers.

    ``quick`` uses fewer sizes and repeats (a rough profile in well under a second, for tests).
    Runs with the current ``torch.get_num_threads()``; the profile holds for that thread count.
    The caller's random number generators are left as they were.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device.index if device.index is not None else torch.cuda.current_device()] if cuda else []):
        torch.manual_seed(0)
        return _calibrate(device, name, quick)


def _calibrate(device: torch.device, name: str | None, quick: bool) -> HardwareProfile:
    cuda = device.type == "cuda"
    tiny = torch.ones(1, device=device)
    stacks = [(_MLPStack(shape[-1]).to(device).eval(), torch.ones(*shape, device=device)) for shape in _STACK_INPUTS]
    stack_kernels = [trace_kernels(stack, x) for stack, x in stacks]
    benchmarks: Benchmarks = {"overhead": [(partial(torch.add, tiny, tiny), 1.0)],
                              **{f"stack{i}": [(partial(stack, x), 1.0)] for i, (stack, x) in enumerate(stacks)}}
    for dtype in ("float32", "bfloat16", "float16") if cuda else ("float32",):
        mats = [torch.randn(n, n, device=device, dtype=DTYPES[dtype]) for n in ((128, 256) if quick else (128, 256, 512))]
        mats = [m.repeat(16, 16) for m in mats] if cuda else mats
        benchmarks[f"peak_{dtype}"] = [(partial(torch.matmul, m, m), 2.0 * m.shape[0] ** 3) for m in mats]
    big = [torch.randn(n, device=device) for n in ((1 << 21, 1 << 22) if quick else (1 << 22, 1 << 23, 1 << 24))]
    benchmarks["dram"] = [(partial(torch.add, a, a), 3.0 * a.nbytes) for a in big]
    if not cuda:
        benchmarks.update(_kernel_benchmarks(device, quick))
        benchmarks["matmul"] += benchmarks.pop("peak_float32")
    calls = [(name, fn, x) for name, pairs in benchmarks.items() for fn, x in pairs]
    with torch.inference_mode():
        seconds = _fastest_in_rotation([fn for _, fn, _ in calls], device, rounds=4 if quick else 15)
    fits = {name: _fit([(x, t) for (n, _, x), t in zip(calls, seconds, strict=True) if n == name]) for name in benchmarks}

    bare_s = fits["overhead"][0]  # one op called alone
    bandwidth = 1.0 / fits["dram"][0]
    threads = f", {torch.get_num_threads()} threads" if not cuda else ""
    profile = HardwareProfile(
        name=name or f"local-{device.type}", peak_flops={}, memory_bandwidth=bandwidth, kernel_overhead_us=bare_s * 1e6,
        description=f"calibrated by iasf-search calibrate on {_device_name(device)} ({device.type}{threads}, torch {torch.__version__})")
    if cuda:
        profile = replace(profile, peak_flops={d: 1.0 / fits[f"peak_{d}"][0] for d in DTYPES})
        return _in_network(profile, stack_kernels, [fits[f"stack{i}"][0] for i in range(len(stacks))], factor=False)
    peak = 1.0 / fits["matmul"][0]

    def extra_us(fixed_s: float) -> float:  # a kind's fixed time beyond a bare op call's
        return max(0.0, fixed_s - bare_s) * 1e6

    kinds = {kind: KindCost(element_ns=cost * 1e9, overhead_us=extra_us(fixed)) for kind, (cost, fixed) in fits.items()
             if kind in KINDS and kind not in ("matmul", "memory")}
    kinds["matmul"] = KindCost(element_ns=fits["matmul_outputs"][0] * 1e9, overhead_us=extra_us(fits["matmul"][1]))
    kinds["memory"] = KindCost(overhead_us=extra_us(fits["memory"][1]))
    profile = replace(profile, peak_flops={"float32": peak, "bfloat16": peak, "float16": peak},
                      cache_bandwidth=max(1.0 / fits["memory"][0], bandwidth), cache_bytes=max(x for _, x in benchmarks["memory"]),
                      gather_ns=max(0.0, fits["gather"][0] - fits["copy"][0]) * 1e9, kinds=kinds)
    return _in_network(profile, stack_kernels, [fits[f"stack{i}"][0] for i in range(len(stacks))])


def _in_network(profile: HardwareProfile, traces: Sequence[Sequence[Kernel]], measured_s: Sequence[float], *,
                factor: bool = True) -> HardwareProfile:
    """``profile`` completed from two runs of a small network (:class:`_MLPStack`): on tiny
    tensors, the time its kernels' own costs leave unexplained is the framework's share (module
    calls, view ops, Python), added to ``kernel_overhead_us``; on realistic tensors (when
    ``factor``; not on a GPU, where these tensors are still tiny), the ratio of the rest to the
    kernels' predicted own costs is ``network_factor``."""
    (tiny, real), (tiny_s, real_s) = traces, measured_s
    framework_s = max(0.0, (tiny_s - predict_latency_ms(tiny, profile) / 1000.0) / len(tiny))
    profile = replace(profile, kernel_overhead_us=profile.kernel_overhead_us + framework_s * 1e6)
    if not factor:
        return profile
    own_s = predict_latency_ms(real, profile) / 1000.0 - len(real) * profile.kernel_overhead_us * 1e-6
    return replace(profile, network_factor=max(0.1, (real_s - len(real) * profile.kernel_overhead_us * 1e-6) / own_s))
