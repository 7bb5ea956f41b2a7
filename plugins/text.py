"""Text classification, offline: a local CSV/JSONL file (``text_file``) or a generated example
set (``text_topics``), a simple built-in word tokenizer, and the ``text`` stem.

Tokenizer: lower-case words and numbers (``[a-z0-9']+``); the vocabulary is fitted on the
training split only (most frequent first, ties alphabetical), id 0 pads and id 1 stands for
unknown words; sequences are cut or padded to ``max_length`` tokens. Samples are ``(T,)`` int64.

A corpus that comes with its own test file (``train.csv`` / ``test.csv``) is read with ``path`` and
``test_path``: the test split is then that file's rows, and validation is drawn from ``path``.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from iasf_search import hookimpl
from iasf_search.components import Dataset, SplitSpec, Stem, TaskData, TokenLayout
from iasf_search.data import OWN_TEST_SPLIT, class_indices, split_indices
from iasf_search.errors import BadInput
from iasf_search.params import Param
from iasf_search.plugins.stems import POSITIONS, PositionEncoding

PAD, UNKNOWN = 0, 1
_WORD = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def fit_vocabulary(texts: Sequence[list[str]], size: int) -> dict[str, int]:
    """Word -> id for the ``size - 2`` most frequent words (ids 0 and 1 are pad and unknown)."""
    counts = Counter(word for words in texts for word in words)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[: max(0, size - 2)]
    return {word: i + 2 for i, word in enumerate(ranked)}


def encode(texts: Sequence[list[str]], vocabulary: Mapping[str, int], length: int) -> np.ndarray:
    out = np.full((len(texts), length), PAD, dtype=np.int64)
    for i, words in enumerate(texts):
        ids = [vocabulary.get(w, UNKNOWN) for w in words[:length]]
        out[i, : len(ids)] = ids
    return out


def _words(texts: Sequence[str], name: str, where: str = "") -> list[list[str]]:
    """Each text tokenized; BadInput (``where``: the file, for a test file) when one has no word."""
    words = [tokenize(t) for t in texts]
    empty = [i for i, w in enumerate(words) if not w]
    if empty:
        raise BadInput(f"dataset '{name}': {where}{len(empty)} texts have no word (first at row {empty[0] + 1}); remove them")
    return words


def text_task(texts: Sequence[str], labels: Sequence[str], split: SplitSpec, *, name: str, vocabulary: int,
              max_length: int, info: dict[str, Any], test: tuple[Sequence[str], Sequence[str]] | None = None) -> TaskData:
    """Split, fit the vocabulary on the training texts, encode every split.

    ``test``: the dataset's own test ``(texts, labels)``, the test split as given (``info["test_source"]``
    names its file); validation is then ``split.val`` of ``texts``, and ``split.test`` is ignored.
    """
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels], dtype=np.int64)
    words = _words(texts, name)
    train, val, test_idx = split_indices(y, split, has_test=test is not None, source=info.get("source"))
    vocab = fit_vocabulary([words[i] for i in train], vocabulary)

    def part(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(encode([words[i] for i in idx], vocab, max_length)), torch.from_numpy(y[idx])

    (xa, ya), (xv, yv), (xt, yt) = part(train), part(val), part(test_idx)
    if test is not None:
        where, source = info.get("test_source", "the test data"), info.get("source", "")
        yt = torch.from_numpy(class_indices(test[1], classes, name=name, where=where, train=source))
        xt = torch.from_numpy(encode(_words(test[0], name, f"{where}: "), vocab, max_length))
    own = {OWN_TEST_SPLIT: True} if test is not None else {}
    return TaskData(xa, ya, xv, yv, xt, yt, num_classes=len(classes), modality="text",
                    info={**info, "classes": classes, "vocabulary_size": len(vocab) + 2, **own})


def _jsonl_rows(f: Iterable[str], where: str) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file."""
    for number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{where}: line {number}: cannot parse: {exc.msg} (column {exc.colno})") from None
        if not isinstance(row, dict):
            raise BadInput(f"{where}: line {number}: expected a JSON object with the text and label fields, got {line.strip()[:40]}")
        yield number, row


