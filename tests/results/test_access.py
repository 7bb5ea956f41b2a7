"""Reading results (:mod:`iasf_search.results.access`): studies, best and finished trials, picking a trial,
and what a trial trained."""

from __future__ import annotations

import networkx as nx
import optuna
import pytest
import safetensors.torch
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import iasf_search.results.access as access
from iasf_search.build import build_model
from iasf_search.errors import BadInput
from iasf_search.graph import to_json
from iasf_search.plugin_manager import load_components
from iasf_search.results.access import (
    FINISHED,
    StoredStudy,
    best_trials,
    data_shape,
    finished_trials,
    lead_trial,
    load_results,
    objective_names,
    open_stored_study,
    pick_trial,
    rebuild_trial_model,
    representation_metrics,
    stored_study,
    study_components,
    trained_source,
    trial_architecture,
    trial_numbers,
    trial_weights,
)
from iasf_search.results.artifacts import CHECKPOINT, open_artifact_store, upload_bytes
from iasf_search.results.records import ARCHITECTURE, STUDY_DATA, STUDY_SPACE, set_record
from iasf_search.search.setup import load_task
from iasf_search.session import open_session


def trial(state=TrialState.COMPLETE, values=None, **user_attrs):
    return create_trial(state=state, values=values, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                        user_attrs=user_attrs)


def study_of(*trials, directions=("maximize",)):
    study = optuna.create_study(directions=list(directions))
    for t in trials:
        study.add_trial(t)
    return study


