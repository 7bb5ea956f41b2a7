"""IASF, the drop-in module (seed 000 §4.1): shapes, levels -> attention patterns, any sequence length
with one set of weights, architectures from graphs and exported files, argument errors."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

import iasf_search
from iasf_search import graph as arch_graph
from iasf_search.components import BuildContext, NodeOp
from iasf_search.iasf_module import IASF, LEVEL_PATTERNS
from iasf_search.plugin_manager import Components

SEED_EXAMPLE = """\
import torch
from iasf import IASF
iasf_module = IASF(input_dim=768, hidden_dim=1024, num_heads=8, topological_level=3)
input_tensor = torch.randn(32, 50, 768)
output = iasf_module(input_tensor)
assert output.shape == (32, 50, 768)
"""

IN, HIDDEN, HEADS = 6, 8, 2


def small(level: int = 0, **kw: Any) -> IASF:
    torch.manual_seed(0)
    return IASF(IN, HIDDEN, HEADS, level, **kw)


def test_seed_paper_example_runs_as_written():
    namespace: dict[str, Any] = {}
    with torch.no_grad():
        exec(SEED_EXAMPLE, namespace)
    assert namespace["output"].shape == (32, 50, 768)


def test_iasf_package_reexports_the_module():
    import iasf

    assert iasf.IASF is iasf_search.IASF is IASF


@pytest.mark.parametrize("level", range(4))
def test_every_level_builds_and_keeps_the_shape(level):
    module = small(level)
    attrs = module.architecture.nodes["n0"]
    assert attrs["op"] == "attention"
    assert attrs["config"]["pattern"] == LEVEL_PATTERNS[level]
    assert attrs["config"]["heads"] == HEADS
    assert module.architecture.nodes["n1"]["op"] == "mlp"
    assert arch_graph.inputs_of(module.architecture, "output") == ["n1"]
    for length in (module.seq_len, 5, 23):
        y = module(torch.randn(3, length, IN))
        assert y.shape == (3, length, IN)
        assert torch.isfinite(y).all()


def influence(module: IASF, length: int) -> torch.Tensor:
    """Per input position: the gradient norm of the output at position 0 with respect to it (one sample)."""
    x = torch.randn(1, length, IN, requires_grad=True)
    module(x)[0, 0].sum().backward()
    return x.grad[0].norm(dim=-1)  # (T,)


@pytest.mark.parametrize("length", [16, 21])  # the registered blocks' length, and another one
def test_level_selects_the_attention_pattern(length):
    torch.manual_seed(0)
    one_head = [IASF(IN, HIDDEN, 1, level) for level in range(4)]  # top-k keys are chosen per head
    full, local, dilated, topk = (influence(module, length) for module in one_head)
    assert (full > 0).all()  # every token reaches position 0
    assert (local[:3] > 0).all() and (local[3:] == 0).all()  # window 5: offsets 0..2
    assert (dilated[[0, 2, 4]] > 0).all()  # window 5, dilation 2: offsets 0, 2, 4
    assert dilated[[1, 3]].eq(0).all() and (dilated[5:] == 0).all()
    assert 0 < int((topk > 0).sum()) <= 8 + 1  # the 8 keys kept, and the query itself


def test_other_lengths_share_the_registered_parameters():
    module = small(1)
    names = list(module.state_dict())
    n_params = sum(p.numel() for p in module.parameters())
    x7, x16 = torch.randn(2, 7, IN), torch.randn(2, 16, IN)
    y7, y16 = module(x7), module(x16)
    module(torch.randn(1, 30, IN))
    assert list(module.state_dict()) == names
    assert sum(p.numel() for p in module.parameters()) == n_params
    assert all(n.split(".")[0] in {"in_proj", "blocks", "norm", "out_proj"} for n in names)  # one output: no out_fusion

    fresh = IASF(IN, HIDDEN, HEADS, 1, seq_len=7)  # its registered blocks are built for length 7
    fresh.load_state_dict(module.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x7), module(x7))

    with torch.no_grad():  # not a constant: the pre-norm's output sums to 0 over channels, so W + c maps it as W does
        weight = module.blocks["n0"].op.qkv.weight
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    assert not torch.allclose(module(x7), y7)
    assert not torch.allclose(module(x16), y16)


def test_gradients_from_another_length_reach_the_registered_parameters():
    module = small(2)
    x = torch.randn(2, 9, IN, requires_grad=True)
    module(x).pow(2).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_backward_reaches_the_input_projection():
    module = small(0)
    module(torch.randn(2, module.seq_len, IN)).sum().backward()
    assert module.in_proj.weight.grad.abs().sum() > 0
    assert module.blocks["n0"].op.qkv.weight.grad.abs().sum() > 0


def test_a_new_length_does_not_consume_the_random_stream():
    module = small(1)
    torch.manual_seed(123)
    module(torch.zeros(1, 11, IN))
    after = torch.rand(3)
    torch.manual_seed(123)
    torch.zeros(1, 11, IN)
    assert torch.equal(torch.rand(3), after)


def test_copy_and_dtype_follow_the_module():
    module = small(1)
    x = torch.randn(2, 9, IN)
    y = module(x)
    torch.testing.assert_close(copy.deepcopy(module)(x), y)
    y64 = module.double()(x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y, rtol=1e-4, atol=1e-5)


def searched_graph(make_graph) -> Any:
    """A searched-looking architecture: image stem, width 16, multi-input nodes with fusions."""
    return make_graph([
        {"op": "conv", "config": {"kernel": 3, "dilation": 1}},
        {"op": "attention", "config": {"heads": 2, "pattern": "local", "window": 3}, "inputs": ["input", "n0"], "fusion": "concat"},
        {"op": "pool", "config": {"kind": "avg", "kernel": 3}},
        {"op": "mlp", "config": {"expansion": 2}, "inputs": ["n1"]},
    ], width=16, output=["n2", "n3"], output_fusion="gated")


def test_arch_from_a_graph_keeps_every_hidden_node(make_graph):
    graph = searched_graph(make_graph)
    torch.manual_seed(0)
    module = IASF(5, 12, num_heads=5, topological_level=0, arch=graph)  # 5 heads unused: the attention node has 2
    assert graph.graph["width"] == 16  # the caller's graph is not changed
    assert module.architecture.graph["width"] == 12
    assert list(module.blocks) == ["n0", "n1", "n2", "n3"]
    for n in module.blocks:
        assert module.architecture.nodes[n]["op"] == graph.nodes[n]["op"]
        assert module.architecture.nodes[n]["config"] == graph.nodes[n]["config"]
    assert module.blocks["n1"].op.heads == 2
    assert module.blocks["n1"].fusion is not None and module.out_fusion is not None
    for length in (module.seq_len, 10):
        assert module(torch.randn(2, length, 5)).shape == (2, length, 5)


def test_arch_from_a_json_file_or_an_exported_directory(make_graph, tmp_path):
    graph = searched_graph(make_graph)
    (tmp_path / "arch.json").write_text(arch_graph.to_json(graph), encoding="utf-8")
    export = tmp_path / "export"
    export.mkdir()
    (export / "arch.json").write_text(arch_graph.to_json(graph), encoding="utf-8")
    (export / "weights.pt").write_bytes(b"not read")
    torch.manual_seed(0)
    reference = IASF(5, 12, 2, 0, arch=graph)
    x = torch.randn(2, 10, 5)
    for source in (tmp_path / "arch.json", str(tmp_path / "arch.json"), export, str(export)):
        module = IASF(5, 12, 2, 0, arch=source)
        assert arch_graph.same_architecture(module.architecture, reference.architecture)
        module.load_state_dict(reference.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(module(x), reference(x))


def test_arch_keeps_each_nodes_norm_and_ignores_the_readout(make_graph):
    """A node's norm is part of the block; the readout is the searched head's, which IASF replaces."""
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}, {"op": "conv", "config": {"kernel": 3, "dilation": 1}}])
    graph.nodes["n0"].update(norm="batch", norm_config={})
    graph.nodes[arch_graph.OUTPUT].update(readout="class_token", readout_config={"heads": 2})
    torch.manual_seed(0)
    module = IASF(5, 12, 2, 0, arch=graph)
    assert type(module.blocks["n0"].norm).__name__ == "TokenBatchNorm" and isinstance(module.blocks["n1"].norm, nn.LayerNorm)
    assert not any("readout" in name for name in module.state_dict())
    module.train()
    for length in (module.seq_len, 10):  # another length shares the batch norm's running statistics
        assert module(torch.randn(3, length, 5)).shape == (3, length, 5)
    assert int(module.blocks["n0"].norm.num_batches_tracked) == 2
    graph.nodes["n0"]["norm"] = "bach"
    with pytest.raises(ValueError, match=r"arch: node n0 uses norm 'bach'"):
        IASF(5, 12, 2, 0, arch=graph)


def test_num_heads_fills_components_configured_without_heads(make_graph):
    graph = make_graph([{"op": "attention", "config": {"pattern": "full"}}], width=16)
    module = IASF(4, 12, 3, 0, arch=graph)
    assert module.blocks["n0"].op.heads == 3
    with pytest.raises(ValueError, match=r"num_heads=5.*hidden_dim=12.*n0"):
        IASF(4, 12, 5, 0, arch=graph)


def test_arch_heads_must_divide_hidden_dim(make_graph):
    graph = make_graph([{"op": "attention", "config": {"heads": 4, "pattern": "full"}}], width=16)
    with pytest.raises(ValueError, match=r"node n0.*4 heads.*hidden_dim=6"):
        IASF(4, 6, 2, 0, arch=graph)


def test_arch_with_an_unknown_op_names_the_node(make_graph):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}, {"op": "wavelet", "config": {}}])
    with pytest.raises(ValueError, match=r"arch: node n1 uses op 'wavelet'"):
        IASF(4, 8, 2, 0, arch=graph)


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"topological_level": 4}, "topological_level"),
    ({"topological_level": -1}, "topological_level"),
    ({"num_heads": 3}, "num_heads"),
    ({"num_heads": 0}, "num_heads"),
    ({"input_dim": 0}, "input_dim"),
    ({"hidden_dim": -8}, "hidden_dim"),
    ({"seq_len": 0}, "seq_len"),
    ({"arch": "no/such/arch.json"}, "arch"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, argument):
    args = {"input_dim": IN, "hidden_dim": HIDDEN, "num_heads": HEADS, "topological_level": 0, **kwargs}
    with pytest.raises(ValueError, match=argument):
        IASF(**args)


def test_bad_arch_files_raise_value_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"arch: directory .* has no arch.json"):
        IASF(IN, HIDDEN, HEADS, 0, arch=tmp_path / "empty")
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"arch: .*broken.json is not JSON"):
        IASF(IN, HIDDEN, HEADS, 0, arch=tmp_path / "broken.json")


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="arch"):
        IASF(IN, HIDDEN, HEADS, 0, arch=42)
    with pytest.raises(TypeError, match="topological_level"):
        IASF(IN, HIDDEN, HEADS, 1.5)


def test_input_of_the_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match=r"\(batch, seq, 6\)"):
        small()(torch.randn(2, 5, IN + 1))


class _PositionTable(NodeOp):
    """A test op whose parameter shape depends on the sequence length (a learned (T, D) table)."""

    name = "position_table"

    def build(self, config: Mapping[str, Any], ctx: BuildContext) -> nn.Module:
        class Table(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.table = nn.Parameter(torch.zeros(ctx.layout.length, ctx.width))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.table.expand_as(x)

        return Table()


def test_op_with_length_dependent_parameters_is_named(make_graph):
    from iasf_search.plugins import fusions, ops

    comps = Components(pm=None)
    ops.iasf_register_ops(registry=comps.ops)
    fusions.iasf_register_fusions(registry=comps.fusions)
    comps.ops.register(_PositionTable())
    graph = make_graph([{"op": "mlp", "config": {"expansion": 1}}, {"op": "position_table", "config": {}}])
    module = IASF(4, 8, 2, 0, arch=graph, seq_len=12, components=comps)
    assert module(torch.randn(1, 12, 4)).shape == (1, 12, 4)
    with pytest.raises(ValueError, match=r"op 'position_table' at node n1 .*depend on the sequence length"):
        module(torch.randn(1, 5, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")
def test_on_cuda_every_length_runs_on_the_device():
    module = small(1).cuda()
    for length in (module.seq_len, 9):
        x = torch.randn(2, length, IN, device="cuda", requires_grad=True)
        y = module(x)
        assert y.is_cuda and y.shape == (2, length, IN)
        y.sum().backward()
        assert module.in_proj.weight.grad.is_cuda
    reference = small(1)
    reference.load_state_dict({k: v.cpu() for k, v in module.state_dict().items()})
    x = torch.randn(2, 9, IN)
    with torch.no_grad():
        torch.testing.assert_close(module(x.cuda()).cpu(), reference(x), rtol=1e-3, atol=1e-4)
