"""Built-in cost model ``predicted_latency_ms``: roofline latency on a named hardware target.

The target need not be present: the model runs once here (on the trial's device) while every
kernel it launches is recorded (:func:`iasf_search.hardware.kernels.trace_kernels`), and the latency on the
target is predicted from the kernels' FLOPs, bytes and kinds and the target's hardware profile
(:func:`iasf_search.hardware.profiles.predict_latency_ms`). Targets: the built-in profiles in
``hardware_profiles/`` (``h100``, ``a100``, ``cpu``) or the path of a profile file, such as one
written by ``iasf-search calibrate --out FILE`` (relative paths from the current directory).

    costs:
      predicted_latency_ms: {target: h100, dtype: bfloat16, batch_size: 32}
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import CostModel, Measurement
from iasf_search.errors import BadInput
from iasf_search.hardware.kernels import DTYPES, trace_kernels
from iasf_search.hardware.profiles import HardwareProfile, load_profile, predict_latency_ms
from iasf_search.hardware.timing import batch_of
from iasf_search.params import Param, Range

BUILTIN_DIR = Path(__file__).resolve().parent / "hardware_profiles"
"""Where the built-in profiles live (shipped in the wheel as package data)."""


def builtin_profiles() -> dict[str, Path]:
    """Built-in target name -> its profile file."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml"))}


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime_ns: int) -> HardwareProfile:
    return load_profile(path)


def resolve_target(target: str) -> HardwareProfile:
    """The profile of a built-in target name, or of a profile file (relative to the current directory).

    :raises BadInput: neither a built-in name nor an existing file (the message lists the built-ins),
        or the file is not a valid profile (the message names its file and key).
    """
    builtins = builtin_profiles()
    path = builtins.get(target) or Path(target)
    try:
        usable = path.is_file()
    except (OSError, ValueError):  # a name the file system cannot hold (too long, a NUL byte)
        usable = False
    if not usable:
        raise BadInput(f"hardware target {target!r} is neither a built-in profile ({', '.join(builtins)}) nor a profile file; "
                       f"write one with `iasf-search calibrate --out FILE`")
    return _load(str(path.resolve()), path.stat().st_mtime_ns)


def _target_problem(target: Any) -> str | None:
    """Param rule: what is wrong with ``target`` (checked when the space is loaded), or None."""
    try:
        resolve_target(str(target))
    except BadInput as exc:
        return f"is not a usable hardware target: {exc}"
    return None


class PredictedLatency(CostModel):
    name = "predicted_latency_ms"
    unit = "ms"
    description = "roofline latency of one batch on a hardware target (built-in profile or calibrated file), from traced kernels"
    params = {
        "target": Param("cpu", str, rule=_target_problem,
                        help="built-in hardware profile (a100, cpu, h100) or the path of a profile YAML (iasf-search calibrate)"),
        "batch_size": Param(32, int, low=1, high=65536, help="samples per batch whose latency is predicted"),
        "dtype": Param("float32", str, choices=tuple(DTYPES), help="dtype the model would run in on the target"),
    }

    def check_ranges(self, ranges: Mapping[str, Range], *, widths: tuple[int, ...] | None) -> tuple[str, str] | None:
        """The target's profile must give a peak for the chosen dtype."""
        profile = resolve_target(str(ranges["target"].fixed))
        dtype = ranges["dtype"].fixed
        if dtype not in profile.peak_flops:
            return "dtype", (f"hardware target {profile.name!r} gives no peak_flops for {dtype}; "
                             f"it gives: {', '.join(profile.peak_flops)}")
        return None

    def measure(self, model: nn.Module, example: torch.Tensor, device: torch.device, options: Mapping[str, Any]) -> Measurement:
        profile = resolve_target(options["target"])
        x = batch_of(example, options["batch_size"]).to(device)
        kernels = trace_kernels(model, x)
        value = predict_latency_ms(kernels, profile, options["dtype"])
        return Measurement(value, {
            "target": options["target"], "profile": profile.name, "dtype": options["dtype"], "batch_size": options["batch_size"],
            "kernels": len(kernels), "gflops": round(sum(k.flops for k in kernels) / 1e9, 6),
            "mbytes": round(sum(k.bytes_as(options["dtype"]) for k in kernels) / 1e6, 6),
        })


@hookimpl
def iasf_register_cost_models(registry) -> None:
    registry.register(PredictedLatency())
