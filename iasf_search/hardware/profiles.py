"""Hardware profiles and a roofline latency prediction for hardware that need not be present.

A :class:`HardwareProfile` holds a device's peak FLOP/s per dtype, its memory bandwidth and a fixed
cost per kernel. Given the kernels a model launches (:func:`iasf_search.hardware.kernels.trace_kernels`),
:func:`predict_latency_ms` sums over them

    network_factor * (max(flops / peak_flops[dtype], bytes / bandwidth, elements * element_ns[kind])
                      + gathered * gather_ns + overhead[kind])
    + kernel_overhead

(:func:`kernel_time_s` is one term). ``bandwidth`` is ``cache_bandwidth`` for a kernel whose bytes
fit in ``cache_bytes`` when the profile gives both, else ``memory_bandwidth``. The optional ``kinds``
table gives a kind of kernel (see :data:`iasf_search.hardware.kernels.KINDS`) a fixed cost of its own and a
per-element cost, a third ceiling beside FLOPs and bytes; the optional ``gather_ns`` charges every
element an elementwise kernel reads from a tensor laid out differently from its output (a
transposed copy); ``network_factor`` (default 1) is how much slower kernels run inside a network
than alone. A CPU needs these: there, activations, normalisation, pooling, convolutions, attention
scores, top-k and gathers run far below the matmul peak and the memory bandwidth, and oneDNN
convolutions cost a large fixed time per call; only a measurement gives those figures. The
built-in GPU profiles leave them out (a plain roofline with datasheet figures).

Contract: profiles are YAML files; :func:`load_profile` reads and validates one
(:func:`profile_from_dict`), raising :class:`BadInput` or :class:`SpaceError` with one line naming
the file, the key and the fix; :func:`write_profile` writes one that :func:`load_profile` reads back
equal; :func:`describe_profile` gives its figures in readable units. The prediction is a pure
function of the kernels, the profile and the dtype (no model runs, no device needed).
:func:`iasf_search.hardware.calibration.calibrate` fits a profile for the local machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iasf_search.errors import BadInput, SpaceError
from iasf_search.files import write_atomically
from iasf_search.hardware.kernels import DTYPES, KINDS, Kernel
from iasf_search.yaml_io import read_yaml_document


@dataclass(frozen=True)
class KindCost:
    """A kernel kind's own costs on one device (see :class:`HardwareProfile`); None: not given."""

    element_ns: float | None = None
    overhead_us: float | None = None


_KEYS = ("name", "description", "peak_flops", "memory_bandwidth", "kernel_overhead_us", "cache_bandwidth", "cache_bytes",
         "gather_ns", "network_factor", "kinds")
_EXAMPLE = "see plugins/hardware_profiles/h100.yaml for a complete profile"


@dataclass(frozen=True)
class HardwareProfile:
    """What the roofline needs to know about one device.

    :param peak_flops: dtype name (``float32``, ``bfloat16``, ``float16``) -> attainable FLOP/s of
        dense matrix multiplication in that dtype; a dtype without an entry cannot be predicted.
    :param memory_bandwidth: bytes/s between the compute units and main memory (HBM, DRAM).
    :param kernel_overhead_us: fixed cost of every kernel, in µs: launch on a GPU; on a CPU the
        framework's dispatch, module calls and view ops, per kernel of a small network.
    :param cache_bandwidth: bytes/s for a kernel whose bytes fit in ``cache_bytes`` (None: such a
        kernel runs at ``memory_bandwidth`` too). CPUs serve small activations from their caches at
        several times their DRAM bandwidth.
    :param cache_bytes: the working set (bytes read + written by one kernel) up to which
        ``cache_bandwidth`` applies.
    :param gather_ns: extra nanoseconds per element that an elementwise, normalisation or reduction
        kernel reads from a tensor whose memory layout differs from its output's (None: no charge).
    :param network_factor: how much longer a kernel's own time (everything but
        ``kernel_overhead_us``) is inside a network than in isolation (caches shared with the
        kernels around it); calibrated on a small network, 1 when not measured.
    :param kinds: kernel kind (a key of :data:`KINDS`) -> its :class:`KindCost`: ``element_ns``,
        nanoseconds per element, a third ceiling beside FLOPs and bytes, and ``overhead_us``, a fixed
        cost per kernel of that kind on top of ``kernel_overhead_us``. Kinds not listed use neither.
    """

    name: str
    peak_flops: Mapping[str, float]
    memory_bandwidth: float
    kernel_overhead_us: float
    description: str = ""
    cache_bandwidth: float | None = None
    cache_bytes: float | None = None
    gather_ns: float | None = None
    network_factor: float = 1.0
    kinds: Mapping[str, KindCost] = field(default_factory=dict)

    def bandwidth(self, nbytes: float) -> float:
        """The bandwidth (bytes/s) a kernel moving ``nbytes`` is assumed to reach."""
        if self.cache_bandwidth is not None and self.cache_bytes is not None and nbytes <= self.cache_bytes:
            return self.cache_bandwidth
        return self.memory_bandwidth

    def to_dict(self) -> dict[str, Any]:
        """The profile-file form (plain YAML types)."""
        out: dict[str, Any] = {"name": self.name, "description": self.description,
                               "peak_flops": {k: float(v) for k, v in self.peak_flops.items()},
                               "memory_bandwidth": float(self.memory_bandwidth),
                               "kernel_overhead_us": float(self.kernel_overhead_us)}
        if self.cache_bandwidth is not None and self.cache_bytes is not None:
            out["cache_bandwidth"] = float(self.cache_bandwidth)
            out["cache_bytes"] = float(self.cache_bytes)
        if self.gather_ns is not None:
            out["gather_ns"] = float(self.gather_ns)
        if self.network_factor != 1.0:
            out["network_factor"] = float(self.network_factor)
        if self.kinds:
            out["kinds"] = {k: {f: float(v) for f, v in (("element_ns", c.element_ns), ("overhead_us", c.overhead_us))
                                if v is not None} for k, c in self.kinds.items()}
        return out


