"""Kernel tracing: what a forward pass launches, with its FLOPs, bytes and kinds (iasf_search.hardware.kernels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from conftest import small_model
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from iasf_search.hardware.kernels import KINDS, trace_kernels
from iasf_search.plugin_manager import load_components

COMPONENTS = load_components(autoload=False)


def test_linear_layer_flops_and_bytes_are_exact():
    layer = nn.Linear(16, 32)
    (k,) = trace_kernels(layer, torch.randn(4, 16))
    assert k.op == "aten.addmm.default" and k.kind == "matmul" and k.dtype == "float32"
    assert k.flops == 2 * 4 * 16 * 32
    assert k.bytes == 4 * (32 + 4 * 16 + 16 * 32 + 4 * 32)  # bias, input, weight read; output written
    assert k.elements == 4 * 32 and k.gathered == 0


def test_views_launch_no_kernel_and_a_transposed_copy_is_a_gather():
    x = torch.randn(4, 6)
    assert trace_kernels(lambda t: t.view(-1).unsqueeze(0).transpose(0, 1), x) == []
    (copy,) = trace_kernels(lambda t: t.t().contiguous(), x)
    assert copy.kind == "memory" and copy.gathered == 24 and copy.bytes == 2 * 24 * 4
    (add,) = trace_kernels(lambda t: t + t, x)
    assert add.gathered == 0


def test_sdpa_is_counted_with_the_attention_formula():
    q, k, v = torch.randn(2, 2, 8, 4), torch.randn(2, 2, 8, 4), torch.randn(2, 2, 8, 4)
    kernels = trace_kernels(lambda q: F.scaled_dot_product_attention(q, k, v), q)
    attention = [kern for kern in kernels if kern.kind == "attention"]
    assert len(attention) == 1 and "scaled_dot_product" in attention[0].op
    assert attention[0].flops == 4 * 2 * 2 * 8 * 8 * 4  # QK^T and AV, 2 FLOPs per multiply-add
    assert attention[0].elements == 2 * 2 * 8 * 8  # attention scores
    with FlopCounterMode(display=False) as counter, torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
        F.scaled_dot_product_attention(q, k, v)
    assert sum(kern.flops for kern in kernels if kern.kind in ("attention", "matmul")) == counter.get_total_flops()


def test_model_trace_counts_what_flop_counter_counts_and_leaves_the_model_alone():
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 1, 8, 8)
    kernels = trace_kernels(model, x)
    kinds = {k.kind for k in kernels}
    assert {"matmul", "attention", "depthwise", "convolution", "normalization", "activation"} <= kinds <= set(KINDS)
    assert all(k.bytes > 0 and k.dtype == "float32" for k in kernels)
    assert kernels == trace_kernels(model, x)  # deterministic
    assert not model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    matrix = sum(k.flops for k in kernels if k.kind in ("matmul", "attention", "convolution", "depthwise"))
    flops = COMPONENTS.cost_models.get("flops").measure(model, x, torch.device("cpu"), {})
    assert matrix == flops * len(x)
