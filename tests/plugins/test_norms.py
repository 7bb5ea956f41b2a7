"""The built-in norms (plugins/norms.py): what each computes over ``(B, T, D)`` tokens, each inside a
node block, sampling from ``manifold.norms`` (per residual node, only when there is a choice), and a
plugin's own norm with a parameter. (The conformance kit over every registered norm: tests/test_testing.py;
old graphs build and hash as before: tests/test_build.py and tests/test_graph.py; a search with them:
tests/plugins/test_readouts.py.)"""

from __future__ import annotations

import optuna
import torch
from torch import nn

import iasf_search
from iasf_search import graph as arch
from iasf_search.build import build_model
from iasf_search.components import BuildContext, TokenLayout
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.norms import TokenBatchNorm

COMPONENTS = load_components(autoload=False)
NORMS = COMPONENTS.norms
WIDTH = 8
CTX = BuildContext(width=WIDTH, layout=TokenLayout((5,)))


def tokens(batch: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 3.0 + 2.0 * torch.randn(batch, 5, WIDTH, generator=g)


def test_builtin_norms():
    assert NORMS.names() == ["layer", "batch"]
    assert all(NORMS.owner(n) == "iasf_search.plugins.norms" for n in NORMS)
    assert [NORMS.get(n).describe({}) for n in NORMS] == ["layer", "bn"]


def test_layer_is_layer_norm_over_each_tokens_channels():
    module = NORMS.get("layer").build({}, CTX)
    assert isinstance(module, nn.LayerNorm) and module.normalized_shape == (WIDTH,)
    x = tokens()
    torch.testing.assert_close(module(x), nn.functional.layer_norm(x, (WIDTH,)))


def test_batch_normalises_each_channel_over_the_batch_and_the_tokens():
    module = NORMS.get("batch").build({}, CTX)
    assert isinstance(module, TokenBatchNorm) and module.num_features == WIDTH
    x = tokens()
    y = module(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y.mean(dim=(0, 1)), torch.zeros(WIDTH), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=(0, 1), unbiased=False), torch.ones(WIDTH), atol=1e-3, rtol=0)
    reference = nn.BatchNorm1d(WIDTH)  # the same as BatchNorm1d over (B, D, T)
    torch.testing.assert_close(y, reference(x.transpose(1, 2)).transpose(1, 2))
    torch.testing.assert_close(module.running_mean, reference.running_mean)
    module.eval()  # eval: the running statistics, so one sample's output does not depend on the others
    torch.testing.assert_close(module(x[:1]), module(x)[:1])


def test_each_node_gets_its_norm_and_non_residual_ops_none(make_graph):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 1}}, {"op": "conv", "config": {"kernel": 3, "dilation": 1}},
                        {"op": "identity", "config": {}}, {"op": "mlp", "config": {"expansion": 1}}], width=WIDTH)
    graph.nodes["n0"].update(norm="batch", norm_config={})
    graph.nodes["n2"].update(norm="batch", norm_config={})  # identity is not residual: no norm, whatever the node says
    graph.nodes["n3"].update(norm="layer", norm_config={})
    model = build_model(graph, COMPONENTS, (1, 8, 8), 10)
    kinds = {n: type(model.blocks[n].norm) for n in model.blocks}
    assert kinds == {"n0": TokenBatchNorm, "n1": nn.LayerNorm, "n2": nn.Identity, "n3": nn.LayerNorm}
    bn = model.blocks["n0"].norm
    assert int(bn.num_batches_tracked) == 0 and not bn.running_mean.any()  # the build check left no trace
    assert model.training
    x = torch.randn(6, 1, 8, 8)
    model(x).sum().backward()
    assert int(bn.num_batches_tracked) == 1 and bn.weight.grad is not None
    model.eval()
    torch.testing.assert_close(model(x[:2]), model(x)[:2])
    assert arch.summary(graph) == "w8 mlp[batch] > conv > identity[batch] > mlp"


def test_norms_are_sampled_per_residual_node_only_when_there_is_a_choice(make_space):
    space = make_space({"manifold.nodes": 3, "manifold.norms": ["layer", "batch"],
                        "manifold.ops": {"mlp": {"expansion": 1}, "identity": None}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(10):
        trial = study.ask()
        graph = arch.sample_graph(trial, space, COMPONENTS)
        for n in arch.hidden_nodes(graph):
            attrs = graph.nodes[n]
            if attrs["op"] == "identity":
                assert "norm" not in attrs and f"{n}.norm" not in trial.params
            else:
                assert trial.params[f"{n}.norm"] == attrs["norm"] and attrs["norm_config"] == {}
                seen.add(attrs["norm"])
        study.tell(trial, 0.0)
    assert seen == {"layer", "batch"}
    default = optuna.create_study().ask()
    graph = arch.sample_graph(default, make_space(), COMPONENTS)  # [layer]: nothing sampled, nothing stored
    assert not any("norm" in graph.nodes[n] for n in graph) and not any(p.endswith(".norm") for p in default.params)
    one = optuna.create_study().ask()
    graph = arch.sample_graph(one, make_space({"manifold.norms": ["batch"]}), COMPONENTS)
    assert all(graph.nodes[n]["norm"] == "batch" for n in arch.hidden_nodes(graph)) and "n0.norm" not in one.params


def test_a_plugin_norm_with_a_parameter(write_space):
    """``plugin_samples.every_hook`` registers ``rms`` with a ``learned`` gain: sampled as ``n<i>.rms.learned``."""
    session = iasf_search.open_session(write_space({"plugins": ["plugin_samples.every_hook"], "manifold.nodes": 2,
                                                    "manifold.norms": {"rms": {"learned": [True, False]}, "layer": None}}))
    space, components = session.space, session.components
    assert components.norms.owner("rms") == "plugin_samples.every_hook"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    configs = set()
    for _ in range(12):
        trial = study.ask()
        graph = arch.sample_graph(trial, space, components)
        model = build_model(graph, components, (1, 8, 8), 10)
        for n in arch.hidden_nodes(graph):
            attrs = graph.nodes[n]
            if attrs["norm"] == "rms":
                learned = trial.params[f"{n}.rms.learned"]
                assert attrs["norm_config"] == {"learned": learned}
                assert isinstance(model.blocks[n].norm, nn.RMSNorm) and (model.blocks[n].norm.weight is not None) == learned
                configs.add(learned)
            else:
                assert f"{n}.rms.learned" not in trial.params
        study.tell(trial, 0.0)
    assert configs == {True, False}


def test_batch_norm_in_training_takes_its_statistics_from_real_tokens_only():
    torch.manual_seed(0)
    real = torch.randn(3, 4, 8) * 2 + 1
    x = torch.cat([real, torch.zeros(3, 5, 8)], dim=1)  # padded tokens are zeros
    mask = torch.arange(9)[None, :].expand(3, 9) < 4
    masked, plain = TokenBatchNorm(8), TokenBatchNorm(8)
    out = masked(x, mask=mask)
    torch.testing.assert_close(out[:, :4], plain(real))
    assert out[:, 4:].abs().max() == 0
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)