def describe_profile(profile: HardwareProfile) -> list[str]:
    """The profile's figures in readable units, one line each."""
    lines = ["peak FLOP/s: " + ", ".join(f"{d} {v / 1e9:,.1f} G" for d, v in profile.peak_flops.items()),
             f"memory bandwidth: {profile.memory_bandwidth / 1e9:,.1f} GB/s"]
    if profile.cache_bandwidth is not None and profile.cache_bytes is not None:
        lines.append(f"cache bandwidth: {profile.cache_bandwidth / 1e9:,.1f} GB/s up to {profile.cache_bytes / 2**20:.2f} MiB")
    lines.append(f"kernel overhead: {profile.kernel_overhead_us:.1f} µs")
    if profile.gather_ns is not None:
        lines.append(f"gather: {profile.gather_ns:.2f} ns per element")
    for kind, cost in profile.kinds.items():
        per_element = f"{cost.element_ns:.2f} ns/element, " if cost.element_ns is not None else ""
        lines.append(f"{kind}: {per_element}+{cost.overhead_us or 0.0:.1f} µs per kernel")
    return lines


def _number(doc: Mapping[str, Any], key: str, file: str, where: str, *, zero_ok: bool = False) -> float:
    value = doc.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (value >= 0 if zero_ok else value > 0)
    if not ok:
        need = "a number >= 0" if zero_ok else "a positive number"
        hint = "; YAML reads 1e12 as a string: write 1.0e+12" if isinstance(value, str) else ""
        raise SpaceError(file, where + key, f"expected {need}, got {value!r}{hint}")
    return float(value)


def _table(table: Any, key: str, allowed: Iterable[str], file: str, example: str, *, zero_ok: bool = False) -> dict[str, float]:
    allowed = tuple(allowed)
    if not isinstance(table, dict) or not table:
        raise SpaceError(file, key, f"expected a mapping such as {example}, got {table!r}")
    for k in table:
        if k not in allowed:
            raise SpaceError(file, f"{key}.{k}", f"unknown key; allowed: {', '.join(allowed)}")
    return {str(k): _number(table, k, file, f"{key}.", zero_ok=zero_ok) for k in table}


def _kinds(table: Any, file: str) -> dict[str, KindCost]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise SpaceError(file, "kinds", f"expected a mapping of kernel kind to {{element_ns, overhead_us}}, got {table!r}")
    out = {}
    for kind, costs in table.items():
        if kind not in KINDS:
            raise SpaceError(file, f"kinds.{kind}", f"unknown kernel kind; allowed: {', '.join(KINDS)}")
        given = _table(costs, f"kinds.{kind}", ("element_ns", "overhead_us"), file, "{element_ns: 2.5, overhead_us: 6.0}",
                       zero_ok=True)
        out[str(kind)] = KindCost(given.get("element_ns"), given.get("overhead_us"))
    return out


