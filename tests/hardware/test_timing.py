"""Timing code on a device (iasf_search.hardware.timing): the statistics of repeated timings, the batch a
measurement runs on, and how ``time_call`` warms up, synchronises and times each repeat."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch

from iasf_search.hardware import timing
from iasf_search.hardware.timing import Timing, batch_of, synchronize, time_call

CPU = torch.device("cpu")


# -- Timing -------------------------------------------------------------------------------------------


def test_statistics_of_known_samples():
    t = Timing((4.0, 1.0, 10.0, 2.0, 3.0))
    assert t.median_ms == 3.0
    assert t.iqr_ms == 2.0  # inclusive quartiles of 1, 2, 3, 4, 10: 2 and 4
    assert t.cov == pytest.approx(math.sqrt(12.5) / 4.0)  # sample standard deviation / mean
    assert t.summary() == {"median_ms": 3.0, "iqr_ms": 2.0, "cov": 0.8839, "min_ms": 1.0, "max_ms": 10.0, "repeats": 5}


def test_one_sample_has_no_spread():
    t = Timing((2.5,))
    assert t.median_ms == 2.5 and t.iqr_ms == 0.0 and t.cov == 0.0
    assert t.summary() == {"median_ms": 2.5, "iqr_ms": 0.0, "cov": 0.0, "min_ms": 2.5, "max_ms": 2.5, "repeats": 1}


def test_equal_samples_have_zero_spread_and_the_summary_is_rounded():
    t = Timing((1.234567,) * 4)
    assert t.iqr_ms == 0.0 and t.cov == 0.0
    assert t.summary()["median_ms"] == 1.2346 and t.summary()["min_ms"] == 1.2346


def test_timing_is_immutable():
    t = Timing((1.0, 2.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.samples_ms = (3.0,)


# -- batch_of -----------------------------------------------------------------------------------------


def test_batch_of_fewer_samples_is_the_first_ones_as_a_view():
    example = torch.arange(5 * 2 * 3, dtype=torch.float32).reshape(5, 2, 3)
    batch = batch_of(example, 3)
    assert batch.shape == (3, 2, 3)
    assert torch.equal(batch, example[:3]) and batch.data_ptr() == example.data_ptr()
    assert batch_of(example, 5).shape == (5, 2, 3)


@pytest.mark.parametrize("size", [6, 12, 11])
def test_batch_of_more_samples_cycles_the_example(size):
    example = torch.arange(5 * 4, dtype=torch.float32).reshape(5, 4)
    batch = batch_of(example, size)
    assert batch.shape == (size, 4)
    for i in range(size):
        assert torch.equal(batch[i], example[i % 5])


def test_batch_of_one_sample_and_of_a_single_sample_example():
    example = torch.randn(1, 3, 8, 8)
    batch = batch_of(example, 4)
    assert batch.shape == (4, 3, 8, 8) and all(torch.equal(b, example[0]) for b in batch)
    assert batch_of(torch.randn(7, 2), 1).shape == (1, 2)


# -- time_call ----------------------------------------------------------------------------------------


class FakeClock:
    """``time.perf_counter`` replaced by a clock that only the timed function advances."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_warmup_calls_are_untimed_and_each_repeat_is_one_sample(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    durations_s = iter([5.0, 5.0, 0.001, 0.002, 0.004])  # two slow warm-up calls, then three timed ones
    calls = []

    def fn():
        calls.append(len(calls))
        clock.now += next(durations_s)

    result = time_call(fn, CPU, warmup=2, repeats=3)
    assert len(calls) == 5
    assert result.samples_ms == pytest.approx((1.0, 2.0, 4.0))
    assert result.median_ms == pytest.approx(2.0)


def test_synchronizes_after_the_warmup_and_after_every_repeat(monkeypatch):
    events = []
    monkeypatch.setattr(timing, "synchronize", lambda device: events.append(("sync", device)))
    result = time_call(lambda: events.append("call"), CPU, warmup=2, repeats=2)
    assert events == ["call", "call", ("sync", CPU), "call", ("sync", CPU), "call", ("sync", CPU)]
    assert len(result.samples_ms) == 2 and all(s >= 0 for s in result.samples_ms)


def test_no_warmup_and_the_defaults():
    calls = []
    assert len(time_call(lambda: calls.append(1), CPU, warmup=0, repeats=4).samples_ms) == 4 and len(calls) == 4
    calls.clear()
    assert len(time_call(lambda: calls.append(1), CPU).samples_ms) == 10 and len(calls) == 13  # 3 warm-up + 10


def test_real_time_is_measured_in_milliseconds():
    result = time_call(lambda: time.sleep(0.01), CPU, warmup=0, repeats=2)
    assert all(s >= 10.0 for s in result.samples_ms), result  # 10 ms of sleep each, never less


def test_synchronize_on_cpu_does_nothing_and_on_cuda_waits(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    synchronize(CPU)
    assert waited == []
    synchronize(torch.device("cuda", 1))
    assert waited == [torch.device("cuda", 1)]
