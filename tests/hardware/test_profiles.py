"""Hardware profiles and the roofline prediction (iasf_search.hardware.profiles)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import small_model

from iasf_search.errors import BadInput, SpaceError
from iasf_search.hardware.kernels import Kernel, trace_kernels
from iasf_search.hardware.profiles import HardwareProfile, KindCost, kernel_time_s, load_profile, predict_latency_ms, write_profile

PROFILES = Path(__file__).resolve().parents[2] / "plugins" / "hardware_profiles"


def profile(**changes) -> HardwareProfile:
    """A round-number profile: 1 GFLOP/s, 1 GB/s, no fixed costs."""
    base = {"name": "toy", "peak_flops": {"float32": 1e9, "bfloat16": 4e9}, "memory_bandwidth": 1e9, "kernel_overhead_us": 0.0}
    return HardwareProfile(**{**base, **changes})


def kernel(flops: float = 0.0, nbytes: float = 0.0, *, kind: str = "memory", elements: float = 0.0, gathered: float = 0.0,
           float_bytes: float | None = None) -> Kernel:
    return Kernel("aten.test.default", kind, flops, nbytes, nbytes if float_bytes is None else float_bytes, elements, gathered,
                  "float32")


# ---------------------------------------------------------------------------------------------- profiles


def test_profile_round_trip(tmp_path):
    full = profile(description="every field", cache_bandwidth=5e9, cache_bytes=1e6, gather_ns=1.5, network_factor=1.2,
                   kinds={"activation": KindCost(element_ns=2.5, overhead_us=3.0), "memory": KindCost(overhead_us=1.0)})
    for p in (profile(), full):
        path = write_profile(p, tmp_path / "sub" / f"{p.name}.yaml")
        assert load_profile(path) == p
        assert path.read_text().startswith("# Hardware profile")


@pytest.mark.parametrize("name", ["h100", "a100", "cpu"])
def test_builtin_profiles_load(name):
    p = load_profile(PROFILES / f"{name}.yaml")
    assert p.name == name
    assert set(p.peak_flops) == {"float32", "bfloat16", "float16"}
    assert all(v > 0 for v in p.peak_flops.values()) and p.memory_bandwidth > 0


def test_builtin_gpu_figures_are_the_dense_datasheet_ones():
    h100, a100 = load_profile(PROFILES / "h100.yaml"), load_profile(PROFILES / "a100.yaml")
    assert h100.peak_flops["bfloat16"] == pytest.approx(989.4e12) and h100.memory_bandwidth == pytest.approx(3.35e12)
    assert a100.peak_flops["bfloat16"] == pytest.approx(312e12) and a100.memory_bandwidth == pytest.approx(2.039e12)
    assert h100.peak_flops["float32"] == pytest.approx(67e12) and a100.peak_flops["float32"] == pytest.approx(19.5e12)


GOOD = {"name": "x", "peak_flops": {"float32": 1.0e12}, "memory_bandwidth": 1.0e11, "kernel_overhead_us": 5.0}


@pytest.mark.parametrize(("change", "key", "words"), [
    ({"memory_bandwidth": None}, "memory_bandwidth", "missing"),
    ({"memory_bandwidth": "fast"}, "memory_bandwidth", "expected a positive number"),
    ({"memory_bandwidth": "1e11"}, "memory_bandwidth", "write 1.0e+12"),
    ({"kernel_overhead_us": -1}, "kernel_overhead_us", "number >= 0"),
    ({"peak_flops": {"float32": 0}}, "peak_flops.float32", "positive"),
    ({"peak_flops": {"fp32": 1.0e12}}, "peak_flops.fp32", "allowed: float32, bfloat16, float16"),
    ({"peak_flops": 1.0e12}, "peak_flops", "expected a mapping"),
    ({"bandwith": 1.0}, "bandwith", "unknown key"),
    ({"cache_bandwidth": 1.0e12}, "cache_bytes", "go together"),
    ({"kinds": {"gelu": {"element_ns": 1.0}}}, "kinds.gelu", "unknown kernel kind"),
    ({"kinds": {"activation": {"ns": 1.0}}}, "kinds.activation.ns", "allowed: element_ns, overhead_us"),
    ({"name": ""}, "name", "non-empty string"),
    ({"network_factor": 0}, "network_factor", "positive"),
])
def test_bad_profile_names_file_and_key(tmp_path, change, key, words):
    doc = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpaceError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: ") and words in message and "\n" not in message


def test_unreadable_profiles(tmp_path):
    with pytest.raises(BadInput, match=r"nope\.yaml: no such hardware profile; write one with `iasf-search calibrate"):
        load_profile(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SpaceError, match=r"list\.yaml: a hardware profile must be a YAML mapping"):
        load_profile(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("name: [x\n")
    with pytest.raises(SpaceError, match=r"broken\.yaml: not valid YAML"):
        load_profile(tmp_path / "broken.yaml")


# ---------------------------------------------------------------------------------------------- roofline


def test_roofline_compute_and_memory_bound_kernels():
    p = profile()
    assert kernel_time_s(kernel(flops=2e6, nbytes=1e3), p, "float32") == pytest.approx(2e-3)  # compute-bound: 2e6 / 1e9
    assert kernel_time_s(kernel(flops=10, nbytes=3e6), p, "float32") == pytest.approx(3e-3)  # memory-bound: 3e6 / 1e9
    assert kernel_time_s(kernel(flops=2e6, nbytes=3e6), p, "float32") == pytest.approx(3e-3)  # the larger of the two
    # doubling the work of the binding resource doubles the time; the other one does not matter
    assert kernel_time_s(kernel(flops=4e6, nbytes=1e3), p, "float32") == pytest.approx(4e-3)
    assert kernel_time_s(kernel(flops=2e6, nbytes=2e3), p, "float32") == pytest.approx(2e-3)
    # bfloat16: a faster peak, and floating-point bytes halve (integer bytes do not)
    assert kernel_time_s(kernel(flops=8e6, nbytes=1e3), p, "bfloat16") == pytest.approx(2e-3)
    assert kernel_time_s(kernel(flops=1, nbytes=3e6, float_bytes=2e6), p, "bfloat16") == pytest.approx(2e-3)


def test_overheads_cache_gather_and_per_element_ceilings():
    p = profile(kernel_overhead_us=5.0, cache_bandwidth=1e10, cache_bytes=1e6, gather_ns=2.0,
                kinds={"activation": KindCost(element_ns=1.0, overhead_us=10.0)})
    assert kernel_time_s(kernel(nbytes=1e6), p, "float32") == pytest.approx(1e6 / 1e10 + 5e-6)  # fits the cache
    assert kernel_time_s(kernel(nbytes=2e6), p, "float32") == pytest.approx(2e6 / 1e9 + 5e-6)  # does not
    assert kernel_time_s(kernel(nbytes=1e3, gathered=1000), p, "float32") == pytest.approx(1e3 / 1e10 + 2e-6 + 5e-6)
    act = kernel(nbytes=1e3, kind="activation", elements=1e5)  # 0.1 ms of per-element cost beats 0.1 µs of bytes
    assert kernel_time_s(act, p, "float32") == pytest.approx(1e-4 + 15e-6)
    ms = predict_latency_ms([act, kernel(flops=2e6)], p)
    assert ms == pytest.approx(1000 * (1e-4 + 15e-6 + 2e-3 + 5e-6))
    # network_factor stretches a kernel's own time, not the per-kernel overhead
    slow = HardwareProfile(**{**p.__dict__, "network_factor": 2.0})
    assert kernel_time_s(act, slow, "float32") == pytest.approx(2 * (1e-4 + 10e-6) + 5e-6)


def test_unknown_dtype_or_missing_peak_is_bad_input():
    with pytest.raises(BadInput, match="unknown dtype 'int8'"):
        predict_latency_ms([kernel(flops=1)], profile(), "int8")
    with pytest.raises(BadInput, match="has no peak_flops for float16; it gives: float32, bfloat16"):
        predict_latency_ms([kernel(flops=1)], profile(), "float16")


def test_prediction_grows_with_batch_size_and_h100_beats_a100():
    model = small_model()
    h100, a100, cpu = (load_profile(PROFILES / f"{n}.yaml") for n in ("h100", "a100", "cpu"))
    # (from 2 up: with 1 sample a linear layer on a strided input runs as mm + add, one kernel more than addmm)
    traces = {b: trace_kernels(model, torch.randn(b, 1, 8, 8)) for b in (2, 16, 128, 1024)}
    for p in (h100, a100, cpu):
        for dtype in ("float32", "bfloat16"):
            ms = [predict_latency_ms(traces[b], p, dtype) for b in sorted(traces)]
            assert all(a < b for a, b in zip(ms, ms[1:], strict=False)), (p.name, dtype, ms)
    for b, kernels in traces.items():
        for dtype in ("float32", "bfloat16"):
            assert predict_latency_ms(kernels, h100, dtype) < predict_latency_ms(kernels, a100, dtype), (b, dtype)
    # on the same GPU, bfloat16 is never slower than float32 (faster peak, half the bytes)
    assert predict_latency_ms(traces[1024], h100, "bfloat16") < predict_latency_ms(traces[1024], h100, "float32")