def test_load_results_opens_a_stored_study_and_names_the_others(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    optuna.create_study(study_name="vision", storage=url).add_trial(trial(values=[0.5]))
    assert load_results(url, "vision").trials[0].value == 0.5
    with pytest.raises(BadInput, match="no study 'text' in .*studies there: vision"):
        load_results(url, "text")
    with pytest.raises(BadInput, match="no such study database"):
        load_results(f"sqlite:///{tmp_path / 'missing.db'}", "vision")
    assert not (tmp_path / "missing.db").exists()


def test_finished_trials_are_the_complete_and_pruned_ones():
    study = study_of(trial(values=[0.1]), trial(TrialState.PRUNED), trial(TrialState.FAIL), trial(values=[0.3]),
                     trial(TrialState.RUNNING))
    assert FINISHED == (TrialState.COMPLETE, TrialState.PRUNED)
    assert [t.number for t in finished_trials(study)] == [0, 1, 3]


def test_best_trials_of_one_objective_is_the_best_trial():
    study = study_of(trial(values=[0.1]), trial(values=[0.9]), trial(values=[0.4]))
    assert [t.number for t in best_trials(study)] == [1]
    assert best_trials(study_of(trial(TrialState.PRUNED), trial(TrialState.FAIL))) == []


def test_best_trials_of_one_objective_breaks_ties_by_validation_loss_then_number():
    study = study_of(trial(values=[0.99], val_loss=0.08), trial(values=[0.9], val_loss=0.01),
                     trial(values=[0.99], val_loss=0.03), trial(values=[0.99], val_loss=0.03), trial(values=[0.99]))
    assert [t.number for t in best_trials(study)] == [2]  # 0.99 like 0 and 4, surer than 0; 3 came later
    assert [t.number for t in best_trials(study_of(trial(values=[0.5]), trial(values=[0.5])))] == [0]  # no loss: the first


def test_best_trials_tie_break_keeps_to_the_feasible_trials():
    infeasible = trial(values=[0.99], val_loss=0.01)
    infeasible.set_constraint("params", 3.0)
    feasible = trial(values=[0.99], val_loss=0.05)
    feasible.set_constraint("params", 0.0)
    assert [t.number for t in best_trials(study_of(trial(values=[0.5]), infeasible, feasible))] == [2]


def test_best_trials_of_several_objectives_is_the_pareto_set_by_number():
    study = study_of(trial(values=[0.9, 500.0]), trial(values=[0.5, 100.0]), trial(values=[0.4, 600.0]),
                     trial(values=[0.95, 900.0]), directions=("maximize", "minimize"))
    assert [t.number for t in best_trials(study)] == [0, 1, 3]


def test_lead_trial_is_the_highest_validation_accuracy_lowest_number_on_ties():
    study = study_of(trial(values=[0.9, 500.0], val_accuracy=0.9), trial(values=[0.5, 100.0], val_accuracy=0.95),
                     trial(values=[0.4, 50.0], val_accuracy=0.95), trial(values=[0.3, 10.0]), directions=("maximize", "minimize"))
    best = best_trials(study)
    assert lead_trial(best).number == 1
    assert lead_trial(best[3:]).number == 3  # no validation accuracy recorded: still a trial
    assert lead_trial([]) is None


def test_pick_trial_gives_the_best_or_a_complete_trial_by_number():
    study = study_of(trial(values=[0.1]), trial(values=[0.9]), trial(TrialState.PRUNED))
    assert pick_trial(study, None).number == 1
    assert pick_trial(study, 0).number == 0
    with pytest.raises(BadInput, match=r"--trial 2: trial #2 is PRUNED, not COMPLETE; completed trials: 0, 1"):
        pick_trial(study, 2)
    with pytest.raises(BadInput, match=r"--trial 7: no such trial .*completed trials: 0, 1"):
        pick_trial(study, 7)
    multi = study_of(trial(values=[0.5, 100.0]), trial(values=[0.9, 500.0]), directions=("maximize", "minimize"))
    assert pick_trial(multi, None).number == 0  # the first of the Pareto set


def test_pick_trial_needs_a_completed_trial():
    with pytest.raises(BadInput, match="has no completed trial yet"):
        pick_trial(study_of(trial(TrialState.FAIL)), None)


def test_trial_numbers_are_cut_after_the_limit():
    trials = [trial(values=[0.0]) for _ in range(5)]
    study = study_of(*trials)
    assert trial_numbers(study.trials) == "0, 1, 2, 3, 4"
    assert trial_numbers(study.trials, limit=3) == "0, 1, 2, ..."
    assert trial_numbers([]) == ""


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_objective_names_are_the_studys_metric_names_else_numbered():
    study = study_of(directions=("maximize", "minimize"))
    assert objective_names(study) == ["objective 1", "objective 2"]
    study.set_metric_names(["val accuracy", "flops"])
    assert objective_names(study) == ["val accuracy", "flops"]


def test_representation_metrics_flatten_the_numeric_aux_measurements():
    t = trial(values=[0.5], **{"aux.cds": {"cosine": 0.25, "pairs": 3, "ok": True, "note": "x"}, "aux.rank": 7,
                               "aux.flag": False, "cost.flops": 10.0, "val_accuracy": 0.5})
    assert representation_metrics(t) == {"aux.cds.cosine": 0.25, "aux.cds.pairs": 3.0, "aux.rank": 7.0}
    assert representation_metrics(trial(values=[0.5])) == {}


def test_trained_source_follows_a_reused_result():
    study = study_of(trial(values=[0.7]), trial(values=[0.7], reused_from=0))
    first, second = study.trials
    assert trained_source(study, second).number == 0
    assert trained_source(study, first) is first


def test_data_shape_is_recorded_by_the_search():
    study = study_of()
    with pytest.raises(BadInput, match="does not record its data shape"):
        data_shape(study)
    study.set_user_attr("data", {"sample_shape": [1, 8, 8], "num_classes": 10})
    assert data_shape(study) == ((1, 8, 8), 10)


def test_study_components_load_the_plugins_its_space_names():
    study = study_of()
    study.set_user_attr("space", {"plugins": ["plugin_samples.scale_op"]})
    components = study_components(study)
    assert "scaled_linear" in components.ops
    assert components.sources["plugin_samples.scale_op"] == "the study's space"
    assert "scaled_linear" not in study_components(study_of()).ops
    assert study_components(study_of(), ["plugin_samples.scale_op"]).sources["plugin_samples.scale_op"] == "--plugin"


@pytest.fixture
def loads(monkeypatch):
    """Every plugin list the door loads, in call order (the plugins are loaded as usual)."""
    calls = []

    def counted(modules=(), **kwargs):
        calls.append(list(modules))
        return load_components(modules, **kwargs)

    monkeypatch.setattr(access, "load_components", counted)
    return calls


def test_the_door_opens_a_stored_study_with_its_records(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = optuna.create_study(study_name="vision", storage=url)
    study.set_user_attr(STUDY_SPACE, {"name": "vision", "plugins": ["plugin_samples.scale_op"]})
    study.set_user_attr(STUDY_DATA, {"sample_shape": [1, 8, 8], "num_classes": 10})
    opened = open_stored_study(url, "vision", plugins=["plugin_samples.nan_op"])
    assert isinstance(opened, StoredStudy) and opened.study.study_name == "vision"
    assert opened.space == {"name": "vision", "plugins": ["plugin_samples.scale_op"]}
    assert opened.data == {"sample_shape": [1, 8, 8], "num_classes": 10}
    with pytest.raises(BadInput, match="no study 'text' in .*studies there: vision"):  # load_results' errors
        open_stored_study(url, "text")
    bare = stored_study(study_of())  # not made by a search: empty records, no plugins of its own
    assert (bare.space, bare.data, bare.plugins) == ({}, {}, ())


def test_the_door_loads_plugins_once_on_first_use_in_the_documented_order(loads):
    study = study_of()
    study.set_user_attr(STUDY_SPACE, {"plugins": ["plugin_samples.scale_op", "plugin_samples.nan_op"]})
    opened = stored_study(study, plugins=["plugin_samples.nan_op", "plugin_samples.explode_op"])
    # the extra modules (--plugin, plugins=) first, then the space's; a module named twice once, where first named
    assert opened.plugins == (("plugin_samples.nan_op", "--plugin"), ("plugin_samples.explode_op", "--plugin"),
                              ("plugin_samples.scale_op", "the study's space"))
    assert loads == []  # nothing loaded until a command needs the plugins (best and analyze never do)
    components = opened.components
    assert opened.components is components
    assert loads == [list(opened.plugins)]  # loaded once, in that order
    assert {"scaled_linear", "nan_op", "explode"} <= set(components.ops)
    assert [m for m in components.sources if m.startswith("plugin_samples.")] == [m for m, _ in opened.plugins]
    assert components.sources["plugin_samples.nan_op"] == "--plugin"


def test_the_door_takes_plugins_already_loaded(tmp_path, write_space, loads):
    components = load_components()
    assert stored_study(study_of(), components=components).components is components
    path = write_space({"plugins": ["plugin_samples.scale_op"]})
    session = open_session(path, plugins=["plugin_samples.nan_op"])
    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = optuna.create_study(study_name="tiny", storage=url)
    study.set_user_attr(STUDY_SPACE, session.space.resolved())
    # the --space file's session loaded the very modules the study names, in the same order: used, not loaded again
    assert open_stored_study(url, "tiny", plugins=["plugin_samples.nan_op"], session=session).components is session.components
    assert loads == []
    # a study whose space names other plugins than the file's (or other --plugin modules) gets its own
    other = open_stored_study(url, "tiny", session=session)
    assert other.components is not session.components and loads == [[("plugin_samples.scale_op", "the study's space")]]
    # so does a session that loaded the installed plugins otherwise than the door would
    unlike = open_session(path, plugins=["plugin_samples.nan_op"], autoload=not session.space.autoload)
    assert open_stored_study(url, "tiny", plugins=["plugin_samples.nan_op"], session=unlike).components is not unlike.components


def test_the_door_gives_the_session_that_loads_the_studys_task(tmp_path, write_space):
    session = open_session(write_space())
    study = study_of()
    study.set_user_attr(STUDY_SPACE, session.space.resolved())
    opened = stored_study(study)
    stored = opened.session  # the stored space parsed against the loaded plugins
    assert stored.space.resolved() == session.space.resolved() and stored.components is opened.components
    data, again = load_task(session), load_task(stored)
    assert torch.equal(data.x_val, again.x_val) and torch.equal(data.y_train, again.y_train)  # the search's samples
    with pytest.raises(BadInput, match="study '.*' does not record its space"):
        _ = stored_study(study_of()).session


@pytest.fixture
def trained(tmp_path, make_graph, components):
    """A study whose trial #0 kept a checkpoint of a built model, #1 reused it and #2 kept none: (study, store, model)."""
    graph = make_graph([{"op": "mlp", "config": {"expansion": 1}}, {"op": "conv", "config": {"kernel": 3, "dilation": 1},
                                                                    "inputs": ["input", "n0"]}],
                       width=8)
    torch.manual_seed(0)
    model = build_model(graph, components, (1, 8, 8), 10).eval()
    store = open_artifact_store(tmp_path / "artifacts")
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("data", {"sample_shape": [1, 8, 8], "num_classes": 10})
    for i in range(3):
        t = study.ask()
        set_record(t, ARCHITECTURE, to_json(graph))
        if i == 0:
            upload_bytes(t, store, CHECKPOINT, safetensors.torch.save(model.state_dict()), "application/octet-stream")
        if i == 1:
            t.set_user_attr("reused_from", 0)
        study.tell(t, 0.5)
    return study, store, model


def test_trial_architecture_is_the_recorded_graph(trained):
    study, _, model = trained
    graph = trial_architecture(study.trials[0])
    assert isinstance(graph, nx.DiGraph)
    assert graph.nodes["n1"]["op"] == "conv" and graph.nodes["n1"]["fusion"] == "sum"
    assert [s for s, _ in sorted(graph.in_edges("n1"), key=lambda e: graph.edges[e]["slot"])] == ["input", "n0"]


def test_trial_weights_come_from_the_trained_trials_checkpoint(trained):
    study, store, model = trained
    first, reused, without = study.trials
    for t in (first, reused):
        weights = trial_weights(study, t, store)
        assert weights.keys() == model.state_dict().keys()
        assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert trial_weights(study, without, store) is None


def test_rebuild_trial_model_gives_the_trained_model_in_eval_mode(trained, components, digits):
    study, store, model = trained
    rebuilt = rebuild_trial_model(study, study.trials[1], store, components)
    assert not rebuilt.training
    x = digits.x_val[:4]
    assert torch.equal(rebuilt(x), model(x))
    assert rebuild_trial_model(study, study.trials[2], store, components) is None
