"""Contract checks for plugin authors: run your op, fusion, stem or dataset through what the engine relies on.

Use them in your own tests, as the built-in plugins' tests do::

    from iasf_search.testing import check_op
    def test_my_op():
        check_op(MyOp())

Checks: :func:`check_op`, :func:`check_fusion`, :func:`check_readout`, :func:`check_norm`, :func:`check_stem`, :func:`check_dataset`,
:func:`check_aux_objective`, :func:`check_cost_model`, :func:`check_metric`. Each raises :class:`ContractError`
(an ``AssertionError``) naming the component, the configuration and the broken rule. Configurations come from the
component's own ``sample()`` driven through its declared parameter defaults, so conditional parameters are exercised too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from iasf_search.components import (
    AuxObjective,
    BuildContext,
    Component,
    CostModel,
    Dataset,
    Fusion,
    Measurement,
    NodeOp,
    Norm,
    Readout,
    RepresentationMetric,
    SplitSpec,
    Stem,
    TokenLayout,
)
from iasf_search.data import check_task
from iasf_search.errors import BadInput
from iasf_search.params import parse_params
from iasf_search.train import aux_forward_context

LAYOUTS: tuple[tuple[int, ...], ...] = ((4, 4), (12,))
"""Token grids the op and fusion checks use: an image-like 4x4 grid and a 12-step sequence."""


class ContractError(AssertionError):
    """A component breaks its contract; the message names it, the configuration and the rule."""


def sample_configs(component: Component, count: int | None = None) -> Iterator[dict[str, Any]]:
    """Configurations from ``component.sample()``, rotating through each parameter's default values.

    Configuration ``i`` takes value ``i mod n`` of every parameter with ``n`` default values, so
    ``max(n)`` configurations show every value of every parameter at least once.
    """
    ranges = parse_params({}, dict(component.params), f"<{type(component).__name__} defaults>", component.name)
    values = {name: r.values() or (r.low, r.high) for name, r in ranges.items()}  # an interval: its ends
    n = count or max([len(v) for v in values.values()] + [1])
    for i in range(n):
        yield component.sample(ranges, lambda name, i=i: values[name][i % len(values[name])])


def _fail(component: Component, config: Mapping[str, Any], rule: str) -> ContractError:
    return ContractError(f"{type(component).__name__} '{component.name}' with {dict(config)}: {rule}")


def _check_grads(component: Component, config: Mapping[str, Any], module: nn.Module, output: torch.Tensor,
                 inputs: Sequence[torch.Tensor]) -> None:
    output.float().square().mean().backward()
    missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    if missing:
        raise _fail(component, config, f"no gradient reaches parameters {missing}")
    differentiable = [x for x in inputs if x.requires_grad]
    if differentiable and not any(x.grad is not None and x.grad.abs().sum() > 0 for x in differentiable):
        raise _fail(component, config, "no gradient flows back to its input(s)")


def _same_output(build: Callable[[], nn.Module], x: Any) -> bool:
    """Two modules built under the same seed give the same output for ``x``."""
    outputs = []
    for _ in range(2):
        torch.manual_seed(0)
        outputs.append(build()(x))
    return torch.equal(*outputs)


def check_op(op: NodeOp, *, widths: Sequence[int] = (8, 16), batch_sizes: Sequence[int] = (1, 3),
             layouts: Sequence[tuple[int, ...]] = LAYOUTS) -> None:
    """``op`` maps ``(B, T, D)`` to the same shape with finite values for every sampled configuration,
    width, batch size and token grid; gradients reach its parameters and its input; building it
    twice under the same seed gives the same output."""
    for config in sample_configs(op):
        for shape in layouts:
            layout = TokenLayout(shape)
            for width in widths:
                ctx = BuildContext(width=width, layout=layout)
                try:
                    module = op.build(config, ctx)
                except Exception as exc:
                    raise _fail(op, config, f"build failed for width {width}, grid {shape}: {type(exc).__name__}: {exc}") from exc
                for batch in batch_sizes:
                    x = torch.randn(batch, layout.length, width, requires_grad=True)
                    y = module(x)
                    if y.shape != x.shape:
                        raise _fail(op, config, f"maps {tuple(x.shape)} to {tuple(y.shape)}; it must keep (B, T, D)")
                    if not torch.isfinite(y).all():
                        raise _fail(op, config, "returns NaN or infinite values for finite input")
                    if any(p.requires_grad for p in module.parameters()) or op.residual:
                        if y.requires_grad:
                            _check_grads(op, config, module, y, [x])
                x = torch.randn(2, layout.length, widths[0])
                if not _same_output(partial(op.build, config, BuildContext(widths[0], layout)), x):
                    raise _fail(op, config, "two builds under the same seed give different outputs")


def check_fusion(fusion: Fusion, *, widths: Sequence[int] = (8, 16), n_inputs: Sequence[int] = (2, 3),
                 batch_sizes: Sequence[int] = (1, 3), layouts: Sequence[tuple[int, ...]] = LAYOUTS) -> None:
    """``fusion`` maps a list of ``k`` tensors ``(B, T, D)`` to one ``(B, T, D)``; gradients reach its
    parameters and its inputs; deterministic under a seed."""
    for config in sample_configs(fusion):
        for shape in layouts:
            layout = TokenLayout(shape)
            for width in widths:
                for k in n_inputs:
                    module = fusion.build(config, k, BuildContext(width=width, layout=layout))
                    for batch in batch_sizes:
                        xs = [torch.randn(batch, layout.length, width, requires_grad=True) for _ in range(k)]
                        y = module(xs)
                        if y.shape != xs[0].shape:
                            raise _fail(fusion, config, f"fuses {k} x {tuple(xs[0].shape)} into {tuple(y.shape)}; "
                                                        f"it must keep (B, T, D)")
                        if not torch.isfinite(y).all():
                            raise _fail(fusion, config, "returns NaN or infinite values for finite input")
                        _check_grads(fusion, config, module, y, xs)
        xs = [torch.randn(2, 6, widths[0]) for _ in range(2)]
        if not _same_output(partial(fusion.build, config, 2, BuildContext(widths[0], TokenLayout((6,)))), xs):
            raise _fail(fusion, config, "two builds under the same seed give different outputs")


def _projected(y: torch.Tensor) -> torch.Tensor:
    """``y`` times fixed random weights: a loss whose gradient does not vanish after a normalisation
    (the mean square of a normalised tensor is constant)."""
    return y * torch.randn(y.shape, generator=torch.Generator().manual_seed(0)).to(y)


def check_readout(readout: Readout, *, widths: Sequence[int] = (8, 16), batch_sizes: Sequence[int] = (1, 3),
                  layouts: Sequence[tuple[int, ...]] = LAYOUTS) -> None:
    """``readout`` maps ``(B, T, D)`` to the ``(B, F)`` its ``features`` declares, with finite values, for every
    sampled configuration, width, batch size and token grid; gradients reach its parameters and its input;
    building it twice under the same seed gives the same output."""
    for config in sample_configs(readout):
        for shape in layouts:
            layout = TokenLayout(shape)
            for width in widths:
                ctx = BuildContext(width=width, layout=layout)
                module = readout.build(config, ctx)
                features = readout.features(config, ctx)
                for batch in batch_sizes:
                    x = torch.randn(batch, layout.length, width, requires_grad=True)
                    y = module(x)
                    if y.shape != (batch, features):
                        raise _fail(readout, config, f"maps {tuple(x.shape)} (grid {shape}) to {tuple(y.shape)}, expected "
                                                     f"{(batch, features)}: (B, F) with the F its features() declares")
                    if not torch.isfinite(y).all():
                        raise _fail(readout, config, "returns NaN or infinite values for finite input")
                    _check_grads(readout, config, module, _projected(y), [x])
        x = torch.randn(2, 6, widths[0])
        if not _same_output(partial(readout.build, config, BuildContext(widths[0], TokenLayout((6,)))), x):
            raise _fail(readout, config, "two builds under the same seed give different outputs")


def check_norm(norm: Norm, *, widths: Sequence[int] = (8, 16), batch_sizes: Sequence[int] = (2, 3),
               layouts: Sequence[tuple[int, ...]] = LAYOUTS) -> None:
    """``norm`` maps ``(B, T, D)`` to the same shape with finite values, in training and in eval mode;
    gradients reach its parameters and its input; deterministic under a seed."""
    for config in sample_configs(norm):
        for shape in layouts:
            layout = TokenLayout(shape)
            for width in widths:
                module = norm.build(config, BuildContext(width=width, layout=layout))
                for batch in batch_sizes:
                    for training in (True, False):
                        module.train(training)
                        x = torch.randn(batch, layout.length, width, requires_grad=True)
                        y = module(x)
                        if y.shape != x.shape:
                            raise _fail(norm, config, f"maps {tuple(x.shape)} to {tuple(y.shape)}; it must keep (B, T, D)")
                        if not torch.isfinite(y).all():
                            raise _fail(norm, config, "returns NaN or infinite values for finite input")
                        if training:
                            module.zero_grad()
                            _check_grads(norm, config, module, _projected(y), [x])
        x = torch.randn(2, 6, widths[0])
        if not _same_output(partial(norm.build, config, BuildContext(widths[0], TokenLayout((6,)))), x):
            raise _fail(norm, config, "two builds under the same seed give different outputs")


def check_stem(stem: Stem, sample_shape: tuple[int, ...], *, widths: Sequence[int] = (8, 16),
               batch_sizes: Sequence[int] = (1, 3), integer_inputs: int | None = None) -> None:
    """``stem`` turns ``(B, *sample_shape)`` into ``(B, T, D)`` with ``T`` equal to its layout's length.

    :param integer_inputs: for stems of discrete inputs (token ids): ids are drawn from
        ``[0, integer_inputs)`` and no gradient is expected at the input.
    """
    for config in sample_configs(stem):
        layout = stem.layout(config, sample_shape)
        for width in widths:
            module = stem.build(config, sample_shape, width)
            for batch in batch_sizes:
                if integer_inputs:
                    x = torch.randint(0, integer_inputs, (batch, *sample_shape))
                else:
                    x = torch.randn(batch, *sample_shape, requires_grad=True)
                y = module(x)
                if y.shape != (batch, layout.length, width):
                    raise _fail(stem, config, f"maps {tuple(x.shape)} to {tuple(y.shape)}, "
                                              f"expected {(batch, layout.length, width)} (layout {layout.shape})")
                _check_grads(stem, config, module, y, [x])


def check_dataset(dataset: Dataset, options: Mapping[str, Any] | None = None, split: SplitSpec | None = None) -> None:
    """``dataset.load`` passes the ingestion checks, has the declared modality, and is deterministic."""
    options = dict(options or {k: p.default for k, p in dataset.params.items()})
    split = split or SplitSpec()
    first = dataset.load(options, split)
    try:
        check_task(dataset.name, first)
    except BadInput as exc:
        raise _fail(dataset, options, str(exc)) from exc
    if first.modality != dataset.modality:
        raise _fail(dataset, options, f"loaded modality {first.modality!r}, declared {dataset.modality!r}")
    second = dataset.load(options, split)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        a, b = getattr(first, name), getattr(second, name)
        same = a.shape == b.shape and (torch.equal(a, b) if not a.is_floating_point() else
                                       bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all()))  # padding is NaN
        if not same:
            raise _fail(dataset, options, f"two loads with the same options and split differ in {name}")
    if first.augment is not None:
        batch = first.x_train[:4]
        out = first.augment(batch, torch.Generator().manual_seed(0))
        if out.shape != batch.shape:
            raise _fail(dataset, options, f"augment changes the batch shape {tuple(batch.shape)} to {tuple(out.shape)}")


def check_aux_objective(objective: AuxObjective, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """On ``model`` (an :class:`~iasf_search.build.ArchNet`) and a batch: the objective declares a
    ``weight``, its loss is a finite scalar whose gradient reaches its helper modules, and
    ``measure`` returns finite floats."""
    if "weight" not in objective.params:
        raise ContractError(f"auxiliary objective '{objective.name}' declares no 'weight' parameter")
    for config in sample_configs(objective):
        with aux_forward_context([objective]):
            forward = model.run(x, capture_fusion_inputs=objective.needs_fusion_inputs)
        module = objective.build(config, forward, model.width)
        loss = objective.loss(module, config, forward, y)
        if loss.dim() != 0 or not torch.isfinite(loss):
            raise _fail(objective, config, f"loss must be a finite scalar, got shape {tuple(loss.shape)} value {loss}")
        if loss.requires_grad:
            loss.backward()
            missing = [n for n, p in module.named_parameters() if p.grad is None]
            if missing:
                raise _fail(objective, config, f"no gradient reaches its helper parameters {missing}")
        forward = model.run(x, capture_fusion_inputs=objective.needs_fusion_inputs)
        measured = objective.measure(module, config, forward, y)
        if not all(isinstance(v, float) and v == v and abs(v) != float("inf") for v in measured.values()):
            raise _fail(objective, config, f"measure must return finite floats, got {measured}")


def check_cost_model(cost_model: CostModel, model: nn.Module, example: torch.Tensor,
                     options: Mapping[str, Any] | None = None) -> None:
    """On ``model`` and a batch of real inputs: ``measure`` returns a finite, non-negative float
    (or a :class:`~iasf_search.components.Measurement` of one, with JSON-serialisable details),
    the same twice (unless the cost model says it is not ``deterministic``), and leaves the
    model's parameters, training mode and gradients untouched."""
    options = dict(options or {k: p.default for k, p in cost_model.params.items()})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    results = [cost_model.measure(model, example, torch.device("cpu"), options) for _ in range(2)]
    for result in results:
        if isinstance(result, Measurement):
            try:
                json.dumps(dict(result.details))
            except (TypeError, ValueError) as exc:
                raise _fail(cost_model, options, f"Measurement.details must be JSON-serialisable: {exc}") from None
    first, second = (r.value if isinstance(r, Measurement) else r for r in results)
    if not isinstance(first, (int, float)) or not math.isfinite(first) or first < 0:
        raise _fail(cost_model, options, f"measure must return a finite non-negative number, got {first!r}")
    if model.training or any(p.grad is not None for p in model.parameters()):
        raise _fail(cost_model, options, "measuring left the model in training mode or with gradients")
    if cost_model.deterministic and first != second:
        raise _fail(cost_model, options, f"two measurements differ ({first} vs {second}) for the same model")
    if any(not torch.equal(before[k], v) for k, v in model.state_dict().items()):
        raise _fail(cost_model, options, "measuring changed the model's parameters or buffers")