def _csv_rows(f: Iterable[str], where: str) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` for each record of a CSV file with a header; every record must have the header's fields."""
    reader = csv.DictReader(f)
    for row in reader:
        if None in row or None in row.values():  # csv puts extra fields under None and fills missing ones with None
            fields = len(reader.fieldnames) + len(row.get(None, ())) - list(row.values()).count(None)
            raise BadInput(f"{where}: line {reader.line_num} has {fields} fields, the header {len(reader.fieldnames)}; "
                           f"quote a text that holds a comma")
        yield reader.line_num, row


def read_text_file(path: Path, text_column: str, label_column: str, name: str, option: str = "path") -> tuple[list[str], list[str]]:
    """Rows of a ``.csv`` (with a header) or ``.jsonl`` file; BadInput naming the file and the problem
    (``option``: the ``task.options`` key that named the file)."""
    if not path.is_file():
        raise BadInput(f"dataset '{name}': {path}: no such file; set task.options.{option} to a local .csv or .jsonl file")
    texts, labels = [], []
    try:
        with path.open(encoding="utf-8", newline="") as f:
            if path.suffix.lower() == ".jsonl":
                rows = _jsonl_rows(f, f"dataset '{name}': {path}")
            elif path.suffix.lower() == ".csv":
                rows = _csv_rows(f, f"dataset '{name}': {path}")
            else:
                raise BadInput(f"dataset '{name}': {path}: unsupported file type '{path.suffix}'; use .csv or .jsonl")
            for line, row in rows:
                if text_column not in row or label_column not in row:
                    raise BadInput(f"dataset '{name}': {path}: line {line} has no '{text_column}' or '{label_column}' field; "
                                   f"set task.options.text_column / label_column")
                texts.append(str(row[text_column]))
                labels.append(str(row[label_column]))
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"dataset '{name}': {path}: cannot parse: {exc}") from None
    if not texts:
        raise BadInput(f"dataset '{name}': {path}: no rows")
    return texts, labels


_OPTIONS = {
    "max_length": Param(48, int, low=1, help="tokens per sample (cut or padded)"),
    "vocabulary": Param(5000, int, low=3, help="vocabulary size including pad and unknown (fitted on the training split)"),
}


class TextFile(Dataset):
    name = "text_file"
    modality = "text"
    description = "text classification from a local .csv (header) or .jsonl file with text and label fields"
    params = {
        "path": Param(None, str, nullable=True, help="the local file (required)"),
        "test_path": Param(None, str, nullable=True,
                           help="the corpus's own test file (.csv or .jsonl, same fields): all its rows, in file order, are the "
                                "test split; validation comes from path (split.val of it; split.test is ignored)"),
        "text_column": Param("text", str, help="field holding the text"),
        "label_column": Param("label", str, help="field holding the class label"),
        **_OPTIONS,
    }

    def load(self, options: Mapping[str, Any], split: SplitSpec) -> TaskData:
        if not options["path"]:
            raise BadInput("dataset 'text_file': task.options.path is required: the local .csv or .jsonl file to read")
        path = Path(options["path"]).expanduser()
        texts, labels = read_text_file(path, options["text_column"], options["label_column"], self.name)
        info, test = {"source": str(path)}, None
        if options.get("test_path"):
            test_path = Path(options["test_path"]).expanduser()
            test = read_text_file(test_path, options["text_column"], options["label_column"], self.name, "test_path")
            info["test_source"] = str(test_path)
        return text_task(texts, labels, split, name=self.name, vocabulary=options["vocabulary"],
                         max_length=options["max_length"], info=info, test=test)


TOPICS = {
    "sports": "match team goal coach season player league score win referee stadium",
    "weather": "rain storm wind forecast sunny cloud temperature snow humid cold",
    "food": "recipe bake flavour dinner spicy kitchen bread sauce fresh dessert",
    "technology": "software chip network device battery update cloud code robot screen",
}
FILLER = "the a of and to in is was on for with today new report said about very this that".split()


def generate_topics(samples: int, seed: int) -> tuple[list[str], list[str]]:
    """Short sentences mixing topic words, shared filler and a few words of other topics (distractors)."""
    rng = np.random.default_rng(seed)
    names = sorted(TOPICS)
    vocab = {t: TOPICS[t].split() for t in names}
    seen, texts, labels = set(), [], []
    while len(texts) < samples:
        topic = names[int(rng.integers(len(names)))]
        other = names[int(rng.integers(len(names)))]
        words = list(rng.choice(vocab[topic], size=int(rng.integers(2, 5))))
        words += list(rng.choice(vocab[other], size=int(rng.integers(0, 3))))
        words += list(rng.choice(FILLER, size=int(rng.integers(4, 10))))
        rng.shuffle(words)
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            texts.append(text)
            labels.append(topic)
    return texts, labels


class TextTopics(Dataset):
    name = "text_topics"
    modality = "text"
    description = "generated example set: short sentences about 4 topics with distractor words"
    params = {"samples": Param(3000, int, low=40, help="sentences generated (all distinct)"),
              "seed": Param(0, int, help="generator seed"), **_OPTIONS}

    def load(self, options: Mapping[str, Any], split: SplitSpec) -> TaskData:
        texts, labels = generate_topics(options["samples"], options["seed"])
        return text_task(texts, labels, split, name=self.name, vocabulary=options["vocabulary"],
                         max_length=options["max_length"], info={"generator": "text_topics", "seed": options["seed"]})


class TokenEmbedding(nn.Module):
    """(B, T) token ids -> (B, T, D): an embedding table (ids taken modulo its size) + position encoding."""

    def __init__(self, vocabulary: int, width: int, layout: TokenLayout, position: str) -> None:
        super().__init__()
        self.vocabulary = vocabulary
        self.embed = nn.Embedding(vocabulary, width, padding_idx=PAD)
        self.position = PositionEncoding(layout, width, position)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.position(self.embed(x.long() % self.vocabulary))  # (B, T, D)


class TextStem(Stem):
    name = "text"
    description = "token ids (T,) -> embedded tokens on the (T,) grid"
    params = {
        "vocabulary": Param(8192, int, low=2, help="embedding rows; larger ids wrap around (keep >= the dataset's vocabulary)"),
        "position": Param("learned", str, choices=POSITIONS, help="position encoding added to the tokens"),
    }

    def layout(self, config: Mapping[str, Any], sample_shape: tuple[int, ...]) -> TokenLayout:
        if len(sample_shape) != 1:
            raise ValueError(f"text inputs must be 1-D token-id sequences per sample, got shape {sample_shape}")
        return TokenLayout(sample_shape)

    def build(self, config: Mapping[str, Any], sample_shape: tuple[int, ...], width: int) -> nn.Module:
        return TokenEmbedding(config["vocabulary"], width, self.layout(config, sample_shape), config["position"])

    def describe(self, config: Mapping[str, Any]) -> str:
        return f"emb{config['vocabulary']}/{config['position']}"


@hookimpl
def iasf_register_datasets(registry) -> None:
    registry.register(TextFile())
    registry.register(TextTopics())


@hookimpl
def iasf_register_stems(registry) -> None:
    registry.register(TextStem())
