"""The classic baselines fitted on a search's splits and how they are recorded and compared
(:mod:`iasf_search.results.baselines`). The CLI ``baseline`` command: tests/test_cli.py; the search fitting
them: tests/test_study.py; the summary and report showing them: tests/results/test_summary.py, test_report_html.py."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from scipy import sparse

from iasf_search.components import SplitSpec, TaskData
from iasf_search.results.baselines import (
    baseline_features,
    baseline_line,
    baselines_event,
    beaten,
    compared_trial,
    comparison,
    fit_baselines,
    fit_work,
    record_baselines,
    recorded_baselines,
)
from iasf_search.results.records import STUDY_BASELINES
from iasf_search.trial.cross_validation import fold_tasks, pooled

DATA = {"sample_shape": [2], "num_classes": 2, "modality": "sequence", "train": 40, "val": 20, "test": 20}


def task(x_train, y_train, x_val, y_val, x_test, y_test, *, num_classes: int, modality: str = "sequence") -> TaskData:
    def t(a, dtype):
        return torch.as_tensor(np.asarray(a), dtype=dtype)

    float_or_int = torch.int64 if modality == "text" else torch.float32
    return TaskData(t(x_train, float_or_int), t(y_train, torch.int64), t(x_val, float_or_int), t(y_val, torch.int64),
                    t(x_test, float_or_int), t(y_test, torch.int64), num_classes=num_classes, modality=modality)


def xor_task(seed: int = 0) -> TaskData:
    """Four tight clusters at the corners of a square, labelled XOR: 1-NN is exactly right, no line separates them."""
    rng = np.random.default_rng(seed)
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    labels = np.array([0, 1, 1, 0])

    def draw(n):
        which = np.arange(n) % 4
        return corners[which] + rng.normal(0, 0.02, (n, 2)), labels[which]

    return task(*draw(40), *draw(20), *draw(20), num_classes=2)


def clusters_task(seed: int = 0) -> TaskData:
    """Three well-separated Gaussian clusters in 5 dimensions, samples shaped (5, 1): both baselines are exactly right."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (3, 5))

    def draw(n):
        y = np.arange(n) % 3
        return (centres[y] + rng.normal(0, 0.1, (n, 5)))[:, :, None], y

    return task(*draw(30), *draw(15), *draw(15), num_classes=3)


def test_well_separated_clusters_are_classified_exactly():
    result = fit_baselines(clusters_task())
    assert list(result) == ["1nn", "logistic_regression"]
    for metrics in result.values():
        assert set(metrics) == {"val_accuracy", "test_accuracy", "seconds"}
        assert metrics["val_accuracy"] == 1.0 and metrics["test_accuracy"] == 1.0
        assert 0.0 <= metrics["seconds"] < 30


def test_one_nearest_neighbour_solves_xor_where_logistic_regression_cannot():
    result = fit_baselines(xor_task())
    assert result["1nn"]["val_accuracy"] == 1.0 and result["1nn"]["test_accuracy"] == 1.0
    assert result["logistic_regression"]["test_accuracy"] <= 0.75  # a line gets at most three corners of four


def test_fitting_is_deterministic():
    data = task(*(np.random.default_rng(1).normal(size=(n, 3, 4)) if i % 2 == 0 else np.arange(n) % 4
                  for i, n in enumerate((60, 60, 30, 30, 30, 30))), num_classes=4)  # noise: accuracies near chance
    first, second = fit_baselines(data, seed=3), fit_baselines(data, seed=3)
    for name in first:
        assert first[name]["val_accuracy"] == second[name]["val_accuracy"]
        assert first[name]["test_accuracy"] == second[name]["test_accuracy"]


