"""Hardware profiles and a roofline latency prediction for hardware that need not be present.

A :class:`HardwareProfile` holds a device's peak FLOP/s per dtype, its memory bandwidth and a fixed
cost per kernel. :func:`trace_kernels` runs a model once and records every kernel it launches (its
kind, FLOPs, bytes moved, elements, dtype); :func:`predict_latency_ms` sums over the kernels

    network_factor * (max(flops / peak_flops[dtype], bytes / bandwidth, elements * element_ns[kind])
                      + gathered * gather_ns + overhead[kind])
    + kernel_overhead

``bandwidth`` is ``cache_bandwidth`` for a kernel whose bytes fit in ``cache_bytes`` when the profile
gives both, else ``memory_bandwidth``. The optional ``kinds`` table gives a kind of kernel (see
:data:`KINDS`) a fixed cost of its own and a per-element cost, a third ceiling beside FLOPs and
bytes; the optional ``gather_ns`` charges every element an elementwise kernel reads from a tensor
laid out differently from its output (a transposed copy); ``network_factor`` (default 1) is how much
slower kernels run inside a network than alone. A CPU needs these: there, activations,
normalisation, pooling, convolutions, attention scores, top-k and gathers run far below the matmul
peak and the memory bandwidth, and oneDNN convolutions cost a large fixed time per call; only a
measurement gives those figures. The built-in GPU profiles leave them out (a plain roofline with
datasheet figures). Profiles are YAML files (:func:`load_profile`, :func:`write_profile`);
:func:`calibrate` fits every figure for the local machine from micro-benchmarks timed with
:func:`iasf_search.timing.time_call`.
"""

from __future__ import annotations

import math
import platform
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry, sdpa_flop_count

from iasf_search.errors import BadInput, SpaceError
from iasf_search.timing import time_call

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The dtypes a profile gives a peak for, by the name used in profile files and the ``dtype`` option."""

KINDS: dict[str, str] = {
    "matmul": "mm, addmm, bmm; elements: output elements",
    "convolution": "dense (ungrouped) convolution; elements: output elements",
    "depthwise": "grouped (depthwise) convolution; elements: output elements",
    "attention": "fused scaled-dot-product attention; elements: attention scores (batch * heads * queries * keys)",
    "pooling": "max/avg pooling; elements: output elements times window size (adaptive pooling: input elements)",
    "normalization": "layer/group/batch/RMS norm; elements: input elements",
    "activation": "transcendental elementwise ops (gelu, sigmoid, softmax, exp, tanh, ...); elements: output elements",
    "reduction": "sum, mean, max, ... over dimensions; elements: input elements",
    "compare": "comparisons and selects (ge, eq, where, masked_fill, ...); elements: output elements",
    "selection": "top-k and sorting; elements: input elements",
    "memory": "every other kernel: arithmetic, copies, concatenation; elements: largest tensor",
}
"""The kinds of kernel :func:`trace_kernels` tells apart; a profile's ``kinds`` table may give each
a fixed cost on top of ``kernel_overhead_us`` (``overhead_us``) and a per-element cost (``element_ns``)."""


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
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{file}: no such hardware profile; write one with `iasf-search calibrate --out {file}`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{file}: cannot read the hardware profile: {exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(file, "", f"not valid YAML: {problem}") from None
    return profile_from_dict(doc, file)


def write_profile(profile: HardwareProfile, path: str | Path) -> Path:
    """Write ``profile`` as YAML to ``path`` (parent folders created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Hardware profile for iasf-search's predicted_latency_ms cost model: name this file as\n"
              f"# `costs: {{predicted_latency_ms: {{target: {out}}}}}` in a space. FLOP/s, bytes/s, µs, ns.\n")
    out.write_text(header + yaml.safe_dump(profile.to_dict(), sort_keys=False), encoding="utf-8")
    return out


# ----------------------------------------------------------------------------------------------
# Kernel tracing


