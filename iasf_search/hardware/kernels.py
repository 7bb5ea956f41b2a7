"""Kernel tracing: the kernels one forward pass of a model launches, with what each one costs to run.

Contract: :func:`trace_kernels` runs a model once, for real (no gradients, on the device where the
model and its input are), and returns a :class:`Kernel` for every aten op that launches a kernel, in
order: its op, its kind (a key of :data:`KINDS`), FLOPs (:func:`kernel_flops`), bytes read and
written, the elements a per-element cost applies to, the elements it gathers from inputs in another
memory layout, and its floating-point dtype (a key of :data:`DTYPES`). View and metadata-only ops
are skipped; composite ops are followed down to the kernels they call; the model is not changed.
:func:`kernel_of` builds the record of one executed op.

This module knows nothing of hardware: it depends on torch alone (its private names come through
:mod:`iasf_search.torch_internals`). The roofline that turns kernels into a latency is
:mod:`iasf_search.hardware.profiles`, whose profiles are keyed by :data:`KINDS` and :data:`DTYPES`
(defined here, since they are what a trace tells apart).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import flop_registry, sdpa_flop_count

from iasf_search.torch_internals import OpOverload, TorchDispatchMode, tree_flatten

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
"""The kinds of kernel :func:`trace_kernels` tells apart; a hardware profile's ``kinds`` table (see
:class:`iasf_search.hardware.profiles.HardwareProfile`) may give each a fixed cost on top of
``kernel_overhead_us`` (``overhead_us``) and a per-element cost (``element_ns``)."""


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


def kernel_flops(func: OpOverload, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> float:
    """FLOPs of one aten op: torch's registered formula when there is one (matmul, convolution,
    fused attention), 4·B·H·Lq·Lk·D for attention kernels without one (CPU's fused SDPA), else one
    FLOP per element of the largest tensor it reads or writes (elementwise ops and reductions)."""
    packet = func.overloadpacket
    if packet in flop_registry:
        return float(flop_registry[packet](*args, **kwargs, out_val=out))
    if "scaled_dot_product" in packet.__name__ and len(args) >= 3:
        q, k, v = args[:3]
        return float(sdpa_flop_count(tuple(q.shape), tuple(k.shape), tuple(v.shape)))
    return float(max((t.numel() for t in _tensors((args, kwargs, out))), default=0))


def kernel_of(func: OpOverload, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> Kernel:
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
    kind, elements = _kind_and_elements(func.overloadpacket.__name__, args, inputs, outputs)
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
        if not isinstance(func, OpOverload) or func.is_view or func in _NO_KERNEL:
            return func(*args, **kwargs)
        if func.overloadpacket not in flop_registry:
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
