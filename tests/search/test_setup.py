"""The search's set-up (iasf_search.search.setup): nothing is written for bad input, the stem is checked against
the data, the classic baselines are fitted once per study on the search's own splits."""

from __future__ import annotations

import optuna
import pytest
import torch

import iasf_search


def test_bad_device_writes_nothing(tmp_path, write_space):
    space = iasf_search.load_space(write_space())
    db = tmp_path / "dev" / "d.db"
    with pytest.raises(iasf_search.BadInput, match="cuda:7"):
        iasf_search.run_search(space, trials=1, storage=f"sqlite:///{db}", device="cuda:7")
    assert not db.parent.exists()


def test_a_stem_that_cannot_take_the_data_is_bad_input_naming_the_space_file(make_session):
    from iasf_search.search.setup import check_stem_fits

    session = make_session()
    check_stem_fits(session, (1, 8, 8))  # digits: fine
    with pytest.raises(iasf_search.BadInput) as info:
        check_stem_fits(session, (8, 8))  # an image stem needs (C, H, W)
    assert str(info.value).startswith("test-space.yaml: stem: image inputs must have 3 axes per sample")
    assert "narrow the stem's values" in str(info.value)


def test_the_search_fits_the_baselines_once_on_its_own_splits(tmp_path, write_space, monkeypatch):
    from iasf_search.results.baselines import fit_baselines
    from iasf_search.search import setup as study_module
    from iasf_search.search.setup import data_fingerprint, load_task, prepare_search

    session = iasf_search.open_session(write_space())
    url = f"sqlite:///{tmp_path / 'b.db'}"
    fits = []
    monkeypatch.setattr(study_module, "fit_baselines", lambda data, seed, split: fits.append(data) or fit_baselines(data, seed, split))
    run = prepare_search(session, storage=url, device="cpu")
    data = load_task(session)
    assert torch.equal(fits[0].x_train, data.x_train) and torch.equal(fits[0].y_test, data.y_test)  # the same samples, same splits
    assert torch.equal(run.data.x_val.cpu(), data.x_val)
    recorded = run.study.user_attrs["baselines"]
    assert set(recorded) == {"1nn", "logistic_regression", "data"} and recorded["data"] == data_fingerprint(data)
    expected = fit_baselines(data)
    for name in ("1nn", "logistic_regression"):
        assert recorded[name]["test_accuracy"] == expected[name]["test_accuracy"] > 0.9  # digits: both are good
    assert recorded["data"] == run.study.user_attrs["data"]

    prepare_search(session, storage=url, device="cpu")  # resumed: recorded already, not fitted again
    assert len(fits) == 1
    stale = {**recorded, "data": {**recorded["data"], "train": 1}}  # fitted on other data: fitted again
    run.study.set_user_attr("baselines", stale)
    prepare_search(session, storage=url, device="cpu")
    refitted = optuna.load_study(study_name="tiny", storage=url).user_attrs["baselines"]
    assert len(fits) == 2 and refitted["data"] == recorded["data"] and refitted["1nn"]["test_accuracy"] == recorded["1nn"]["test_accuracy"]


def test_baselines_that_cannot_be_fitted_are_a_warning(tmp_path, write_space, monkeypatch):
    from iasf_search.search import setup as study_module
    from iasf_search.search.setup import prepare_search

    def refuse(data, seed, split):
        raise ValueError("no")

    monkeypatch.setattr(study_module, "fit_baselines", refuse)
    with pytest.warns(UserWarning, match=r"baselines not fitted \(ValueError: no\); the search goes on without them"):
        run = prepare_search(iasf_search.open_session(write_space()), storage=f"sqlite:///{tmp_path / 'w.db'}", device="cpu")
    assert "baselines" not in run.study.user_attrs


def test_a_task_too_large_to_fit_baselines_in_passing_is_left_to_the_baseline_command(tmp_path, write_space, monkeypatch):
    from iasf_search.search import setup as study_module
    from iasf_search.search.setup import prepare_search

    monkeypatch.setattr(study_module, "SEARCH_FIT_LIMIT", 1167 * 630 * 64 - 1)  # digits: 1167 x (270 + 360) x 64 is just over
    with pytest.warns(UserWarning, match=r"baselines not fitted: 1167 training samples of \(1, 8, 8\) would keep the search "
                                         r"waiting; `iasf-search baseline --space \.\.\.` fits and records them"):
        run = prepare_search(iasf_search.open_session(write_space()), storage=f"sqlite:///{tmp_path / 'l.db'}", device="cpu")
    assert "baselines" not in run.study.user_attrs


