"""The built-in cost models (plugins/costs.py), through the registry: ``params`` and ``flops`` (exact counts),
``latency_ms`` (protocol, details) and ``peak_memory_mb`` (what it counts); costs in a search."""

from __future__ import annotations

import optuna
import pytest
import torch
from conftest import run
from torch import nn

from iasf_search.build import build_model
from iasf_search.cli import main
from iasf_search.components import Measurement
from iasf_search.errors import SpaceError
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.costs import MB

COMPONENTS = load_components(autoload=False)
CPU = torch.device("cpu")
IN, HIDDEN, CLASSES = 64, 256, 10


def measure(name: str, model: nn.Module, example: torch.Tensor, device: torch.device = CPU, **options) -> Measurement:
    cost = COMPONENTS.cost_models.get(name)
    result = cost.measure(model, example, device, {**{k: p.default for k, p in cost.params.items()}, **options})
    assert isinstance(result, Measurement)
    return result


def measure_number(name: str, model: nn.Module, example: torch.Tensor | None = None) -> float:
    cost = COMPONENTS.cost_models.get(name)
    value = cost.measure(model, torch.randn(2, IN) if example is None else example, CPU, {})
    assert isinstance(value, float) and cost.deterministic
    return value


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES)).eval()


def param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


class Counting(nn.Module):
    """Records every forward call: its batch size and whether it ran in inference mode."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(IN, CLASSES)
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(x), torch.is_inference_mode_enabled()))
        return self.linear(x)


@pytest.fixture
def arch_model(fused_model):
    return fused_model.eval()


# -- params and flops -------------------------------------------------------------------------------


def test_params_counts_trainable_weights_of_the_deployable_model():
    model = mlp()
    assert measure_number("params", model) == IN * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES
    model[0].bias.requires_grad_(False)
    assert measure_number("params", model) == IN * HIDDEN + HIDDEN * CLASSES + CLASSES
    model.aux_modules = nn.ModuleList([nn.Linear(4, 4)])  # training-only helpers are not deployed
    assert measure_number("params", model) == IN * HIDDEN + HIDDEN * CLASSES + CLASSES


def test_flops_of_a_plain_mlp_are_per_sample():
    model = mlp()
    per_sample = 2 * (IN * HIDDEN + HIDDEN * CLASSES)
    assert measure_number("flops", model, torch.randn(1, IN)) == per_sample
    assert measure_number("flops", model, torch.randn(7, IN)) == per_sample  # divided by the batch


def test_flops_of_an_mlp_node_match_the_formula(make_graph):
    """Linear layers cost 2 * in * out FLOPs per token; the stem conv and head are counted too."""
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}], width=8,
                       stem={"patch": 2, "overlap": False, "position": "none"})
    model = build_model(graph, COMPONENTS, (1, 8, 8), 10).eval()
    flops = COMPONENTS.cost_models.get("flops").measure(model, torch.zeros(4, 1, 8, 8), CPU, {})
    tokens = 16
    stem = 2 * tokens * (1 * 2 * 2) * 8  # 2x2 conv, 1 -> 8 channels, per token
    mlp = 2 * tokens * (8 * 16 + 16 * 8)
    head = 2 * 8 * 10
    assert flops == stem + mlp + head


def test_flops_count_attention(make_graph):
    def flops(op):
        graph = make_graph([op], width=8, stem={"patch": 2, "overlap": False, "position": "none"})
        model = build_model(graph, COMPONENTS, (1, 8, 8), 10).eval()
        return COMPONENTS.cost_models.get("flops").measure(model, torch.zeros(2, 1, 8, 8), CPU, {})

    attention = flops({"op": "attention", "config": {"heads": 2, "pattern": "full"}})
    projections_only = flops({"op": "mlp", "config": {"expansion": 2}})  # qkv+proj = 4 D^2 = mlp(2) FLOPs
    assert attention - projections_only == 2 * 2 * 16 * 16 * 8  # QK^T and AV: 2 matmuls of (T x T x D), 2 FLOPs each


def test_costs_are_recorded_and_usable_as_objectives(tmp_path, write_space, capsys):
    write_space({"costs": ["params"], "objectives": [{"metric": "accuracy"}, {"metric": "flops"}],
                 "search.sampler": "nsga2", "search.trials": 3})
    url = f"sqlite:///{tmp_path / 'costs.db'}"
    assert main(["--space", "tiny.yaml", "--storage", url]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="tiny", storage=url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in study.trials:
        assert t.user_attrs["cost.params"] == t.user_attrs["params"]
        assert t.values[1] == t.user_attrs["cost.flops"] > 0
    rc = main(["best", "--space", "tiny.yaml", "--storage", url])
    out = capsys.readouterr().out
    assert rc == 0 and "Pareto set" in out and "flops" in out


def test_cost_options_must_be_fixed(write_space):
    import iasf_search

    path = write_space({"costs": {"params": {}, "flops": {}}, "plugins": ["plugin_samples.every_hook"]})
    assert set(iasf_search.load_space(path).costs) == {"params", "flops"}
    path = write_space({"costs": {"tokens": {"scale": [1, 2]}}, "plugins": ["plugin_samples.every_hook"]})
    with pytest.raises(SpaceError, match="costs.tokens.scale: options here are fixed values"):
        iasf_search.load_space(path)


# -- latency_ms -------------------------------------------------------------------------------------


def test_latency_runs_warmup_plus_repeats_inference_forwards_of_the_batch_size():
    model = Counting().eval()
    result = measure("latency_ms", model, torch.randn(5, IN), batch_size=7, warmup=2, repeats=3)
    assert model.calls == [(7, True)] * 5  # the 5-sample example is cycled up to the batch size
    details = result.details
    assert details["repeats"] == 3 and details["batch_size"] == 7
    assert details["min_ms"] <= details["median_ms"] <= details["max_ms"]
    assert result.value == pytest.approx(details["median_ms"], abs=1e-4)
    assert details["iqr_ms"] >= 0 and details["cov"] >= 0
    assert details["device"] == "cpu" and details["threads"] == torch.get_num_threads() and details["autocast"] is None


def test_latency_is_declared_measured_not_deterministic():
    cost = COMPONENTS.cost_models.get("latency_ms")
    assert cost.deterministic is False and cost.unit == "ms"
    assert {k: p.default for k, p in cost.params.items()} == {"batch_size": 32, "warmup": 5, "repeats": 20}


# -- peak_memory_mb ---------------------------------------------------------------------------------


def test_inference_peak_counts_weights_input_and_output():
    model, bs = mlp(), 32
    result = measure("peak_memory_mb", model, torch.randn(40, IN), batch_size=bs)
    details = result.details
    assert details["method"] == "live tensor storages" and details["phase"] == "inference" and details["device"] == "cpu"
    assert result.value == details["bytes"] / MB and MB == 2**20
    assert details["bytes"] >= param_bytes(model) + 4 * bs * (IN + CLASSES)
    assert details["bytes"] < param_bytes(model) + 4 * bs * (IN + 3 * HIDDEN + CLASSES)  # nothing else is counted
    assert details["breakdown_mb"]["Parameter"] == round(param_bytes(model) / MB, 4)


def test_train_peak_counts_gradients_and_adamw_state():
    model, example = mlp(), torch.randn(40, IN)
    train = measure("peak_memory_mb", model, example, phase="train")
    inference = measure("peak_memory_mb", model, example, phase="inference")
    assert train.details["bytes"] >= 4 * param_bytes(model)  # parameters, gradients, AdamW's two moments
    assert train.value > inference.value
    breakdown = train.details["breakdown_mb"]
    assert breakdown["Gradient"] > 0 and breakdown["Optstate"] >= 2 * breakdown["Parameter"]


@pytest.mark.parametrize("phase", ["inference", "train"])
def test_peak_grows_with_the_batch_and_is_deterministic(phase):
    model, example = mlp(), torch.randn(40, IN)
    small = measure("peak_memory_mb", model, example, phase=phase, batch_size=8)
    large = measure("peak_memory_mb", model, example, phase=phase, batch_size=256)
    assert large.details["bytes"] - small.details["bytes"] >= 4 * (256 - 8) * (IN + HIDDEN)  # input and hidden layer
    assert measure("peak_memory_mb", model, example, phase=phase, batch_size=8) == small
    assert COMPONENTS.cost_models.get("peak_memory_mb").deterministic


def test_peak_counts_the_batch_not_the_whole_dataset_it_is_a_view_of():
    model, data = mlp(), torch.randn(10_000, IN)
    assert measure("peak_memory_mb", model, data[:32]).value == measure("peak_memory_mb", model, data[:32].clone()).value


# -- both -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, options", [("latency_ms", {"warmup": 1, "repeats": 2}), ("peak_memory_mb", {"phase": "inference"}),
                                           ("peak_memory_mb", {"phase": "train"})])
def test_measuring_leaves_the_model_as_found(name, options, arch_model):
    before = {k: v.clone() for k, v in arch_model.state_dict().items()}
    measure(name, arch_model, torch.randn(6, 1, 8, 8), batch_size=4, **options)
    assert not arch_model.training and not any(m.training for m in arch_model.modules())
    assert all(torch.equal(before[k], v) for k, v in arch_model.state_dict().items())
    for p in arch_model.parameters():
        assert p.grad is None and p.device == CPU and p.requires_grad
        assert not p._backward_hooks and not getattr(p, "_post_accumulate_grad_hooks", None)


def test_cost_options_are_validated(write_space):
    import iasf_search

    path = write_space({"costs": {"peak_memory_mb": {"phase": "training"}}})
    with pytest.raises(SpaceError, match="costs.peak_memory_mb.phase"):
        iasf_search.load_space(path)
    path = write_space({"costs": {"latency_ms": {"repeats": 0}}})
    with pytest.raises(SpaceError, match="costs.latency_ms.repeats"):
        iasf_search.load_space(path)


def test_search_records_measured_costs_on_every_trial(tmp_path, write_space, capsys):
    write_space({"costs": {"latency_ms": {"batch_size": 8, "warmup": 1, "repeats": 3}, "peak_memory_mb": {"phase": "train"}},
                 "search.trials": 2})
    url = f"sqlite:///{tmp_path / 'costs.db'}"
    rc, _, err = run(capsys, "--space", "tiny.yaml", "--storage", url)
    assert rc == 0, err
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert len(trials) == 2
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.user_attrs["cost.latency_ms"] > 0 and t.user_attrs["cost.peak_memory_mb"] > 0
        details = t.user_attrs["cost_details.latency_ms"]  # the engine's name: every cost.* attribute is a number
        assert details["repeats"] == 3 and details["batch_size"] == 8 and details["device"] == "cpu"
        assert t.user_attrs["cost.latency_ms"] == pytest.approx(details["median_ms"], abs=1e-4)
        memory = t.user_attrs["cost_details.peak_memory_mb"]
        assert memory["phase"] == "train" and memory["bytes"] == t.user_attrs["cost.peak_memory_mb"] * MB
        assert all(isinstance(v, float) for k, v in t.user_attrs.items() if k.startswith("cost."))


# -- CUDA ---------------------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")


@cuda
def test_cuda_allocator_peak_is_positive_and_train_exceeds_inference():
    device = torch.device("cuda")
    model = mlp().to(device)
    example = torch.randn(40, IN, device=device)
    inference = measure("peak_memory_mb", model, example, device)
    train = measure("peak_memory_mb", model, example, device, phase="train")
    assert inference.details["method"] == "cuda allocator peak"
    assert inference.details["bytes"] >= param_bytes(model) > 0
    assert train.value > inference.value
    assert all(p.grad is None and p.is_cuda for p in model.parameters()) and not model.training


@cuda
def test_cuda_latency_runs_under_bf16_autocast():
    device = torch.device("cuda")
    model = Counting().to(device).eval()
    result = measure("latency_ms", model, torch.randn(5, IN, device=device), device, batch_size=7, warmup=1, repeats=2)
    assert model.calls == [(7, True)] * 3
    assert result.details["device"].startswith("cuda") and result.details["autocast"] == "bf16" and result.value > 0