def profile_from_dict(doc: Any, file: str) -> HardwareProfile:
    """Validate a parsed profile document; :class:`SpaceError` naming ``file`` and the key otherwise."""
    if not isinstance(doc, dict):
        raise SpaceError(file, "", f"a hardware profile must be a YAML mapping; {_EXAMPLE}")
    for key in doc:
        if key not in _KEYS:
            raise SpaceError(file, str(key), f"unknown key; allowed: {', '.join(_KEYS)}")
    for key in ("name", "peak_flops", "memory_bandwidth", "kernel_overhead_us"):
        if key not in doc:
            raise SpaceError(file, key, f"missing; {_EXAMPLE}")
    if not isinstance(doc["name"], str) or not doc["name"]:
        raise SpaceError(file, "name", f"expected a non-empty string, got {doc['name']!r}")
    cache = [doc.get(k) is not None for k in ("cache_bandwidth", "cache_bytes")]
    if cache[0] != cache[1]:
        missing = "cache_bytes" if cache[0] else "cache_bandwidth"
        raise SpaceError(file, missing, "missing: cache_bandwidth and cache_bytes go together; give both or neither")
    return HardwareProfile(
        name=doc["name"], description=str(doc.get("description") or ""),
        peak_flops=_table(doc["peak_flops"], "peak_flops", DTYPES, file, "{float32: 6.7e+13}"),
        memory_bandwidth=_number(doc, "memory_bandwidth", file, ""),
        kernel_overhead_us=_number(doc, "kernel_overhead_us", file, "", zero_ok=True),
        cache_bandwidth=_number(doc, "cache_bandwidth", file, "") if cache[0] else None,
        cache_bytes=_number(doc, "cache_bytes", file, "") if cache[0] else None,
        gather_ns=_number(doc, "gather_ns", file, "", zero_ok=True) if doc.get("gather_ns") is not None else None,
        network_factor=_number(doc, "network_factor", file, "") if doc.get("network_factor") is not None else 1.0,
        kinds=_kinds(doc.get("kinds"), file),
    )


def load_profile(path: str | Path) -> HardwareProfile:
    """Read a profile file; :class:`BadInput` (missing, unreadable, not YAML) or :class:`SpaceError`
    (a key is wrong) with one line naming the file, the key and the fix."""
    file = str(path)
    doc = read_yaml_document(path, "hardware profile", f"write one with `iasf-search calibrate --out {file}`")
    return profile_from_dict(doc, file)


def write_profile(profile: HardwareProfile, path: str | Path) -> Path:
    """Write ``profile`` as YAML to ``path`` (parent folders created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Hardware profile for iasf-search's predicted_latency_ms cost model: name this file as\n"
              f"# `costs: {{predicted_latency_ms: {{target: {out}}}}}` in a space. FLOP/s, bytes/s, µs, ns.\n")
    write_atomically(out, header + yaml.safe_dump(profile.to_dict(), sort_keys=False))
    return out


# ----------------------------------------------------------------------------------------------
# Prediction


def kernel_time_s(kernel: Kernel, profile: HardwareProfile, dtype: str) -> float:
    """Roofline time of one kernel in seconds: ``network_factor * (max(flops / peak, bytes / bandwidth,
    elements * element_ns[kind]) + gathered * gather_ns + overhead[kind]) + kernel_overhead``."""
    peak = profile.peak_flops.get(dtype)
    if peak is None:
        raise BadInput(f"hardware profile '{profile.name}' has no peak_flops for {dtype}; it gives: {', '.join(profile.peak_flops)}")
    nbytes = kernel.bytes_as(dtype)
    cost = profile.kinds.get(kernel.kind, KindCost())
    per_element = kernel.elements * (cost.element_ns or 0.0) * 1e-9
    gather = kernel.gathered * (profile.gather_ns or 0.0) * 1e-9
    own = max(kernel.flops / peak, nbytes / profile.bandwidth(nbytes), per_element) + gather + (cost.overhead_us or 0.0) * 1e-6
    return profile.network_factor * own + profile.kernel_overhead_us * 1e-6


def predict_latency_ms(kernels: Sequence[Kernel], profile: HardwareProfile, dtype: str = "float32") -> float:
    """Predicted latency of running ``kernels`` one after another on ``profile``'s device, in ms.

    ``dtype`` is the dtype the model would run in there; bytes of floating-point tensors are
    scaled from the traced dtype to it (a float32 trace predicts bfloat16 with half the bytes).
    """
    if dtype not in DTYPES:
        raise BadInput(f"unknown dtype '{dtype}'; allowed: {', '.join(DTYPES)}")
    return 1000.0 * sum(kernel_time_s(k, profile, dtype) for k in kernels)
