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