def test_features_are_z_normalised_with_the_training_splits_statistics():
    x_train = np.array([[1.0, 5.0, 7.0], [3.0, 5.0, 9.0], [5.0, 5.0, 11.0]])  # feature 1 is constant
    data = task(x_train, [0, 1, 0], [[3.0, 6.0, 9.0]], [1], [[7.0, 5.0, 7.0]], [0], num_classes=2)
    train, val, test = baseline_features(data)
    assert np.allclose(train.mean(axis=0), 0) and np.allclose(train.std(axis=0), [1, 0, 1])
    std = np.std([1.0, 3.0, 5.0])
    assert np.allclose(val, [[0.0, 1.0, 0.0]])  # the constant feature is only centred
    assert np.allclose(test, [[4.0 / std, 0.0, -2.0 / std]])


def test_image_samples_are_flattened():
    x = np.arange(4 * 2 * 3 * 3, dtype=float).reshape(4, 2, 3, 3)
    train, val, test = baseline_features(task(x, [0, 1, 0, 1], x[:1] + 0.5, [0], x[:1] - 0.5, [1], num_classes=2, modality="image"))
    assert train.shape == (4, 18) and val.shape == (1, 18) and test.shape == (1, 18)


def test_text_becomes_a_bag_of_words_where_word_order_does_not_matter():
    # class 0 holds word 5, class 1 word 6, at a different position in every sample; 0 pads, 2-4 are filler
    rng = np.random.default_rng(0)

    def draw(n):
        x = np.zeros((n, 6), dtype=np.int64)
        y = np.arange(n) % 2
        for i in range(n):
            words = [5 + y[i], *rng.choice([2, 3, 4], size=int(rng.integers(1, 4)))]
            x[i, :len(words)] = rng.permutation(words)
        return x, y

    data = task(*draw(40), *draw(20), *draw(20), num_classes=2, modality="text")
    train, val, _ = baseline_features(data)
    assert sparse.issparse(train) and train.shape == (40, 7)  # one column per id 0..6
    counts = np.zeros((40, 7))
    for i, row in enumerate(data.x_train.numpy()):
        np.add.at(counts[i], row, 1)
    scale = counts.std(axis=0)
    scale[scale == 0] = 1
    assert np.allclose(train.toarray(), counts / scale)  # counts over the training split's standard deviation, not centred
    same_words = np.array([[5, 2, 3, 0, 0, 0], [3, 0, 2, 0, 5, 0]])  # the same words in another order: the same features
    features = baseline_features(task(same_words, [0, 0], same_words, [0, 0], same_words, [0, 0], num_classes=1, modality="text"))[0]
    assert np.allclose(features[0].toarray(), features[1].toarray())
    result = fit_baselines(data)
    assert result["1nn"]["test_accuracy"] == 1.0 and result["logistic_regression"]["test_accuracy"] == 1.0


def test_recorded_baselines_round_trip_and_name_their_data():
    study = optuna.create_study()
    assert recorded_baselines(study) == {}
    fitted = {"1nn": {"val_accuracy": 0.9, "test_accuracy": 0.8, "seconds": 0.1}}
    record_baselines(study, fitted, DATA)
    assert study.user_attrs[STUDY_BASELINES] == {**fitted, "data": DATA}
    assert recorded_baselines(study) == fitted
    assert recorded_baselines(study, DATA) == fitted
    assert recorded_baselines(study, {**DATA, "train": 41}) == {}  # fitted on other data: as if none


def test_baseline_line():
    assert baseline_line("1nn", {"val_accuracy": 0.91, "test_accuracy": 0.905, "seconds": 0.123}) == \
        "1-NN: validation 0.9100, test 0.9050 (0.1 s)"
    assert baseline_line("logistic_regression", {"val_accuracy": 1, "test_accuracy": 0.5, "seconds": 2}) == \
        "logistic regression: validation 1.0000, test 0.5000 (2.0 s)"


def trial(values, **user_attrs):
    return create_trial(state=TrialState.COMPLETE, values=values, params={"x": 0.5},
                        distributions={"x": FloatDistribution(0, 1)}, user_attrs=user_attrs)


def study_with(baselines: dict[str, float], *trials, directions=("maximize",)) -> optuna.Study:
    study = optuna.create_study(directions=list(directions))
    record_baselines(study, {n: {"val_accuracy": 0.0, "test_accuracy": acc, "seconds": 0.0} for n, acc in baselines.items()}, DATA)
    for t in trials:
        study.add_trial(t)
    return study


