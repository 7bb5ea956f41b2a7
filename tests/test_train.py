"""The training loop on digits: learning, determinism, per-epoch reports, divergence, devices, learning-rate schedules."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from iasf_search.build import build_model
from iasf_search.components import SplitSpec
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.datasets import random_shift
from iasf_search.settings import TRAINING_PARAMS
from iasf_search.train import (
    AuxTerm,
    Diverged,
    DivergenceWatch,
    Run,
    evaluate,
    make_optimizer,
    make_schedule,
    resolve_device,
    steps_per_epoch,
    train,
    train_together,
)
from iasf_search.trial.cross_validation import fold_tasks

CPU = torch.device("cpu")


@pytest.fixture
def small_graph(make_graph):
    return make_graph([{"op": "conv", "config": {"kernel": 3, "dilation": 1}}, {"op": "mlp", "config": {"expansion": 2}}],
                      width=16)


def fresh_model(graph, components, digits, seed=0):
    torch.manual_seed(seed)
    return build_model(graph, components, digits.sample_shape, digits.num_classes)


def test_train_config_fixture_is_complete(train_config):
    assert set(train_config) == set(TRAINING_PARAMS)


def test_training_reduces_the_loss(make_graph, components, digits, train_config):
    graph = make_graph([{"op": "conv", "config": {"kernel": 3, "dilation": 1}}, {"op": "mlp", "config": {"expansion": 2}}],
                       width=16, stem={"patch": 2, "overlap": True, "position": "learned"})
    model = fresh_model(graph, components, digits)
    _, loss_before = evaluate(model, digits.x_val, digits.y_val, CPU)
    config = {**train_config, "epochs": 4, "lr": 1.0e-2, "warmup": 0.0, "grad_clip": 0.0, "weight_decay": 0.0}
    result = train(model, digits, config, device=CPU, seed=0)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    first, last = result.history[0], result.history[-1]
    assert last["val_loss"] < first["val_loss"] - 0.1
    assert first["val_loss"] < loss_before
    assert last["val_accuracy"] > first["val_accuracy"] + 0.1
    assert last["val_accuracy"] > 0.3  # 10 classes: chance is 0.1
    assert (result.val_accuracy, result.val_loss) == (last["val_accuracy"], last["val_loss"])
    assert result.epochs == 4 and result.seconds > 0
    # evaluate() agrees with what train() reported for the final model
    acc, loss = evaluate(model, digits.x_val, digits.y_val, CPU)
    assert acc == result.val_accuracy
    assert loss == pytest.approx(result.val_loss)


def test_same_seed_same_result(small_graph, components, digits, train_config):
    runs = []
    for _ in range(2):
        model = fresh_model(small_graph, components, digits)
        runs.append((train(model, digits, train_config, device=CPU, seed=3), model.state_dict()))
    (a, state_a), (b, state_b) = runs
    assert a.val_accuracy == b.val_accuracy
    assert a.history == b.history
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_gradient_accumulation_keeps_the_optimisation(small_graph, components, digits, train_config):
    """Micro-batches of 16 with accumulation take the same steps on the same samples as batches of 64:
    the weights agree up to floating-point summation order."""
    config = {**train_config, "batch_size": 64, "epochs": 2}
    whole = fresh_model(small_graph, components, digits)
    split = fresh_model(small_graph, components, digits)
    a = train(whole, digits, config, device=CPU, seed=0)
    b = train(split, digits, config, device=CPU, seed=0, micro_batch_size=16)
    assert b.val_loss == pytest.approx(a.val_loss, abs=1e-3)
    for (name, p), q in zip(whole.state_dict().items(), split.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-3), name
    # a different batch (not a different micro-batch) is a different optimisation
    c = train(fresh_model(small_graph, components, digits), digits, {**config, "batch_size": 16}, device=CPU, seed=0)
    assert abs(c.val_loss - a.val_loss) > 10 * abs(b.val_loss - a.val_loss)


def test_different_seed_changes_the_batch_order(small_graph, components, digits, train_config):
    a = train(fresh_model(small_graph, components, digits), digits, train_config, device=CPU, seed=0)
    b = train(fresh_model(small_graph, components, digits), digits, train_config, device=CPU, seed=1)
    assert a.history != b.history


def test_report_is_called_once_per_epoch(small_graph, components, digits, train_config):
    calls = []
    result = train(fresh_model(small_graph, components, digits), digits, {**train_config, "epochs": 3}, device=CPU, seed=0,
                   report=lambda epoch, acc, loss: calls.append((epoch, acc, loss)))
    assert [c[0] for c in calls] == [1, 2, 3]
    assert [(h["val_accuracy"], h["val_loss"]) for h in result.history] == [(c[1], c[2]) for c in calls]


def test_report_may_stop_training(small_graph, components, digits, train_config):
    class Stop(Exception):
        pass

    seen = []

    def report(epoch, acc, loss):
        seen.append(epoch)
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(fresh_model(small_graph, components, digits), digits, {**train_config, "epochs": 5}, device=CPU, seed=0, report=report)
    assert seen == [1, 2]


def test_nan_op_diverges(make_graph, digits, train_config):
    comps = load_components([("plugin_samples.nan_op", "--plugin")], autoload=False)
    graph = make_graph([{"op": "nan_op", "config": {}}], width=8)
    model = fresh_model(graph, comps, digits)  # the shape check passes: NaN has the right shape
    calls = []
    with pytest.raises(Diverged, match="epoch 1"):
        train(model, digits, train_config, device=CPU, seed=0, report=lambda *a: calls.append(a))
    assert calls == []


def test_huge_learning_rate_diverges(make_graph, components, digits, train_config):
    graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}], width=8)
    config = {**train_config, "optimizer": "sgd", "lr": 1.0e12, "grad_clip": 0.0, "warmup": 0.0, "epochs": 3}
    with pytest.raises(Diverged):
        train(fresh_model(graph, components, digits), digits, config, device=CPU, seed=0)


def test_deferred_divergence_watch_names_the_first_bad_loss_at_the_epochs_end():
    watch = DivergenceWatch(defer=True, label=" (fold 2 of 3)")
    for value in (1.0, 0.9, float("inf"), float("nan")):
        watch.add(torch.tensor(value), epoch=4)  # nothing is read yet: no raise
    with pytest.raises(Diverged, match=r"became inf at epoch 4 \(fold 2 of 3\)"):
        watch.check(epoch=4)
    watch.check(epoch=5)  # the losses were consumed
    for value in (0.5, 0.4):
        watch.add(torch.tensor(value, dtype=torch.bfloat16), epoch=5)
    watch.check(epoch=5)


def test_eager_divergence_watch_raises_at_the_step():
    watch = DivergenceWatch(defer=False)
    watch.add(torch.tensor(2.0), epoch=1)
    with pytest.raises(Diverged, match="became nan at epoch 3"):
        watch.add(torch.tensor(float("nan")), epoch=3)


def test_training_with_the_deferred_check_diverges_at_the_same_epoch(make_graph, digits, train_config, monkeypatch):
    """What CUDA does (losses read back once per epoch), forced on the CPU: the trial still fails as
    diverged, in the epoch where the loss went bad."""
    comps = load_components([("plugin_samples.nan_op", "--plugin")], autoload=False)
    model = fresh_model(make_graph([{"op": "nan_op", "config": {}}], width=8), comps, digits)
    original = DivergenceWatch.__init__
    monkeypatch.setattr(DivergenceWatch, "__init__", lambda self, *, defer, label="": original(self, defer=True, label=label))
    with pytest.raises(Diverged, match="became nan at epoch 1"):
        train(model, digits, train_config, device=CPU, seed=0)


def test_compile_setting_trains_through_torch_compile(small_graph, components, digits, train_config, monkeypatch):
    """``training.compile`` hands the model to ``torch.compile`` and trains through what it returns
    (a real compile takes tens of seconds: the benchmarks and the GPU check run it)."""
    compiled = []

    def fake_compile(model):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = fresh_model(small_graph, components, digits)
    train(model, digits, {**train_config, "epochs": 1, "compile": True}, device=CPU, seed=0, validate=False)
    assert compiled == [model]
    compiled.clear()
    train(model, digits, {**train_config, "epochs": 1}, device=CPU, seed=0, validate=False)
    assert compiled == []


def test_evaluate_counts_on_the_device(small_graph, components, digits):
    model = fresh_model(small_graph, components, digits)
    acc, loss = evaluate(model, digits.x_val, digits.y_val, CPU, batch_size=7)
    with torch.no_grad():
        logits = model(digits.x_val)
    assert acc == int((logits.argmax(1) == digits.y_val).sum()) / len(digits.y_val)
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, digits.y_val)), rel=1e-5)


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_optimizers_and_augmentation_run(small_graph, components, digits, train_config, optimizer):
    data = digits.to("cpu")
    data.augment = partial(random_shift, pixels=1)
    config = {**train_config, "epochs": 1, "optimizer": optimizer, "augment": True, "label_smoothing": 0.1}
    model = fresh_model(small_graph, components, digits)
    before = [p.detach().clone() for p in model.parameters()]
    result = train(model, data, config, device=CPU, seed=0)
    assert 0.0 <= result.val_accuracy <= 1.0
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_zero_weight_leaves_training_unchanged_and_positive_weight_changes_it(make_graph, components, digits, train_config):
    def run(weight):
        torch.manual_seed(0)
        graph = make_graph([{"op": "mlp", "config": {"expansion": 2}}, {"op": "conv", "config": {"kernel": 3, "dilation": 1}}],
                           width=16)
        model = build_model(graph, components, digits.sample_shape, digits.num_classes)
        objective = components.aux_objectives.get("reconstruction")
        config = {"weight": weight, "levels": "all"}
        module = objective.build(config, model.run(digits.x_train[:2]), 16) if weight is not None else None
        aux = [AuxTerm(objective, config, module)] if weight is not None else []
        if module is not None:
            model.aux_modules = torch.nn.ModuleList([module])
        return train(model, digits, train_config, device=CPU, seed=0, aux=aux).history

    plain = run(None)
    assert run(0.0) == plain
    assert run(1.0) != plain


def test_weight_decay_groups_cover_every_parameter_once(small_graph, components, digits, train_config):
    model = fresh_model(small_graph, components, digits)
    groups = make_optimizer(model, train_config).param_groups
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    decayed = {id(p) for p in groups[0]["params"]}
    assert id(model.stem.position.pos) not in decayed and id(model.head.bias) not in decayed
    assert id(model.head.weight) in decayed
    assert groups[1]["weight_decay"] == 0.0


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in ("cpu", "cuda")
    for bad in ("tpu", "gpu0"):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:7")


def test_one_run_together_trains_exactly_as_train(small_graph, components, digits, train_config):
    alone, together = fresh_model(small_graph, components, digits), fresh_model(small_graph, components, digits)
    a = train(alone, digits, train_config, device=CPU, seed=2)
    b = train_together([Run(together, digits)], train_config, device=CPU, seed=2)
    assert (a.val_accuracy, a.val_loss, a.steps, a.fold_val_accuracies) == (b.val_accuracy, b.val_loss, b.steps, [])
    assert all(torch.equal(x, y) for x, y in zip(alone.state_dict().values(), together.state_dict().values(), strict=True))


def test_runs_together_report_their_mean_each_epoch(small_graph, components, digits, train_config):
    tasks = fold_tasks(digits, SplitSpec(folds=2))
    models = [fresh_model(small_graph, components, digits) for _ in tasks]
    reports = []
    result = train_together([Run(m, t) for m, t in zip(models, tasks, strict=True)], train_config, device=CPU, seed=0,
                            report=lambda *r: reports.append(r))
    assert len(reports) == train_config["epochs"]
    own = [evaluate(m, t.x_val, t.y_val, CPU) for m, t in zip(models, tasks, strict=True)]
    assert result.fold_val_accuracies == [acc for acc, _ in own]
    assert result.val_accuracy == pytest.approx(sum(acc for acc, _ in own) / 2)
    assert reports[-1] == (train_config["epochs"], result.val_accuracy, result.val_loss)
    assert result.history[-1]["fold_val_accuracies"] == result.fold_val_accuracies
    # each model trained as it would alone on its fold
    alone = fresh_model(small_graph, components, digits)
    train(alone, tasks[1], train_config, device=CPU, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(alone.state_dict().values(), models[1].state_dict().values(), strict=True))


def test_training_without_validation_reports_nothing(small_graph, components, digits, train_config):
    reports = []
    result = train(fresh_model(small_graph, components, digits), digits, train_config, device=CPU, seed=0,
                   report=lambda *r: reports.append(r), validate=False)
    assert reports == [] and result.history == []
    assert result.val_accuracy != result.val_accuracy  # NaN
    assert result.steps == train_config["epochs"] * -(-len(digits.x_train) // train_config["batch_size"])


# -- learning-rate schedules ------------------------------------------------------------------------


def schedule_trace(config, epochs, per_epoch):
    """``(lr, momentum)`` of each param group at every optimiser step of the schedule training builds for
    ``config`` (momentum: beta1 for adam/adamw), the scheduler stepped after each step as training does."""
    optimizer = make_optimizer(torch.nn.Linear(2, 2), config)
    schedule = make_schedule(optimizer, config, epochs, per_epoch)
    trace = []
    for _ in range(epochs * per_epoch):
        trace.append([(g["lr"], g["betas"][0] if "betas" in g else g["momentum"]) for g in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    assert all(len({step[i] for i in range(len(step))}) == 1 for step in trace)  # every group alike
    return [step[0] for step in trace]


def test_cosine_schedule_is_unchanged_warm_up_then_cosine(train_config):
    """The default schedule, bit for bit: linear warm-up over max(1, int(warmup * steps)) steps, then cosine to 0."""
    for warmup, epochs, per_epoch in [(0.1, 2, 10), (0.0, 3, 7), (1.0, 1, 5), (0.25, 4, 9), (0.1, 1, 1)]:
        config = {**train_config, "warmup": warmup}
        total, warm = epochs * per_epoch, max(1, int(warmup * epochs * per_epoch))
        expected = [config["lr"] * ((s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
                    for s in range(total)]
        assert [lr for lr, _ in schedule_trace(config, epochs, per_epoch)] == expected
        assert {m for _, m in schedule_trace(config, epochs, per_epoch)} == {0.9}  # beta1 untouched
        without = {k: v for k, v in config.items() if k != "schedule"}  # a config recorded before the setting
        assert schedule_trace(without, epochs, per_epoch) == schedule_trace(config, epochs, per_epoch)


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_one_cycle_rises_to_the_peak_then_falls_near_zero_and_cycles_momentum(train_config, optimizer):
    config = {**train_config, "schedule": "one_cycle", "lr": 0.01, "warmup": 0.3, "optimizer": optimizer}
    trace = schedule_trace(config, 2, 10)  # 20 steps, int(0.3 * 20) = 6 warm-up steps: the peak at step 5
    lrs, momenta = [lr for lr, _ in trace], [m for _, m in trace]
    assert lrs[0] == pytest.approx(0.01 / 25)
    assert max(lrs) == lrs[5] == pytest.approx(0.01)
    assert all(a < b for a, b in zip(lrs[:5], lrs[1:6], strict=True))
    assert all(a > b for a, b in zip(lrs[5:], lrs[6:], strict=False))
    assert lrs[-1] == pytest.approx(0.01 / 25 / 1e4) and lrs[-1] < 1e-6 * 0.01 * 10
    assert momenta[0] == pytest.approx(0.95) and momenta[5] == pytest.approx(0.85) and momenta[-1] == pytest.approx(0.95)
    assert min(momenta) == momenta[5]


@pytest.mark.parametrize("warmup", [0.0, 0.05, 0.5, 1.0])
@pytest.mark.parametrize(("epochs", "per_epoch"), [(1, 1), (1, 2), (1, 3), (2, 10)])
def test_one_cycle_takes_any_warm_up_and_any_number_of_steps(train_config, warmup, epochs, per_epoch):
    """OneCycleLR divides by zero for a one-step rise or a zero-step fall: the warm-up is clamped so it never does."""
    lr, total = 0.01, epochs * per_epoch
    lrs = [x for x, _ in schedule_trace({**train_config, "schedule": "one_cycle", "lr": lr, "warmup": warmup}, epochs, per_epoch)]
    assert len(lrs) == total and all(0 < x <= lr * (1 + 1e-9) for x in lrs)
    if total > 1:
        assert lrs[-1] == pytest.approx(lr / 25 / 1e4)
        warm = min(max(1, int(warmup * total)), total - 1)
        assert lrs.index(max(lrs)) == max(warm - 1, 0)
        if warm > 1:  # the peak on the step the cosine schedule peaks
            assert max(lrs) == pytest.approx(lr)
        else:  # no rise: the first step is 1/total of the way down the fall
            low = lr / 25 / 1e4
            assert lrs[0] == pytest.approx(low + (lr - low) / 2 * (1 + math.cos(math.pi / total)))


def test_unknown_schedule_is_refused(train_config):
    optimizer = make_optimizer(torch.nn.Linear(2, 2), train_config)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'; use one of cosine, one_cycle"):
        make_schedule(optimizer, {**train_config, "schedule": "step"}, 2, 3)
    assert TRAINING_PARAMS["schedule"].choices == ("cosine", "one_cycle") and TRAINING_PARAMS["schedule"].default == "cosine"


def lrs_per_step(fn):
    """``(fn(), [the lr of each optimiser step, per optimiser])``, read by a global optimiser step hook."""
    seen: dict[int, list[float]] = {}

    def hook(optimizer, args, kwargs):
        seen.setdefault(id(optimizer), []).append(optimizer.param_groups[0]["lr"])

    handle = register_optimizer_step_pre_hook(hook)
    try:
        result = fn()
    finally:
        handle.remove()
    return result, list(seen.values())


def test_one_cycle_in_training_with_accumulation_and_runs_together(small_graph, components, digits, train_config):
    config = {**train_config, "schedule": "one_cycle", "epochs": 2, "batch_size": 64, "warmup": 0.25}
    whole, split = fresh_model(small_graph, components, digits), fresh_model(small_graph, components, digits)
    a, (lrs,) = lrs_per_step(lambda: train(whole, digits, config, device=CPU, seed=0))
    per_epoch = steps_per_epoch(len(digits.x_train), config)[1]
    assert len(lrs) == a.steps == 2 * per_epoch
    peak = int(0.25 * 2 * per_epoch) - 1
    assert max(lrs) == lrs[peak] == pytest.approx(config["lr"]) and lrs[-1] < config["lr"] * 1e-4
    # micro-batches: one scheduler step per optimiser step, not per micro-batch; the same optimisation
    b, (micro_lrs,) = lrs_per_step(lambda: train(split, digits, config, device=CPU, seed=0, micro_batch_size=16))
    assert micro_lrs == lrs and b.val_loss == pytest.approx(a.val_loss, abs=1e-3)
    # runs trained together: each has its own scheduler over its own steps, and trains as it would alone
    tasks = fold_tasks(digits, SplitSpec(folds=2))
    models = [fresh_model(small_graph, components, digits) for _ in tasks]
    together, fold_lrs = lrs_per_step(lambda: train_together([Run(m, t) for m, t in zip(models, tasks, strict=True)], config,
                                                             device=CPU, seed=0))
    assert len(fold_lrs) == 2
    for task, model, run_lrs in zip(tasks, models, fold_lrs, strict=True):
        assert len(run_lrs) == 2 * steps_per_epoch(len(task.x_train), config)[1]
        assert max(run_lrs) == pytest.approx(config["lr"]) and run_lrs[-1] < config["lr"] * 1e-4
        alone = fresh_model(small_graph, components, digits)
        _, (alone_lrs,) = lrs_per_step(lambda alone=alone, task=task: train(alone, task, config, device=CPU, seed=0))
        assert alone_lrs == run_lrs
        assert all(torch.equal(x, y) for x, y in zip(alone.state_dict().values(), model.state_dict().values(), strict=True))