@dataclass(frozen=True)
class Kernel:
    """One kernel a model launched.

    :param op: the aten op (``aten.addmm.default``).
    :param kind: a key of :data:`KINDS`.
    :param flops: floating-point operations (a multiply-add is 2).
    :param bytes: bytes read + written, at the traced dtype.
    :param float_bytes: the part of ``bytes`` in floating-point tensors: the part that changes size
        when the same model runs in another dtype (indices and masks do not).
    :param elements: the count a per-element cost of ``kind`` applies to (see :data:`KINDS`).
    :param gathered: elements read from inputs laid out differently from the output (a transposed
        copy, an add of a tensor and a transposed one); 0 for matmuls, convolutions and pooling,
        which take strided layouts natively.
    :param dtype: the floating-point dtype it ran in (empty when it touched none).
    """

    op: str
    kind: str
    flops: float
    bytes: float
    float_bytes: float
    elements: float
    gathered: float
    dtype: str

    def bytes_as(self, dtype: str) -> float:
        """Bytes this kernel moves when its floating-point tensors are ``dtype`` instead of the traced one."""
        traced = DTYPES.get(self.dtype)
        if traced is None or dtype == self.dtype:
            return self.bytes
        return self.bytes - self.float_bytes + self.float_bytes * DTYPES[dtype].itemsize / traced.itemsize


_aten = torch.ops.aten
_NO_KERNEL = {_aten._unsafe_view.default, _aten.empty.memory_format, _aten.empty_strided.default,
              _aten.scalar_tensor.default}
"""Ops that move no tensor data although their schema is not marked as a view (allocation, re-labelling)."""
_ACTIVATIONS = {"gelu", "sigmoid", "silu", "tanh", "exp", "exp2", "expm1", "erf", "erfc", "erfinv", "log", "log1p",
                "log2", "log10", "_softmax", "_log_softmax", "softplus", "elu", "selu", "celu", "mish", "sin", "cos",
                "tan", "atan", "pow", "logit", "hardswish", "hardsigmoid"}
_NORMS = {"native_layer_norm", "native_group_norm", "native_batch_norm", "_native_batch_norm_legit",
          "_native_batch_norm_legit_no_training", "_fused_rms_norm", "rms_norm"}
_REDUCTIONS = {"sum", "mean", "amax", "amin", "max", "min", "prod", "var", "std", "var_mean", "std_mean", "norm",
               "linalg_vector_norm", "logsumexp", "argmax", "argmin", "any", "all", "cumsum", "cumprod"}
_COMPARES = {"where", "ge", "gt", "le", "lt", "eq", "ne", "masked_fill", "logical_and", "logical_or", "logical_not",
             "logical_xor", "bitwise_and", "bitwise_or", "bitwise_not", "isnan", "isinf"}
_SELECTION = {"topk", "sort", "kthvalue", "argsort", "median", "nanmedian", "mode", "msort"}
_CONVOLUTIONS = {"convolution", "_convolution", "cudnn_convolution", "convolution_overrideable", "mkldnn_convolution"}
_MATMULS = {"mm", "addmm", "bmm", "baddbmm", "_scaled_mm", "matmul"}
_ELEMENTWISE_KINDS = ("memory", "activation", "normalization", "reduction", "compare")
"""Kinds whose kernels pay ``gather_ns`` for inputs in another layout (the others read strides natively)."""


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _nbytes(t: torch.Tensor) -> int:
    """Bytes of ``t`` that a kernel touches: its elements, but no more than its storage (broadcast views)."""
    dense = t.numel() * t.element_size()
    try:
        return min(dense, t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):
        return dense


def _order(t: torch.Tensor, dims: Sequence[int]) -> list[int]:
    return sorted(dims, key=lambda d: -t.stride(d))


def _gathered(inputs: Sequence[torch.Tensor], out: torch.Tensor) -> int:
    """Elements of the inputs of ``out``'s shape whose memory order (over the dimensions they do not
    broadcast) differs from ``out``'s: an elementwise kernel reads them with a gather."""
    total = 0
    for t in inputs:
        if t.shape != out.shape or t.numel() <= 1:
            continue
        dims = [d for d in range(t.dim()) if t.shape[d] > 1 and t.stride(d) != 0]
        if _order(t, dims) != _order(out, dims):
            total += t.numel()
    return total


