"""Calibration of a hardware profile for this machine (iasf_search.hardware.calibration)."""

from __future__ import annotations

import math

import torch
from conftest import small_model

from iasf_search.hardware.calibration import calibrate
from iasf_search.hardware.kernels import KINDS, trace_kernels
from iasf_search.hardware.profiles import load_profile, predict_latency_ms, write_profile


def test_quick_calibration_gives_positive_finite_figures(tmp_path):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    p = calibrate("cpu", name="here", quick=True)
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream is untouched
    assert p.name == "here" and "calibrated" in p.description
    numbers = [*p.peak_flops.values(), p.memory_bandwidth, p.kernel_overhead_us, p.cache_bandwidth, p.cache_bytes, p.gather_ns,
               p.network_factor]
    numbers += [v for c in p.kinds.values() for v in (c.element_ns, c.overhead_us) if v is not None]
    assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in numbers)
    assert all(v > 0 for v in [*p.peak_flops.values(), p.memory_bandwidth, p.kernel_overhead_us, p.cache_bandwidth])
    assert set(p.peak_flops) == {"float32", "bfloat16", "float16"}
    assert set(p.kinds) == set(KINDS) and all(c.element_ns > 0 for k, c in p.kinds.items() if k != "memory")
    assert p.cache_bandwidth >= p.memory_bandwidth
    assert load_profile(write_profile(p, tmp_path / "here.yaml")) == p
    assert predict_latency_ms(trace_kernels(small_model(), torch.randn(8, 1, 8, 8)), p) > 0
