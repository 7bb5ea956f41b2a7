"""GPU paths: bf16 autocast training with the data resident on the device, no host synchronisation
in the step loop, fused optimisers, ``torch.compile``. Skipped without CUDA."""

from __future__ import annotations

import optuna
import pytest
import torch

import iasf_search
from iasf_search.build import build_model
from iasf_search.cli import main
from iasf_search.train import Diverged, Run, _EpochLoop, autocast, make_optimizer, resolve_device, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")


def test_auto_device_picks_cuda():
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cuda:0") == torch.device("cuda:0")


def test_autocast_is_bf16_on_cuda():
    with autocast(torch.device("cuda")):
        y = torch.nn.Linear(8, 8).cuda()(torch.ones(2, 8, device="cuda"))
    assert y.dtype == torch.bfloat16


def test_training_on_cuda_learns_with_data_on_the_device(make_graph, components, digits, train_config):
    graph = make_graph([{"op": "attention", "config": {"heads": 2, "pattern": "local", "window": 3}},
                        {"op": "conv", "config": {"kernel": 3, "dilation": 1}}], width=16)
    data = digits.to("cuda")
    assert data.x_train.is_cuda and data.y_val.is_cuda
    torch.manual_seed(0)
    model = build_model(graph, components, data.sample_shape, data.num_classes)
    result = train(model, data, {**train_config, "epochs": 4, "lr": 1.0e-2, "warmup": 0.0}, device=torch.device("cuda"), seed=0)
    assert next(model.parameters()).is_cuda
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert result.val_accuracy > 0.3


def test_search_on_cuda_through_the_cli(tmp_path, write_space, capsys):
    path = write_space()
    url = f"sqlite:///{tmp_path / 'gpu.db'}"
    assert main(["--space", str(path), "--storage", url, "--trials", "2", "--device", "cuda"]) == 0
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len([t for t in study.trials if t.state.is_finished()]) == 2
    assert iasf_search.best_trials(study)[0].user_attrs["test_accuracy"] >= 0.0


def test_search_with_costs_and_auxiliary_objectives_on_cuda(tmp_path, write_space, capsys):
    write_space({"manifold.nodes": 2, "manifold.fusions": ["concat"], "costs": ["flops"],
                 "auxiliary": {"reconstruction": {}, "cds": {"weight": 0.1}}, "search.trials": 2})
    url = f"sqlite:///{tmp_path / 'gpu-aux.db'}"
    assert main(["--space", "tiny.yaml", "--storage", url, "--device", "cuda"]) == 0, capsys.readouterr().err
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert all(t.state.name == "COMPLETE" and t.user_attrs["cost.flops"] > 0 for t in trials)
    assert all("loss" in t.user_attrs["aux.reconstruction"] for t in trials)


def test_the_step_loop_never_waits_for_the_gpu(make_graph, components, digits, train_config):
    """No operation in an epoch's optimiser steps reads from the device (``set_sync_debug_mode("error")``
    raises on any that would block the host): the divergence check and evaluation read back once per epoch."""
    graph = make_graph([{"op": "attention", "config": {"heads": 2, "pattern": "local", "window": 3}},
                        {"op": "conv", "config": {"kernel": 3, "dilation": 1}}, {"op": "mlp", "config": {"expansion": 2}}],
                       width=16)
    data = digits.to("cuda")
    torch.manual_seed(0)
    model = build_model(graph, components, data.sample_shape, data.num_classes)
    loop = _EpochLoop(Run(model, data), {**train_config, "epochs": 2}, device=torch.device("cuda"), seed=0,
                      micro_batch_size=None, label="")
    loop.steps(1, lambda epoch: None)  # first calls set up cuBLAS and benchmark cuDNN, which may synchronise
    torch.cuda.set_sync_debug_mode("error")
    try:
        loop.steps(2, lambda epoch: None)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    loop.watch.check(2)


def test_adamw_and_adam_use_the_fused_kernel_on_cuda(make_graph, components, digits, train_config):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}], width=8)
    model = build_model(graph, components, digits.sample_shape, digits.num_classes).cuda()
    for name in ("adamw", "adam"):
        assert make_optimizer(model, {**train_config, "optimizer": name}).defaults["fused"] is True
    assert not make_optimizer(model.cpu(), train_config).defaults["fused"]


def test_divergence_on_cuda_fails_with_its_epoch(make_graph, components, digits, train_config):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}], width=8)
    torch.manual_seed(0)
    model = build_model(graph, components, digits.sample_shape, digits.num_classes)
    config = {**train_config, "optimizer": "sgd", "lr": 1.0e12, "grad_clip": 0.0, "warmup": 0.0, "epochs": 3}
    with pytest.raises(Diverged, match="at epoch 1"):
        train(model, digits.to("cuda"), config, device=torch.device("cuda"), seed=0)


def test_compiled_training_on_cuda_learns(make_graph, components, digits, train_config):
    graph = make_graph([{"op": "attention", "config": {"heads": 2, "pattern": "full"}},
                        {"op": "conv", "config": {"kernel": 3, "dilation": 1}}], width=16)
    torch.manual_seed(0)
    model = build_model(graph, components, digits.sample_shape, digits.num_classes)
    result = train(model, digits.to("cuda"), {**train_config, "epochs": 4, "lr": 1.0e-2, "warmup": 0.0, "compile": True},
                   device=torch.device("cuda"), seed=0)
    assert result.val_accuracy > 0.3


def test_a_padded_model_trains_under_bf16_autocast(make_graph, components):
    """Series padded with NaN, masked attention, pooling, batch norm and readouts, on the GPU in bf16: finite loss and
    gradients, and the same logits for a series however much padding follows it."""
    graph = make_graph([{"op": "attention", "config": {"heads": 2, "pattern": "local", "window": 3}},
                        {"op": "pool", "config": {"kind": "max", "kernel": 3}}], width=16, modality="sequence",
                       stem={"patch": 2, "overlap": True, "position": "sinusoidal"})
    graph.nodes["n0"]["norm"] = "batch"
    graph.nodes["output"]["readout"] = "mean_max"
    torch.manual_seed(0)
    model = build_model(graph, components, (20, 3), 4, padded=True).cuda()
    x = torch.randn(8, 20, 3, device="cuda")
    x[4:, 6:] = float("nan")
    with autocast(torch.device("cuda")):
        loss = torch.nn.functional.cross_entropy(model(x), torch.arange(8, device="cuda") % 4)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    longer = torch.full((8, 32, 3), float("nan"), device="cuda")
    longer[:, :20] = x
    wider = build_model(graph, components, (32, 3), 4, padded=True).cuda().eval()
    wider.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x), wider(longer), atol=1e-4, rtol=1e-4)
