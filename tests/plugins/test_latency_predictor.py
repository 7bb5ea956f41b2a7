"""The predicted_latency_ms cost model (plugins/latency_predictor.py) and `iasf-search calibrate`."""

from __future__ import annotations

import optuna
import pytest
import torch
import yaml
from conftest import build_graph, run

from iasf_search.build import build_model
from iasf_search.components import Measurement
from iasf_search.hardware.profiles import load_profile
from iasf_search.plugin_manager import load_components

COMPONENTS = load_components(autoload=False)
CPU = torch.device("cpu")
COST = COMPONENTS.cost_models.get("predicted_latency_ms")


def model():
    graph = build_graph([{"op": "attention", "config": {"heads": 2, "pattern": "full"}}, {"op": "mlp", "config": {"expansion": 2}}],
                        width=16)
    torch.manual_seed(0)
    return build_model(graph, COMPONENTS, (1, 8, 8), 10).eval()


def options(**changes):
    return {"target": "cpu", "batch_size": 32, "dtype": "float32", **changes}


def test_registered_with_declared_options():
    assert COST.unit == "ms" and COST.deterministic
    assert {name: p.default for name, p in COST.params.items()} == {"target": "cpu", "batch_size": 32, "dtype": "float32"}


def test_measure_through_the_registry_is_deterministic_and_leaves_the_model_alone():
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    example = torch.randn(8, 1, 8, 8)
    result = COST.measure(m, example, CPU, options(target="h100", dtype="bfloat16"))
    assert isinstance(result, Measurement) and result.value > 0
    assert result.details["target"] == "h100" and result.details["profile"] == "h100" and result.details["dtype"] == "bfloat16"
    assert result.details["batch_size"] == 32 and result.details["kernels"] > 10 and result.details["gflops"] > 0
    assert COST.measure(m, example, CPU, options(target="h100", dtype="bfloat16")) == result
    assert not m.training and all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    # the batch is cycled up to batch_size: 8 samples predict the same as 32
    assert COST.measure(m, torch.cat([example] * 4), CPU, options(target="h100", dtype="bfloat16")).value == result.value


def test_targets_compare_as_the_hardware_does():
    m, example = model(), torch.randn(32, 1, 8, 8)

    def ms(**changes):
        return COST.measure(m, example, CPU, options(**changes)).value

    assert ms(target="h100") < ms(target="a100") < ms(target="cpu")
    assert ms(target="h100", dtype="bfloat16") < ms(target="h100")
    assert ms(target="cpu", batch_size=256) > ms(target="cpu", batch_size=32)


def test_search_records_predicted_latency(capsys, tmp_path, write_space):
    write_space({"costs": {"predicted_latency_ms": {"target": "h100", "dtype": "bfloat16"}}, "search.trials": 2})
    url = f"sqlite:///{tmp_path / 'p.db'}"
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "-q")
    assert rc == 0, err
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert len(trials) == 2
    for t in trials:
        assert t.user_attrs["cost.predicted_latency_ms"] > 0
        details = t.user_attrs["cost_details.predicted_latency_ms"]
        assert details["target"] == "h100" and details["dtype"] == "bfloat16" and details["kernels"] > 0


@pytest.mark.parametrize(("cost", "key", "words"), [
    ({"target": "h200"}, "costs.predicted_latency_ms.target",
     "'h200' is not a usable hardware target: hardware target 'h200' is neither a built-in profile (a100, cpu, h100) nor a profile file"),
    ({"target": ["h100", "a100"]}, "costs.predicted_latency_ms.target", "options here are fixed values"),
    ({"dtype": "int8"}, "costs.predicted_latency_ms.dtype", "allowed: bfloat16, float16, float32"),
    ({"batch_size": 0}, "costs.predicted_latency_ms.batch_size", "below the minimum"),
    ({"tagret": "h100"}, "costs.predicted_latency_ms.tagret", "did you mean 'target'"),
])
def test_bad_options_exit_2_before_any_trial(capsys, tmp_path, write_space, cost, key, words):
    write_space({"costs": {"predicted_latency_ms": cost}})
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", f"sqlite:///{tmp_path / 'b.db'}")
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith(f"iasf-search: error: tiny.yaml: {key}: ") and words in err, err
    assert "Traceback" not in err and not (tmp_path / "b.db").exists()