def check_metric(metric: RepresentationMetric, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 options: Mapping[str, Any] | None = None) -> Measurement | None:
    """On the representations of ``model`` (an :class:`~iasf_search.build.ArchNet`) for the batch ``(x, y)``:
    ``measure`` returns None or a :class:`~iasf_search.components.Measurement` of a finite float with
    JSON-serialisable details, the same twice, and leaves the captured representations unchanged. Returns it."""
    from iasf_search.trial.representations import capture  # imports the model builder: only when checking a metric

    options = dict(options or {k: p.default for k, p in metric.params.items()})
    reps = capture(model, x, y)
    before = {k: v.clone() for k, v in reps.tokens.items()}
    results = [metric.measure(reps, options) for _ in range(2)]
    first, second = results
    if first is None:
        if second is not None:
            raise _fail(metric, options, "measure returned None once and a value once for the same model")
        return None
    if not isinstance(first, Measurement) or not isinstance(first.value, (int, float)) or not math.isfinite(first.value):
        raise _fail(metric, options, f"measure must return None or a Measurement of a finite number, got {first!r}")
    try:
        json.dumps(dict(first.details))
    except (TypeError, ValueError) as exc:
        raise _fail(metric, options, f"Measurement.details must be JSON-serialisable: {exc}") from None
    if second is None or second.value != first.value:
        raise _fail(metric, options, f"two measurements differ ({first.value} vs {second and second.value}) for the same model")
    if any(not torch.equal(before[k], v) for k, v in reps.tokens.items()):
        raise _fail(metric, options, "measuring changed the captured representations")
    return first
