"""Zero-cost proxies in a search: the space keys, the fixed batch, prescreening in memory (any sampler,
the evolution one included), and whole searches that record the proxies and train only prescreened trials."""

from __future__ import annotations

import optuna
import pytest
import torch
from conftest import run
from optuna.trial import TrialState

from iasf_search.errors import SpaceError
from iasf_search.results.records import PRESCREEN
from iasf_search.search.prescreen import PROXY_BATCH, prescreen, proxies_to_record, proxy_batch

PRESCREENED = {"search.proxies": ["params", "synflow", "zico"], "search.prescreen": {"proxy": "zico", "candidates": 4, "keep": 1}}


@pytest.mark.parametrize(("search", "key", "fragment"), [
    ({"proxies": ["zicoo"]}, "search.proxies[0]", "did you mean 'zico'"),
    ({"proxies": "zico"}, "search.proxies", "expected a list"),
    ({"proxies": ["zico", "zico"]}, "search.proxies", "list each once"),
    ({"prescreen": {"proxy": "synflo"}}, "search.prescreen.proxy", "did you mean 'synflow'"),
    ({"prescreen": {"candidates": 4}}, "search.prescreen.proxy", "missing"),
    ({"prescreen": {"proxy": "zico", "candidates": 2, "keep": 3}}, "search.prescreen.keep", "keep <= candidates"),
    ({"prescreen": {"proxy": "zico", "keep": 0}}, "search.prescreen.keep", ""),
    ({"prescreen": {"proxy": "zico", "candidate": 4}}, "search.prescreen.candidate", "did you mean 'candidates'"),
])
def test_bad_proxy_keys_are_one_line_errors_naming_the_key(make_space, search, key, fragment):
    with pytest.raises(SpaceError) as info:
        make_space({f"search.{k}": v for k, v in search.items()})
    message = str(info.value)
    assert key in message and fragment in message and "\n" not in message, message


def test_the_keys_are_validated_resolved_and_left_out_when_unused(make_space):
    space = make_space(PRESCREENED)
    assert space.search.proxies == ("params", "synflow", "zico")
    assert space.search.prescreen == {"proxy": "zico", "candidates": 4, "keep": 1}
    assert space.resolved()["search"]["prescreen"] == {"proxy": "zico", "candidates": 4, "keep": 1}
    assert make_space({"search.prescreen": {"proxy": "synflow"}}).search.prescreen == {"proxy": "synflow", "candidates": 16, "keep": 1}
    plain = make_space()
    assert "proxies" not in plain.resolved()["search"] and "prescreen" not in plain.resolved()["search"]
    assert proxies_to_record(plain) == []
    assert proxies_to_record(make_space({"search.proxies": ["params"], "search.prescreen": {"proxy": "zico"}})) == ["params", "zico"]


def test_the_proxy_batch_is_fixed_by_the_seed(digits):
    x, y = proxy_batch(digits, 0)
    again, _ = proxy_batch(digits, 0)
    assert len(x) == len(y) == PROXY_BATCH and torch.equal(x, again)
    assert not torch.equal(proxy_batch(digits, 1)[0], x)


@pytest.mark.parametrize("sampler", ["random", "tpe", "evolution"])
def test_prescreen_queues_the_best_candidates_and_nothing_else(make_session, digits, sampler):
    session = make_session({"search.sampler": sampler, "search.prescreen": {"proxy": "params", "candidates": 6, "keep": 3}})
    study = optuna.create_study(directions=session.space.directions)
    batch = proxy_batch(digits, 0)
    assert prescreen(study, session, digits, torch.device("cpu"), seed=0, batch=batch, limit=2) == 2  # keep capped by the limit
    queued = study.get_trials(deepcopy=False)
    assert [t.state for t in queued] == [TrialState.WAITING] * 2  # no candidate reaches the real study
    marks = [t.user_attrs[PRESCREEN] for t in queued]
    assert [m["rank"] for m in marks] == [1, 2] and all(m["proxy"] == "params" and m["candidates"] == 6 for m in marks)
    assert marks[0]["score"] >= marks[1]["score"]
    assert queued[0].system_attrs["fixed_params"] != queued[1].system_attrs["fixed_params"]
    if sampler == "evolution":
        assert all("evolution_mutation" in t.user_attrs for t in queued)


def test_a_prescreened_search_records_the_proxies_and_holds_only_trained_trials(write_space, capsys):
    write_space(PRESCREENED)
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--trials", "3", "-q")
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage="sqlite:///runs/tiny.db")
    assert len(study.trials) == 3 and all(t.state == TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        assert all(isinstance(t.user_attrs[f"proxy.{name}"], float) for name in ("params", "synflow", "zico"))
        mark = t.user_attrs[PRESCREEN]
        assert mark["proxy"] == "zico" and mark["rank"] == 1 and mark["candidates"] == 4
        assert mark["score"] == t.user_attrs["proxy.zico"]  # the candidate scored is the model the trial trained
        assert t.user_attrs["proxy.params"] == t.user_attrs["params"]
    # resuming adds exactly the new target's trials
    assert run(capsys, "--space", "tiny.yaml", "--trials", "4", "-q")[0] == 0
    assert len(optuna.load_study(study_name="tiny", storage="sqlite:///runs/tiny.db").trials) == 4


def test_proxies_are_recorded_on_enqueued_trials_without_prescreen(write_space, capsys):
    write_space({"search.proxies": ["synflow"], "search.enqueue": ["transformer"], "manifold.ops": {"attention": {"heads": 2},
                                                                                                      "mlp": {"expansion": 2}}})
    rc, _, err = run(capsys, "--space", "tiny.yaml", "--trials", "2", "-q")
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage="sqlite:///runs/tiny.db")
    assert "enqueued" in study.trials[0].user_attrs
    assert all("proxy.synflow" in t.user_attrs and PRESCREEN not in t.user_attrs for t in study.trials)


def test_two_workers_prescreen_for_themselves_and_reach_exactly_the_target(write_space, capsys, tmp_path):
    write_space({**PRESCREENED, "manifold.width": 8})
    url = f"sqlite:///{tmp_path / 'runs' / 'tiny.db'}"
    rc, _, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "4", "--workers", "2", "-q")
    assert rc == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 4
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all(t.user_attrs["failure_reason"].startswith("surplus") for t in study.trials if t.state == TrialState.FAIL)
    assert all("proxy.zico" in t.user_attrs for t in done)