def test_padded_series_need_a_stem_that_masks_padding(make_session, monkeypatch):
    """Series of unequal lengths padded to one are refused at set-up, naming the space file and the way out, when the
    stem's module cannot mask the padding; the built-in sequence stem can."""
    from iasf_search.search.setup import check_stem_fits

    session = make_session({"task": {"dataset": "timeseries_shapes", "options": {"samples": 60, "length": 16}}})
    check_stem_fits(session, (16, 1), padded=True)
    stem = session.components.stems.get("sequence")
    plain = stem.build  # a stem of a third party: its module has no padding_mask
    monkeypatch.setattr(stem, "build", lambda config, shape, width: torch.nn.Sequential(plain(config, shape, width)))
    check_stem_fits(session, (16, 1))  # unpadded: fine
    with pytest.raises(iasf_search.BadInput) as info:
        check_stem_fits(session, (16, 1), padded=True)
    assert str(info.value) == ("test-space.yaml: task: dataset 'timeseries_shapes' gives series of unequal lengths padded to one, "
                               "but stem 'sequence' cannot mask padding (its module has no padding_mask); "
                               "set task.options.lengths to resample or truncate")


# -- a study's identity: the space and data it was searched on --------------------------------------------------


def test_differences_name_each_place_and_cut_long_values():
    from iasf_search.search.setup import differences

    assert differences({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 1, "c": [1, 2]}}) == ""
    assert differences({"a": {"b": 1}}, {"a": {"b": 2, "d": "x"}}) == "a.b: 1 before, 2 now; a.d: absent before, \"x\" now"
    assert differences({"k": "y" * 100}, {}) == f'k: "{"y" * 36}... before, absent now'
    many = differences({str(i): i for i in range(5)}, {str(i): -i for i in range(1, 5)})
    assert many.endswith("; and 2 more") and many.count(" before, ") == 3


def test_data_changes_accept_what_an_older_study_did_not_record():
    from iasf_search.search.setup import data_changes

    now = {"sample_shape": [8, 8], "num_classes": 10, "train": 100, "source": "x"}
    assert data_changes({}, now) == ""
    assert data_changes({"sample_shape": [8, 8], "num_classes": 10, "train": 100}, now) == ""  # no source recorded then
    assert data_changes({**now, "train": 90}, now) == "train: 90 before, 100 now"
    assert data_changes(now, {**now, "padded": True}) == "padded: false before, true now"


def _ucr_file(path, count: int, length: int = 24) -> None:
    """``count`` series of two classes (a rising and a falling ramp, with noise) in the UCR text layout."""
    gen = torch.Generator().manual_seed(count)
    lines = []
    for i in range(count):
        ramp = torch.linspace(0, 1, length) * (1 if i % 2 else -1) + 0.1 * torch.randn(length, generator=gen)
        lines.append(",".join([str(i % 2), *(f"{v:.4f}" for v in ramp.tolist())]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_study_searched_on_other_data_is_refused_and_keeps_its_record(tmp_path, write_space, capsys):
    from conftest import run

    data = tmp_path / "series.txt"
    _ucr_file(data, 40)
    write_space({"task.dataset": "timeseries_file", "task.options": {"path": str(data)}, "stem": {"patch": 4},
                 "manifold.nodes": 1, "manifold.width": 8, "manifold.ops": {"mlp": {"expansion": 1}}})
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "1")[0] == 0
    recorded = optuna.load_study(study_name="tiny", storage=url).user_attrs["data"]
    _ucr_file(data, 60)  # the same file, other samples
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", url, "--trials", "2")
    assert rc == 2
    (line,) = err.splitlines()
    assert line.startswith(f"iasf-search: error: study 'tiny' in {url} was searched on other data: test: ")
    assert "train: " in line and line.endswith("search it under a new name with --study NEW_NAME, or give it the data it "
                                               "was searched on")
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.trials) == 1 and study.user_attrs["data"] == recorded