@pytest.mark.parametrize(("test_accuracy", "verdict"), [
    (0.95, "the best trial (0.9500) beats both"),
    (0.89, "the best trial (0.8900) does not beat 1-NN"),
    (0.90, "the best trial (0.9000) does not beat 1-NN"),  # a tie does not beat
    (0.70, "the best trial (0.7000) beats neither"),
])
def test_comparison_on_test_accuracy(test_accuracy, verdict):
    study = study_with({"1nn": 0.9, "logistic_regression": 0.8}, trial([0.5], test_accuracy=test_accuracy))
    assert comparison(study, study.best_trials) == \
        f"baselines (test accuracy): 1-NN 0.9000, logistic regression 0.8000; {verdict}"


def test_comparison_before_any_trial_without_a_test_accuracy_and_without_baselines():
    assert comparison(study_with({"1nn": 0.9}), []) == "baselines (test accuracy): 1-NN 0.9000; no trial completed yet"
    study = study_with({"1nn": 0.9}, trial([0.5]))
    assert comparison(study, study.best_trials) == "baselines (test accuracy): 1-NN 0.9000; the best trial has no test accuracy"
    study = study_with({"1nn": 0.9}, trial([0.5, 1.0]), directions=("maximize", "minimize"))
    assert comparison(study, study.best_trials).endswith(
        "; trial #0 (the Pareto set's highest validation accuracy) has no test accuracy")
    assert comparison(optuna.create_study(), []) is None


def test_a_pareto_set_is_compared_through_its_trial_of_highest_validation_accuracy():
    study = study_with({"1nn": 0.9, "logistic_regression": 0.8},
                       trial([0.95, 9.0], val_accuracy=0.95, test_accuracy=0.85),
                       trial([0.90, 1.0], val_accuracy=0.90, test_accuracy=0.99), directions=("maximize", "minimize"))
    best = sorted(study.best_trials, key=lambda t: t.number)
    assert compared_trial(study, best).number == 0  # chosen on validation, never on test
    assert comparison(study, best).endswith("; trial #0 (the Pareto set's highest validation accuracy, test 0.8500) does not beat 1-NN")


def test_beaten_and_the_json_event():
    assert beaten({"a": {"test_accuracy": 0.5}, "b": {"test_accuracy": 0.7}}, 0.6) == {"a": True, "b": False}
    assert beaten({"a": {"test_accuracy": 0.5}}, None) == {"a": False}
    study = study_with({"1nn": 0.9, "logistic_regression": 0.8}, trial([0.5], test_accuracy=0.85))
    assert baselines_event(study, study.best_trials) == {
        "1nn": {"val_accuracy": 0.0, "test_accuracy": 0.9, "seconds": 0.0, "beaten": False},
        "logistic_regression": {"val_accuracy": 0.0, "test_accuracy": 0.8, "seconds": 0.0, "beaten": True}}
    assert baselines_event(study_with({"1nn": 0.9}), [])["1nn"]["beaten"] is None
    assert baselines_event(optuna.create_study(), []) == {}


def test_fit_work_is_training_times_scored_samples_times_features():
    assert fit_work(clusters_task()) == 30 * (15 + 15) * 5
    assert fit_work(xor_task()) == 40 * 40 * 2


def test_cross_validated_baselines_average_the_folds_and_test_after_fitting_on_the_pool(digits):
    split = SplitSpec(folds=3)
    fitted = fit_baselines(digits, 0, split)
    folds = [fit_baselines(task) for task in fold_tasks(digits, split)]
    on_pool = fit_baselines(pooled(digits))
    for name in ("1nn", "logistic_regression"):
        assert fitted[name]["val_accuracy"] == pytest.approx(sum(f[name]["val_accuracy"] for f in folds) / 3)
        assert fitted[name]["test_accuracy"] == on_pool[name]["test_accuracy"]
    assert fit_work(digits, split) == 4 * fit_work(digits)
