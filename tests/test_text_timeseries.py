"""Text and time-series datasets: tokenizer, vocabulary, local files (CSV, JSONL, UCR) and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iasf_search.components import SplitSpec
from iasf_search.data import check_task
from iasf_search.errors import BadInput
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.text import PAD, UNKNOWN, encode, fit_vocabulary, generate_topics, tokenize
from iasf_search.plugins.timeseries import SHAPES, generate_shapes, standardize
from iasf_search.testing import check_dataset

DATASETS = load_components(autoload=False).datasets


def options(name, **given):
    return {**{k: p.default for k, p in DATASETS.get(name).params.items()}, **given}


def test_tokenizer_vocabulary_and_encoding():
    assert tokenize("The Match, 2-1: it's a WIN!") == ["the", "match", "2", "1", "it's", "a", "win"]
    vocab = fit_vocabulary([["b", "a", "b"], ["c", "b", "a"]], size=4)
    assert vocab == {"b": 2, "a": 3}  # most frequent first; ids 0 and 1 reserved; size caps it
    assert encode([["a", "zzz"], ["b", "a", "b", "a"]], vocab, 3).tolist() == [[3, UNKNOWN, PAD], [2, 3, 2]]


def _write_rows(tmp_path, kind, n=60):
    texts, labels = generate_topics(n, seed=1)
    path = tmp_path / f"data.{kind}"
    if kind == "csv":
        path.write_text("label,text\n" + "".join(f"{lab},\"{t}\"\n" for t, lab in zip(texts, labels, strict=True)))
    else:
        path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in zip(texts, labels, strict=True)))
    return path, texts, labels


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_text_file_reads_csv_and_jsonl(tmp_path, kind):
    path, texts, labels = _write_rows(tmp_path, kind)
    dataset = DATASETS.get("text_file")
    data = dataset.load(options("text_file", path=str(path), max_length=10), SplitSpec(val=0.2, test=0.2))
    assert data.modality == "text" and data.x_train.dtype == torch.int64 and data.sample_shape == (10,)
    assert data.info["classes"] == sorted(set(labels)) and data.num_classes == 4
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 60
    check_dataset(dataset, options("text_file", path=str(path)), SplitSpec(val=0.2, test=0.2))


def test_vocabulary_is_fitted_on_the_training_split_only(tmp_path):
    """Each row has a word of its own: outside the training split those words are unknown."""
    path = tmp_path / "t.csv"
    path.write_text("label,text\n" + "".join(f"{'ab'[i % 2]},goal match uniq{i}\n" for i in range(60)))
    data = DATASETS.get("text_file").load(options("text_file", path=str(path)), SplitSpec(val=0.25, test=0.25, seed=0))
    train_ids = set(data.x_train.unique().tolist())
    assert data.info["vocabulary_size"] == 2 + 2 + len(data.x_train)  # pad, unknown, goal, match, one word per training row
    for x in (data.x_val, data.x_test):
        assert set(x.unique().tolist()) <= train_ids | {PAD, UNKNOWN}
        assert (x == UNKNOWN).sum(1).tolist() == [1] * len(x)


@pytest.mark.parametrize(("content", "given", "fragment"), [
    (None, {}, "task.options.path is required"),
    ("", {"path": "missing.csv"}, "no such file"),
    ("label,body\nsports,goal\n", {"path": "x.csv"}, "no 'text' or 'label' field"),
    ("label,text\n", {"path": "x.csv"}, "no rows"),
    ("whatever", {"path": "x.txt"}, "unsupported file type '.txt'"),
    ('{"text": "goal"\n', {"path": "x.jsonl"}, "cannot parse"),
])
def test_text_file_errors_name_the_problem(tmp_path, monkeypatch, content, given, fragment):
    monkeypatch.chdir(tmp_path)
    if content is not None and given.get("path") != "missing.csv":
        (tmp_path / given["path"]).write_text(content)
    with pytest.raises(BadInput, match=fragment):
        DATASETS.get("text_file").load(options("text_file", **given), SplitSpec())


def test_duplicate_texts_across_splits_are_rejected(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("label,text\n" + "".join(f"{'ab'[i % 2]},same words {i % 2}\n" for i in range(40)))
    data = DATASETS.get("text_file").load(options("text_file", path=str(path)), SplitSpec())
    with pytest.raises(BadInput, match="also appear in the training split"):
        check_task("text_file", data)


def test_generated_shapes_and_standardize():
    x, labels = generate_shapes(400, 32, 0.1, seed=0)
    assert x.shape == (400, 32) and set(labels) == set(SHAPES)
    z = standardize(x)
    assert np.allclose(z.mean(1), 0, atol=1e-5) and np.allclose(z.std(1), 1, atol=1e-4)
    assert np.array_equal(x, generate_shapes(400, 32, 0.1, seed=0)[0])


@pytest.mark.parametrize("sep", [",", "\t", " "])
def test_ucr_file_is_read_with_any_separator(tmp_path, sep):
    x, labels = generate_shapes(80, 16, 0.1, seed=2)
    path = tmp_path / "series.txt"
    path.write_text("".join(sep.join([str(SHAPES.index(lab) + 1)] + [f"{v:.5f}" for v in row]) + "\n"
                            for row, lab in zip(x, labels, strict=True)))
    dataset = DATASETS.get("timeseries_file")
    data = dataset.load(options("timeseries_file", path=str(path)), SplitSpec())
    assert data.sample_shape == (16, 1) and data.num_classes == 4 and data.info["classes"] == ["1", "2", "3", "4"]
    check_dataset(dataset, options("timeseries_file", path=str(path)))


@pytest.mark.parametrize(("content", "fragment"), [
    ("1,0.1,0.2\n2,0.3\n", "line 2 has 1 values, line 1 has 2"),
    ("1,0.1,abc\n", "line 1: a value is not a number"),
    ("1,0.1,nan\n2,0.2,0.3\n", "NaN or infinite"),
    ("\n", "no series found"),
])
def test_ucr_file_errors(tmp_path, content, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(BadInput, match=fragment):
        DATASETS.get("timeseries_file").load(options("timeseries_file", path=str(path)), SplitSpec())
