"""Measuring costs as a search does: values, details, the model's mode, the constraints it breaks."""

from __future__ import annotations

from iasf_search.build import build_model, count_parameters
from iasf_search.search.setup import load_task
from iasf_search.trial.cost_measurement import measure_costs, violations


def test_costs_and_violations_of_a_model(make_session):
    session = make_session({"constraints": {"params": {"max": 10}}, "costs": ["params"]})
    data = load_task(session)
    graph = session.components.architectures.get("cnn").graph(session.space, session.components)
    model = build_model(graph, session.components, data.sample_shape, data.num_classes)
    assert model.training
    measured = measure_costs(model, ["params"], session.space, session.components, data.x_val, data.x_val.device)
    assert measured["params"].value == count_parameters(model) and model.training  # mode restored
    assert violations(model, session.space, session.components, data.x_val, data.x_val.device) == [
        f"params {count_parameters(model)} > max 10"]
    relaxed = make_session({"constraints": {"params": {"max": 1e9}}})
    assert violations(model, relaxed.space, relaxed.components, data.x_val, data.x_val.device) == []
