"""Timing code on a device: warm-up, synchronisation, median of repeats, and the spread.

Used by the measured cost models and by hardware calibration, so both time code the same way.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Repeated timings of one call, in milliseconds."""

    samples_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def iqr_ms(self) -> float:
        """Inter-quartile range (0 with fewer than two samples)."""
        if len(self.samples_ms) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples_ms, n=4, method="inclusive")
        return q3 - q1

    @property
    def cov(self) -> float:
        """Coefficient of variation of the samples (standard deviation / mean)."""
        if len(self.samples_ms) < 2:
            return 0.0
        return statistics.stdev(self.samples_ms) / statistics.fmean(self.samples_ms)

    def summary(self) -> dict[str, float]:
        """The figures recorded beside a measured cost."""
        return {"median_ms": round(self.median_ms, 4), "iqr_ms": round(self.iqr_ms, 4), "cov": round(self.cov, 4),
                "min_ms": round(min(self.samples_ms), 4), "max_ms": round(max(self.samples_ms), 4),
                "repeats": len(self.samples_ms)}


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (CUDA kernels run asynchronously; CPU needs nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, *, warmup: int = 3, repeats: int = 10) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times, each timed alone between
    device synchronisations (so queued GPU work is counted in the call that queued it)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        samples.append((time.perf_counter() - start) * 1000.0)
    return Timing(tuple(samples))


def batch_of(example: torch.Tensor, size: int) -> torch.Tensor:
    """A batch of exactly ``size`` samples from ``example`` (cycled when it holds fewer)."""
    if size <= len(example):
        return example[:size]
    reps = -(-size // len(example))
    return example.repeat(reps, *([1] * (example.dim() - 1)))[:size]
