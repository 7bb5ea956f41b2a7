"""Text datasets and the text stem (plugins/text.py): tokenizer, vocabulary, local files (CSV, JSONL) and their
errors, the generated topics, token embeddings."""

from __future__ import annotations

import json

import pytest
import torch

from iasf_search.components import SplitSpec
from iasf_search.data import check_task
from iasf_search.errors import BadInput
from iasf_search.plugin_manager import load_components
from iasf_search.plugins.text import PAD, TOPICS, UNKNOWN, encode, fit_vocabulary, generate_topics, tokenize
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


def test_a_corpus_with_its_own_test_file(tmp_path):
    """train.csv and test.csv: the test split is test.csv's rows in file order, encoded with the vocabulary of the
    training split; validation is split.val of train.csv."""
    train = tmp_path / "train.csv"
    train.write_text("label,text\n" + "".join(f"{'ab'[i % 2]},goal match uniq{i}\n" for i in range(40)))
    test = tmp_path / "test.csv"
    test_labels = ["b", "b", "a", "b", "a", "a", "b"]
    test.write_text("label,text\n" + "".join(f"{lab},\"Goal, match: novel{i}\"\n" for i, lab in enumerate(test_labels)))
    dataset = DATASETS.get("text_file")
    given = options("text_file", path=str(train), test_path=str(test), max_length=5)
    data = dataset.load(given, SplitSpec(val=0.25, test=0.5, seed=1))  # split.test is ignored
    check_task("text_file", data)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (30, 10, 7)
    assert data.info["source"] == str(train) and data.info["test_source"] == str(test) and data.info["classes"] == ["a", "b"]
    assert data.y_test.tolist() == [1, 1, 0, 1, 0, 0, 1]  # file order, the training file's class indices
    assert data.info["vocabulary_size"] == 2 + 2 + 30  # pad, unknown, goal, match, the training rows' own words
    goal, match = 2, 3  # both in every training row: most frequent, then alphabetical
    assert data.x_test.tolist() == [[goal, match, UNKNOWN, PAD, PAD]] * 7  # "novel<i>" never seen in training
    # train and validation: the 40 rows of train.csv, stratified; a validation row's own word is unknown
    assert data.y_train.bincount().tolist() == [15, 15] and data.y_val.bincount().tolist() == [5, 5]
    assert len(set(data.x_train[:, 2].tolist())) == 30 and not (data.x_train == UNKNOWN).any()
    assert data.x_val[:, :3].tolist() == [[goal, match, UNKNOWN]] * 10
    check_dataset(dataset, given, SplitSpec(val=0.25))


@pytest.mark.parametrize(("test_text", "fragments"), [
    (None, ["test.csv: no such file", "set task.options.test_path"]),
    ("label,text\na,goal\nc,match\nd,goal\n", ["test.csv: classes 'c', 'd' do not occur in the training data", "train.csv",
                                                 "fix the labels or remove those samples"]),
    ("label,text\na,goal\nb,!!!\n", ["test.csv: 1 texts have no word (first at row 2)"]),
    ("label,body\na,goal\n", ["test.csv: line 2 has no 'text' or 'label' field"]),
])
def test_a_test_file_that_does_not_fit_the_training_file(tmp_path, test_text, fragments):
    train = tmp_path / "train.csv"
    train.write_text("label,text\n" + "".join(f"{'ab'[i % 2]},goal match uniq{i}\n" for i in range(20)))
    test = tmp_path / "test.csv"
    if test_text is not None:
        test.write_text(test_text)
    with pytest.raises(BadInput) as info:
        DATASETS.get("text_file").load(options("text_file", path=str(train), test_path=str(test)), SplitSpec())
    message = str(info.value)
    assert message.startswith(f"dataset 'text_file': {test}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_duplicate_texts_across_splits_are_rejected(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("label,text\n" + "".join(f"{'ab'[i % 2]},same words {i % 2}\n" for i in range(40)))
    data = DATASETS.get("text_file").load(options("text_file", path=str(path)), SplitSpec())
    with pytest.raises(BadInput, match="also appear in the training split"):
        check_task("text_file", data)


def test_generated_topics_are_distinct_and_seeded():
    texts, labels = generate_topics(200, seed=4)
    assert len(set(texts)) == 200 and set(labels) == set(TOPICS)
    for text, label in zip(texts, labels, strict=True):
        assert set(text.split()) & set(TOPICS[label].split())  # every sentence holds words of its topic
    assert generate_topics(200, seed=4) == (texts, labels)
    assert generate_topics(200, seed=5)[0] != texts


def test_text_topics_dataset(components):
    dataset = components.datasets.get("text_topics")
    data = dataset.load(options("text_topics", samples=120, max_length=12), SplitSpec())
    check_task("text_topics", data)
    assert data.modality == "text" and data.sample_shape == (12,) and data.num_classes == 4
    assert data.info["classes"] == sorted(TOPICS) and data.info["generator"] == "text_topics"
    assert int(data.x_train.min()) >= PAD and int(data.x_train.max()) < data.info["vocabulary_size"]


def test_text_stem_embeds_ids_modulo_its_vocabulary(components):
    stem = components.stems.get("text")
    assert stem.layout({"vocabulary": 16, "position": "none"}, (5,)).shape == (5,)
    with pytest.raises(ValueError, match="1-D token-id sequences"):
        stem.layout({"vocabulary": 16, "position": "none"}, (5, 2))
    module = stem.build({"vocabulary": 16, "position": "none"}, (3,), 4)
    out = module(torch.tensor([[PAD, 3, 19]]))
    assert out.shape == (1, 3, 4)
    assert not out[0, 0].any()  # the padding id embeds to zeros
    torch.testing.assert_close(out[0, 2], out[0, 1])  # 19 wraps around to 3
    assert stem.describe({"vocabulary": 16, "position": "learned"}) == "emb16/learned"
