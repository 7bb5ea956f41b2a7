"""What one trial samples (iasf_search.sampling): the architecture, every training setting and the auxiliary
objectives' settings, under stable parameter names; and the one-line description of an architecture."""

from __future__ import annotations

import optuna

from iasf_search import graph as arch
from iasf_search.sampling import describe_graph, sample_trial
from iasf_search.settings import TRAINING_PARAMS


def _trial(seed: int = 0) -> optuna.Trial:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()


def test_a_trial_samples_an_architecture_of_the_space_and_every_training_setting(make_session):
    session = make_session({"training.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}, "training.batch_size": [16, 32]})
    trial = _trial()
    graph, train_config, aux_config = sample_trial(trial, session.space, session.components)
    arch.validate(graph)
    assert len(arch.hidden_nodes(graph)) in session.space.nodes.values()
    assert set(train_config) == set(TRAINING_PARAMS) and aux_config == {}
    assert 1.0e-4 <= train_config["lr"] <= 1.0e-2 and train_config["batch_size"] in (16, 32)
    assert trial.params["train.lr"] == train_config["lr"] and trial.params["train.batch_size"] == train_config["batch_size"]


def test_auxiliary_settings_are_sampled_and_kept_in_the_training_settings(make_session):
    session = make_session({"auxiliary": {"reconstruction": {"weight": [0.0, 0.2]}}})
    trial = _trial()
    _, train_config, aux_config = sample_trial(trial, session.space, session.components)
    assert aux_config["reconstruction"]["weight"] in (0.0, 0.2)
    assert train_config["auxiliary"] == aux_config
    assert trial.params["aux.reconstruction.weight"] == aux_config["reconstruction"]["weight"]


def test_the_same_values_give_the_same_sample(make_session):
    """A FixedTrial of a trial's parameters (as the evolution sampler replays them) samples the same graph."""
    session = make_session()
    trial = _trial(seed=3)
    graph, train_config, _ = sample_trial(trial, session.space, session.components)
    again, train_again, _ = sample_trial(optuna.trial.FixedTrial(trial.params), session.space, session.components)
    assert arch.canonical_hash(again) == arch.canonical_hash(graph) and train_again == train_config


def test_the_description_starts_with_the_stem_and_names_every_node(make_session):
    session = make_session()
    graph, _, _ = sample_trial(_trial(), session.space, session.components)
    line = describe_graph(graph, session.components)
    stem = graph.nodes[arch.INPUT]
    assert line.startswith(session.components.stems.get(stem["op"]).describe(stem["config"]) + " ")
    ops = [session.components.ops.get(graph.nodes[n]["op"]).describe(graph.nodes[n]["config"]) for n in arch.hidden_nodes(graph)]
    assert all(op in line for op in ops)