def test_bad_profile_file_or_missing_dtype_exit_2(capsys, tmp_path, write_space):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"name": "b", "peak_flops": {"float32": 1.0e12}, "memory_bandwidth": "fast",
                                                        "kernel_overhead_us": 1.0}))
    write_space({"costs": {"predicted_latency_ms": {"target": "bad.yaml"}}})
    rc, _, err = run(capsys, "--space", "tiny.yaml", "--storage", f"sqlite:///{tmp_path / 'b.db'}")
    assert rc == 2 and err.count("\n") == 1
    assert "tiny.yaml: costs.predicted_latency_ms.target: 'bad.yaml' is not a usable hardware target" in err
    assert "bad.yaml: memory_bandwidth: expected a positive number, got 'fast'" in err

    (tmp_path / "fp32.yaml").write_text(yaml.safe_dump({"name": "fp32-only", "peak_flops": {"float32": 1.0e12},
                                                         "memory_bandwidth": 1.0e11, "kernel_overhead_us": 1.0}))
    write_space({"costs": {"predicted_latency_ms": {"target": "fp32.yaml", "dtype": "bfloat16"}}})
    rc, _, err = run(capsys, "--space", "tiny.yaml", "--storage", f"sqlite:///{tmp_path / 'b.db'}")
    assert rc == 2 and err.count("\n") == 1
    assert "tiny.yaml: costs.predicted_latency_ms.dtype: hardware target 'fp32-only' gives no peak_flops for bfloat16" in err
    assert not (tmp_path / "b.db").exists()


def test_calibrate_writes_a_profile_a_space_can_name(capsys, tmp_path, write_space):
    rc, out, err = run(capsys, "calibrate", "--out", "profiles/here.yaml", "--name", "here", "--quick", "--threads", "1")
    assert rc == 0, err
    assert "calibrating cpu with 1 threads" in out and "peak FLOP/s: float32" in out and "memory bandwidth:" in out
    assert "profile 'here' written to profiles/here.yaml" in out
    profile = load_profile(tmp_path / "profiles" / "here.yaml")
    assert profile.name == "here" and profile.peak_flops["float32"] > 0 and profile.kinds

    write_space({"costs": {"predicted_latency_ms": {"target": "profiles/here.yaml"}}, "search.trials": 1})
    url = f"sqlite:///{tmp_path / 'c.db'}"
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "-q")
    assert rc == 0, err
    (trial,) = optuna.load_study(study_name="tiny", storage=url).trials
    assert trial.user_attrs["cost.predicted_latency_ms"] > 0
    assert trial.user_attrs["cost_details.predicted_latency_ms"]["profile"] == "here"


@pytest.mark.parametrize(("args", "words"), [
    (("--out", "x.yaml", "--device", "tpu"), "--device: unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
    (("--out", "."), "--out .: is a folder"),
    (("--out", "x.yaml", "--threads", "0"), "--threads must be at least 1"),
    ((), "the following arguments are required: --out"),
])
def test_calibrate_bad_arguments_exit_2(capsys, tmp_path, args, words):
    rc, out, err = run(capsys, "calibrate", *args)
    assert rc == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize("target", ["a" * 400, "bad\x00name"])
def test_a_target_no_file_system_can_name_is_one_line(target):
    from iasf_search.errors import BadInput
    from iasf_search.plugins.latency_predictor import resolve_target

    with pytest.raises(BadInput, match="is neither a built-in profile"):
        resolve_target(target)