def _kind_and_elements(name: str, args: Sequence[Any], inputs: list[torch.Tensor], outputs: list[torch.Tensor]) -> tuple[str, int]:
    first_in = inputs[0].numel() if inputs else 0
    first_out = outputs[0].numel() if outputs else 0
    largest = max((t.numel() for t in inputs + outputs), default=0)
    base = name.rstrip("_")
    if "scaled_dot_product" in name or name in ("_flash_attention_forward", "_efficient_attention_forward"):
        q, k = args[0], args[1]
        return "attention", math.prod(q.shape[:-1]) * k.shape[-2]
    if name in _CONVOLUTIONS:
        groups = args[8] if len(args) > 8 and isinstance(args[8], int) else 1
        return ("depthwise" if groups > 1 else "convolution"), first_out
    for kind, names, count in (("matmul", _MATMULS, first_out), ("normalization", _NORMS, first_in),
                               ("activation", _ACTIVATIONS, first_out), ("reduction", _REDUCTIONS, largest),
                               ("compare", _COMPARES, first_out), ("selection", _SELECTION, first_in)):
        if base in names:
            return kind, count
    if "pool" in name:
        window = args[1] if len(args) > 1 and "adaptive" not in name else None
        taps = math.prod(window) if isinstance(window, (list, tuple)) else window if isinstance(window, int) else None
        return "pooling", first_out * taps if taps else first_in
    return "memory", largest


def kernel_flops(func: torch._ops.OpOverload, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> float:
    """FLOPs of one aten op: torch's registered formula when there is one (matmul, convolution,
    fused attention), 4·B·H·Lq·Lk·D for attention kernels without one (CPU's fused SDPA), else one
    FLOP per element of the largest tensor it reads or writes (elementwise ops and reductions)."""
    packet = func._overloadpacket
    if packet in flop_registry:
        return float(flop_registry[packet](*args, **kwargs, out_val=out))
    if "scaled_dot_product" in packet.__name__ and len(args) >= 3:
        q, k, v = args[:3]
        return float(sdpa_flop_count(tuple(q.shape), tuple(k.shape), tuple(v.shape)))
    return float(max((t.numel() for t in _tensors((args, kwargs, out))), default=0))


def kernel_of(func: torch._ops.OpOverload, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Kernel:
    """The :class:`Kernel` record of one executed aten op."""
    inputs, outputs = _tensors((args, kwargs)), _tensors(out)
    seen: set[int] = set()
    total = floats = 0
    dtype = ""
    for t in inputs + outputs:
        if id(t) in seen:
            continue
        seen.add(id(t))
        n = _nbytes(t)
        total += n
        if t.is_floating_point():
            floats += n
            dtype = dtype or str(t.dtype).removeprefix("torch.")
    kind, elements = _kind_and_elements(func._overloadpacket.__name__, args, inputs, outputs)
    gathered = _gathered(inputs, outputs[0]) if kind in _ELEMENTWISE_KINDS and outputs else 0
    return Kernel(str(func), kind, kernel_flops(func, args, kwargs, out), float(total), float(floats), float(elements),
                  float(gathered), dtype)


class _KernelTracer(TorchDispatchMode):
    """Runs ops as usual and appends a :class:`Kernel` for every one that launches a kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels: list[Kernel] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
        kwargs = kwargs or {}
        if not isinstance(func, torch._ops.OpOverload) or func.is_view or func in _NO_KERNEL:
            return func(*args, **kwargs)
        if func._overloadpacket not in flop_registry:
            with self:  # a composite op (linear, conv2d, softmax, matmul, SDPA): record the kernels it calls
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        self.kernels.append(kernel_of(func, args, kwargs, out))
        return out


def trace_kernels(model: nn.Module | Callable[[torch.Tensor], Any], example: torch.Tensor) -> list[Kernel]:
    """The kernels one forward pass of ``model`` on ``example`` launches, in order.

    Runs the model for real (without gradients, on the device where ``model`` and ``example`` are),
    so data-dependent ops such as top-k masks take their real path. View and metadata-only ops
    are skipped; composite ops are followed down to the kernels they call. The model is not changed.
    """
    tracer = _KernelTracer()
    with torch.no_grad(), tracer:
        model(example)
    return tracer.kernels


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


# ----------------------------------------------------------------------------------------------
# Calibration


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
    fastest of repeated timings (:func:`iasf_search.timing.time_call`) taken in rotation through all
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
