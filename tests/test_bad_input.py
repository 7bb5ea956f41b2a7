"""Bad input, one table (issue #5): every case exits 2 with ONE line ``iasf-search: error: ...`` naming what
is wrong and where (file, key path, the fix or the allowed values), prints no traceback, and leaves an
existing study -- its SQLite file and every file under ``runs/`` -- exactly as it was.

Each case runs the real CLI in-process in a directory holding ``runs/`` of a finished 2-trial search of the
tiny space (the default storage ``sqlite:///runs/tiny.db`` with its ``runs/artifacts``), built once per module;
``runs="none"`` cases run in a directory without ``runs/``, where bad input must create nothing at all (no
study database, no ``runs/``, no folder for a ``--storage`` file).
"""

from __future__ import annotations

import gc
import hashlib
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TINY_SPACE, make_doc

from iasf_search.cli import main
from iasf_search.plugin_manager import DISABLE_AUTOLOAD_ENV

SPACE = "tiny.yaml"
SEARCH = ("--space", SPACE, "--trials", "3")
"""A search that would add a trial to the existing 2-trial study, were its input not bad."""
FRESH = ("--storage", "sqlite:///fresh/s.db")
"""A study database in a folder that does not exist yet (``runs="none"`` cases): bad input must not create it."""


def space(set: Mapping[str, Any] | None = None, drop: Iterable[str] = (), base: Mapping[str, Any] | None = None) -> str:
    """YAML of the tiny space changed by ``set`` / ``drop`` (dotted keys, see ``conftest.make_doc``)."""
    return yaml.safe_dump(make_doc(set, drop, base=base), sort_keys=False)


def file_task(dataset: str, path: str, **options: Any) -> dict[str, Any]:
    """``set=`` changes that make the tiny space read ``dataset`` from the local file ``path``."""
    changes: dict[str, Any] = {"task": {"dataset": dataset, "options": {"path": path, **options}}}
    if dataset == "text_file":
        changes["stem"] = {"position": "learned"}  # the text stem has no patch
    return changes


def ucr(rows: int = 24, length: int = 8, *, line: int | None = None, text: str = "") -> str:
    """A UCR-layout file (label, then values, per line) of two classes; ``line`` (1-based) replaced by ``text``."""
    lines = [",".join([str(i % 2), *(f"{(i * 7 + j) % 10 / 10:.1f}" for j in range(length))]) for i in range(rows)]
    if line is not None:
        lines[line - 1] = text
    return "\n".join(lines) + "\n"


def ts_file(*, header: str = "@univariate true", rows: Iterable[str] | None = None) -> str:
    """A ``.ts`` file (sktime/aeon format) of classes a and b: 24 univariate series of 3 values unless ``rows``
    (``values:label`` lines) are given; ``header`` lines go before ``@classLabel`` (which ``header`` may replace)."""
    if rows is None:
        rows = [f"{i % 5},{(i * 3) % 7},{(i * 5) % 11}:{'ab'[i % 2]}" for i in range(24)]
    rows = list(rows)
    label = "" if "@classLabel" in header else "\n@classLabel true a b"
    return f"@problemName toy\n{header}{label}\n@data\n" + "\n".join(rows) + "\n"


def csv_rows(rows: int = 24, *, line: int | None = None, text: str = "") -> str:
    """A text_file CSV (header ``text,label``) of two classes; data ``line`` (1-based, after the header) replaced."""
    lines = [f"sample number {i} about {'cats' if i % 2 else 'dogs'},{'cat' if i % 2 else 'dog'}" for i in range(rows)]
    if line is not None:
        lines[line - 1] = text
    return "text,label\n" + "\n".join(lines) + "\n"


def jsonl_rows(rows: int = 24, *, line: int | None = None, text: str = "") -> str:
    lines = [f'{{"text": "sample number {i}", "label": "{i % 2}"}}' for i in range(rows)]
    if line is not None:
        lines[line - 1] = text
    return "\n".join(lines) + "\n"


BAD_DATA_PLUGIN = '''
"""Datasets whose tensors are corrupted after loading (what check_task must refuse)."""
import torch

from iasf_search import hookimpl
from iasf_search.components import Dataset, TaskData


def _task(y_train, *, n_train=40, num_classes=2):
    g = torch.Generator().manual_seed(0)
    x = lambda n: torch.rand(n, 1, 8, 8, generator=g)  # noqa: E731
    y = lambda n: torch.arange(n) % num_classes  # noqa: E731
    return TaskData(x(n_train), y_train, x(10), y(10), x(10), y(10), num_classes=num_classes, modality="image")


class LabelOutOfRange(Dataset):
    name = "label_out_of_range"
    modality = "image"
    description = "a training label equal to num_classes"
    params = {}

    def load(self, options, split):
        y = torch.arange(40) % 2
        y[7] = 2
        return _task(y)


class LengthMismatch(Dataset):
    name = "length_mismatch"
    modality = "image"
    description = "40 training samples, 39 labels"
    params = {}

    def load(self, options, split):
        return _task(torch.arange(39) % 2)


@hookimpl
def iasf_register_datasets(registry):
    registry.register(LabelOutOfRange())
    registry.register(LengthMismatch())
'''


@dataclass(frozen=True)
class Case:
    """One bad input: what to write, the command line, and the fragments the one error line must hold."""

    argv: tuple[str, ...]
    fragments: tuple[str, ...]
    space: str | None = field(default_factory=space)
    """the text of tiny.yaml (default: the tiny space the existing study was searched with); None: no file"""
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    """more files to write (relative paths); an empty string makes an empty file"""
    runs: str = "existing"
    """``existing``: a copy of the finished study's ``runs/``; ``file``: ``runs`` is a regular file; ``none``: no ``runs``"""
    secret: str | None = None
    """a password that must appear nowhere in the output"""
    tamper: tuple[str, str, Any] | None = None
    """``(table, key, value)``: the existing study's record ``key`` in Optuna's attribute ``table`` (of the study or its
    first trial) set to ``value`` first, as a tool other than iasf-search might"""


def case(id: str, argv: Iterable[str], *fragments: str, marks=(), **kwargs: Any):
    return pytest.param(Case(tuple(argv), fragments, **kwargs), id=id, marks=marks)




def damaged_npz() -> bytes:
    """A compressed series file with one byte of its compressed data flipped (zlib then fails, found by the fuzzer)."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, values=np.arange(400, dtype=np.float64).reshape(200, 2), lengths=np.full(20, 10),
                        labels=np.array(["a", "b"] * 10))
    data = bytearray(buffer.getvalue())
    data[len(data) // 3] ^= 0xFF
    return bytes(data)


PG = "postgresql://u:secret@127.0.0.1:1/db"

CASES = [
    # -- the space file: YAML, structure, keys ---------------------------------------------------
    case("missing-space-file", ["--space", "no-such.yaml", "--trials", "3"], "no-such.yaml", "no such space file",
         "search_spaces/vision.yaml"),
    case("yaml-syntax-error", SEARCH, SPACE, "not valid YAML", "line 3", space="name: tiny\ntask: {dataset: digits\nmanifold: [\n"),
    case("yaml-tab-indent", SEARCH, SPACE, "not valid YAML", "line 2", space="name: tiny\n\ttask: {dataset: digits}\n"),
    case("yaml-alias-bomb", SEARCH, SPACE, "expands to over 100,000 values through YAML aliases", space=(
        "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
                                                       for p, c in zip("abcdefgh", "bcdefghi", strict=True)))),
    case("yaml-recursive-alias", SEARCH, SPACE, "a YAML alias refers to the value that holds it", space="name: &n [tiny, *n]\n"),
    case("yaml-not-a-mapping", SEARCH, SPACE, "must hold a YAML mapping", "'name'", space="- name: tiny\n- task: digits\n"),
    case("yaml-empty-file", SEARCH, SPACE, "must hold a YAML mapping", space=""),
    case("unknown-top-level-key", SEARCH, SPACE, "manifld", "did you mean 'manifold'", "allowed:",
         space=space({"manifld": TINY_SPACE["manifold"]}, drop=["manifold"])),
    case("unknown-manifold-key", SEARCH, f"{SPACE}: manifold.opps", "did you mean 'ops'", "allowed:",
         space=space({"manifold.opps": {"mlp": None}})),
    case("unknown-training-key", SEARCH, f"{SPACE}: training.lrr", "did you mean 'lr'", "allowed:",
         space=space({"training.lrr": 0.001})),
    case("unknown-op", SEARCH, f"{SPACE}: manifold.ops.mlpp", "did you mean 'mlp'", "allowed:", "attention",
         space=space({"manifold.ops": {"mlpp": None}})),
    case("unknown-op-parameter", SEARCH, f"{SPACE}: manifold.ops.mlp.expansoin", "did you mean 'expansion'",
         space=space({"manifold.ops.mlp": {"expansoin": 2}})),
    case("unknown-range-key", SEARCH, f"{SPACE}: manifold.nodes.hihg", "did you mean 'high'",
         space=space({"manifold.nodes": {"low": 1, "hihg": 2}})),
    case("unknown-dataset", SEARCH, f"{SPACE}: task.dataset", "did you mean 'digits'", "allowed:", "mnist1d",
         space=space({"task.dataset": "digit"})),
    case("unknown-dataset-option", SEARCH, f"{SPACE}: task.options.shfit", "did you mean 'shift'",
         space=space({"task.options.shfit": 1})),
    case("unknown-sampler", SEARCH, f"{SPACE}: search.sampler", "did you mean 'random'", "allowed:",
         space=space({"search.sampler": "randon"})),
    case("unknown-objective-metric", SEARCH, f"{SPACE}: objectives[0].metric", "did you mean 'accuracy'", "allowed:",
         space=space({"objectives": [{"metric": "acuracy"}]})),
    case("missing-name", SEARCH, f"{SPACE}: name", "missing", space=space(drop=["name"])),
    case("constraint-on-an-unknown-cost", SEARCH, f"{SPACE}: constraints.latency", "unknown cost model or representation metric",
         "allowed:",
         space=space({"constraints": {"latency": {"max": 5}}})),
    case("constraint-without-max", SEARCH, f"{SPACE}: constraints.params", "expected {max: NUMBER}",
         space=space({"constraints": {"params": 20000}})),
    case("constraint-min-above-max", SEARCH, f"{SPACE}: constraints.params", "min 30000 is above max 20000",
         "give min <= max", space=space({"constraints": {"params": {"max": 20000, "min": 30000}}})),
    case("constraint-unknown-bound", SEARCH, f"{SPACE}: constraints.params.maximum", "unknown key", "allowed: max, min",
         space=space({"constraints": {"params": {"maximum": 20000}}})),
    case("constraint-on-a-misspelt-metric", SEARCH, f"{SPACE}: constraints.oversmothing", "did you mean 'oversmoothing'",
         space=space({"constraints": {"oversmothing": {"max": 0.9}}})),
    case("unknown-recorded-metric", SEARCH, f"{SPACE}: metrics.record.efective_rank", "did you mean 'effective_rank'",
         "allowed:", space=space({"metrics": ["efective_rank"]})),
    case("unknown-metrics-key", SEARCH, f"{SPACE}: metrics.batchsize", "did you mean 'batch'",
         space=space({"metrics": {"batchsize": 64}})),
    case("metrics-batch-too-small", SEARCH, f"{SPACE}: metrics.batch", "below the minimum 2", space=space({"metrics": {"batch": 1}})),
    case("misspelt-metric-objective", SEARCH, f"{SPACE}: objectives[1].metric", "did you mean 'intrinsic_dimension'",
         space=space({"objectives": [{"metric": "accuracy"}, {"metric": "intrinsic_dimensoin"}]})),
    case("constraint-bound-not-positive", SEARCH, f"{SPACE}: constraints.params.max", "not a positive bound",
         space=space({"constraints": {"params": {"max": 0}}})),
    case("constraint-bound-not-a-number", SEARCH, f"{SPACE}: constraints.params.max", "expected float",
         space=space({"constraints": {"params": {"max": "small"}}})),
    case("constraints-not-a-mapping", SEARCH, f"{SPACE}: constraints", "expected a mapping of cost or metric name to bounds",
         space=space({"constraints": ["params"]})),
    case("single-objective-pruner-with-two-objectives", SEARCH, f"{SPACE}: search.pruner", "one objective only",
         "use one of:", space=space({"objectives": [{"metric": "accuracy"}, {"metric": "params"}], "search.pruner": "hyperband"})),
    # -- wrong types ------------------------------------------------------------------------------
    case("epochs-not-a-number", SEARCH, f"{SPACE}: training.epochs", "expected int", "'ten'",
         space=space({"training.epochs": "ten"})),
    case("width-not-numbers", SEARCH, f"{SPACE}: manifold.width[0]", "expected int", "'a'",
         space=space({"manifold.width": ["a", "b"]})),
    case("lr-read-as-a-string", SEARCH, f"{SPACE}: training.lr", "expected float", "1.0e-3",
         space=space({"training.lr": "1e-3"})),
    case("bool-for-int", SEARCH, f"{SPACE}: manifold.max_in_degree", "expected int", "True",
         space=space({"manifold.max_in_degree": True})),
    case("section-not-a-mapping", SEARCH, f"{SPACE}: training", "expected a mapping", space=space({"training": [1, 2]})),
    case("plugins-not-a-list", SEARCH, f"{SPACE}: plugins", "expected a list of module names", space=space({"plugins": "x"})),
    case("range-for-a-string", SEARCH, f"{SPACE}: training.optimizer", "needs a number parameter", "list of choices",
         space=space({"training.optimizer": {"low": 1, "high": 2}})),
    # -- empty lists, low > high, values out of bounds ------------------------------------------------
    case("empty-choice-list", SEARCH, f"{SPACE}: manifold.ops.attention.heads", "list of choices is empty",
         "at least one value", space=space({"manifold.ops": {"attention": {"heads": []}}})),
    case("empty-op-list", SEARCH, f"{SPACE}: manifold.ops", "non-empty list", "allowed:", space=space({"manifold.ops": []})),
    case("repeated-choices", SEARCH, f"{SPACE}: manifold.width", "repeat", "list each once",
         space=space({"manifold.width": [8, 8]})),
    case("low-above-high", SEARCH, f"{SPACE}: manifold.nodes", "low <= high", "low=5, high=2",
         space=space({"manifold.nodes": {"low": 5, "high": 2}})),
    case("range-without-high", SEARCH, f"{SPACE}: training.lr", "missing 'high'", space=space({"training.lr": {"low": 0.001}})),
    case("log-range-from-zero", SEARCH, f"{SPACE}: training.weight_decay.low", "low > 0",
         space=space({"training.weight_decay": {"low": 0.0, "high": 0.1, "log": True}})),
    case("below-the-minimum", SEARCH, f"{SPACE}: training.epochs", "below the minimum 1", space=space({"training.epochs": 0})),
    case("not-an-allowed-choice", SEARCH, f"{SPACE}: training.optimizer", "'sgdd'", "did you mean 'sgd'", "allowed:",
         space=space({"training.optimizer": "sgdd"})),
    case("splits-leave-no-training-data", SEARCH, f"{SPACE}: task.split", "at least 10% for training",
         space=space({"task.split": {"val": 0.5, "test": 0.45}})),
    case("one-fold", SEARCH, f"{SPACE}: task.split.folds", "below the minimum 2", space=space({"task.split": {"folds": 1}})),
    case("repeats-without-folds", SEARCH, f"{SPACE}: task.split.repeats", "needs cross-validation", "add folds",
         space=space({"task.split": {"repeats": 3}})),
    case("more-folds-than-samples-of-any-class", SEARCH, f"{SPACE}: task.split.folds", "24 training and validation samples",
         "use folds: 12 or fewer", "timeseries_file", space=space({**file_task("timeseries_file", "series.txt"),
                                                                  "task.split": {"test": 0.2, "folds": 13}}),
         files={"series.txt": "".join(f"{i % 2},{i},{i + 1},{i * 2},{i % 3}\n" for i in range(30))}),
    # -- constraints nothing (or not everything) can satisfy -------------------------------------------
    case("heads-divide-no-width", SEARCH, f"{SPACE}: manifold.ops.attention.heads", "3 heads do not divide width 10",
         "choose heads that divide every width", space=space({"manifold.width": 10, "manifold.ops": {"attention": {"heads": [3]}}})),
    case("heads-range-misses-a-width", SEARCH, f"{SPACE}: manifold.ops.attention.heads", "3 heads do not divide width 8",
         space=space({"manifold.width": [8, 16], "manifold.ops": {"attention": {"heads": {"low": 1, "high": 4}}}})),
    case("fusion-heads-divide-no-width", SEARCH, f"{SPACE}: manifold.fusions.cross_attention.heads", "do not divide width",
         space=space({"manifold.width": 10, "manifold.fusions": {"cross_attention": {"heads": [4]}}})),
    case("pool-kernel-even-only", SEARCH, f"{SPACE}: manifold.ops.pool.kernel", "is even", "odd kernel",
         space=space({"manifold.ops": {"pool": {"kernel": [2, 4]}}})),
    case("pool-kernel-range-holds-an-even-value", SEARCH, f"{SPACE}: manifold.ops.pool.kernel", "2 is even", "odd kernel",
         space=space({"manifold.ops": {"pool": {"kernel": {"low": 1, "high": 3}}}})),
    # -- dataset files: missing, unreadable, corrupted -------------------------------------------------
    case("image-folder-missing", SEARCH, "image_folder", "missing-images", "no such folder",
         space=space(file_task("image_folder", "missing-images"))),
    case("image-folder-one-class", SEARCH, "image_folder", "imgs", "at least two class sub-folders",
         space=space(file_task("image_folder", "imgs")), files={"imgs/cat/readme.txt": "no image"}),
    case("image-folder-corrupt-image", SEARCH, "image_folder", "broken.png", "cannot read the image",
         space=space(file_task("image_folder", "imgs")), files={"imgs/cat/broken.png": b"not a png", "imgs/dog/x.txt": ""}),
    case("dataset-path-not-given", SEARCH, "timeseries_file", "task.options.path is required",
         space=space({"task": {"dataset": "timeseries_file"}})),
    case("timeseries-file-missing", SEARCH, "timeseries_file", "missing.txt", "no such file", "task.options.path",
         space=space(file_task("timeseries_file", "missing.txt"))),
    case("timeseries-missing-values-refused", SEARCH, "timeseries_file", "series.txt", "series 5", "missing values (NaN)",
         "set task.options.impute to interpolate or zero",
         space=space(file_task("timeseries_file", "series.txt", impute="refuse")),
         files={"series.txt": ucr(line=5, text="1,0.1,nan,0.3,0.4,0.5,0.6,0.7,0.8")}),
    case("timeseries-series-all-missing", SEARCH, "timeseries_file", "series.txt", "line 5", "has no value (all missing)",
         "remove the line", space=space(file_task("timeseries_file", "series.txt")),
         files={"series.txt": ucr(line=5, text="1,nan,nan,nan,nan,nan,nan,nan,nan")}),
    case("timeseries-value-not-a-number", SEARCH, "timeseries_file", "series.txt", "line 5", "not a number",
         space=space(file_task("timeseries_file", "series.txt")),
         files={"series.txt": ucr(line=5, text="1,0.1,abc,0.3,0.4,0.5,0.6,0.7,0.8")}),

    case("ts-header-disagrees-with-its-data", SEARCH, "timeseries_file", "series.ts", "not a readable .ts file",
         "Expecting univariate from metadata", space=space(file_task("timeseries_file", "series.ts")),
         files={"series.ts": ts_file(rows=["1,2,3:4,5,6:a", "3,2,1:6,5,4:b"])}),
    case("ts-rows-disagree", SEARCH, "timeseries_file", "series.ts", "not a readable .ts file",
         "Inconsistent number of dimensions", space=space(file_task("timeseries_file", "series.ts")),
         files={"series.ts": ts_file(rows=["1,2,3:4,5,6:a", "3,2,1:b"])}),
    case("ts-label-its-header-does-not-declare", SEARCH, "timeseries_file", "series.ts", "labels ['c']",
         "not among those its header declares", "@classLabel true a b", space=space(file_task("timeseries_file", "series.ts")),
         files={"series.ts": ts_file(rows=["1,2,3:c"])}),
    case("ts-series-all-missing", SEARCH, "timeseries_file", "series.ts", "series 3 has no value (all missing)",
         "remove it", space=space(file_task("timeseries_file", "series.ts")), files={"series.ts": ts_file(rows=[
             "1,2,3:a", "3,2,1:b", "?,?,?:a"])}),
    case("ts-test-file-with-other-channels", SEARCH, "timeseries_file", "test.ts", "series of 2 channels", "series.ts have 1",
         "task.options.test_path must be the test file of the same dataset",
         space=space(file_task("timeseries_file", "series.ts", test_path="test.ts")),
         files={"series.ts": ts_file(), "test.ts": ts_file(header="@univariate false\n@dimensions 2",
                                                            rows=["1,2,3:3,2,1:a", "3,2,1:1,2,3:b"])}),
    case("ts-test-labels-absent-from-training", SEARCH, "timeseries_file", "test.ts", "classes 'c' do not occur in the training data",
         "series.ts", space=space(file_task("timeseries_file", "series.ts", test_path="test.ts")),
         files={"series.ts": ts_file(), "test.ts": ts_file(header="@classLabel true a b c", rows=["1,2,3:c", "3,2,1:b"])}),
    case("npz-damaged-compressed-data", SEARCH, "timeseries_file", "series.npz", "not a series file", "error",
         space=space(file_task("timeseries_file", "series.npz")), files={"series.npz": damaged_npz()}),
    case("cifar-damaged-pickle", SEARCH, "cifar10", "data_batch_1", "not a CIFAR-10 python batch",
         space=space(file_task("cifar10", "cifar", train_batches=1)),
         files={"cifar/data_batch_1": b"\x80\x04\x95" + b"\xff" * 8 + b".", "cifar/test_batch": b"."}),
    case("csv-a-class-of-one-sample", SEARCH, "texts.csv", "cannot split", "by class", "smaller split.val and split.test",
         space=space(file_task("text_file", "texts.csv")), files={"texts.csv": csv_rows(line=4, text="a lone sample,bird")}),
    case("npz-not-a-series-file", SEARCH, "timeseries_file", "series.npz", "not a series file", "iasf_search.save_series",
         space=space(file_task("timeseries_file", "series.npz")), files={"series.npz": b"PK\x03\x04 truncated"}),
    case("timeseries-empty-file", SEARCH, "timeseries_file", "series.txt", "no series found",
         space=space(file_task("timeseries_file", "series.txt")), files={"series.txt": "\n\n"}),
    case("timeseries-class-with-one-sample", SEARCH, "cannot split", "by class", "use more data",
         space=space(file_task("timeseries_file", "series.txt")),
         files={"series.txt": ucr(line=3, text="7,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8")}),
    case("text-file-missing", SEARCH, "text_file", "missing.csv", "no such file", "task.options.path",
         space=space(file_task("text_file", "missing.csv"))),
    case("text-file-unsupported-type", SEARCH, "text_file", "texts.txt", "unsupported file type", ".csv or .jsonl",
         space=space(file_task("text_file", "texts.txt")), files={"texts.txt": "hello\n"}),
    case("text-csv-missing-label-column", SEARCH, "text_file", "texts.csv", "line 2", "'label'", "label_column",
         space=space(file_task("text_file", "texts.csv")), files={"texts.csv": "text,class\nhello,a\nworld,b\n"}),
    case("text-csv-row-missing-a-field", SEARCH, "text_file", "texts.csv", "line 5 has 1 fields, the header 2",
         space=space(file_task("text_file", "texts.csv")), files={"texts.csv": csv_rows(line=4, text="a row without its label")}),
    case("text-csv-row-with-extra-fields", SEARCH, "text_file", "texts.csv", "line 5 has 3 fields", "quote a text",
         space=space(file_task("text_file", "texts.csv")), files={"texts.csv": csv_rows(line=4, text="an unquoted, comma,cat")}),
    case("text-jsonl-malformed-line", SEARCH, "text_file", "texts.jsonl", "line 3", "cannot parse",
         space=space(file_task("text_file", "texts.jsonl")), files={"texts.jsonl": jsonl_rows(line=3, text='{"text": "oops"')}),
    case("text-jsonl-row-not-an-object", SEARCH, "text_file", "texts.jsonl", "line 3", "expected a JSON object",
         space=space(file_task("text_file", "texts.jsonl")), files={"texts.jsonl": jsonl_rows(line=3, text="null")}),
    case("text-jsonl-empty-text", SEARCH, "text_file", "no word", "row 2",
         space=space(file_task("text_file", "texts.jsonl")), files={"texts.jsonl": jsonl_rows(line=2, text='{"text": "", "label": "0"}')}),
    case("label-out-of-range", [*SEARCH, "--plugin", "bad_data_plugin"], "label_out_of_range", "labels must lie in [0, 2)",
         "0..2", space=space({"task": {"dataset": "label_out_of_range"}}), files={"bad_data_plugin.py": BAD_DATA_PLUGIN}),
    case("samples-and-labels-differ-in-length", [*SEARCH, "--plugin", "bad_data_plugin"], "length_mismatch",
         "40 samples but 39 labels", space=space({"task": {"dataset": "length_mismatch"}}),
         files={"bad_data_plugin.py": BAD_DATA_PLUGIN}),
    # -- storage ----------------------------------------------------------------------------------------
    case("malformed-storage-url", [*SEARCH, "--storage", "notaurl"], "storage URL 'notaurl' is malformed", "sqlite:///"),
    case("unknown-storage-driver", [*SEARCH, "--storage", "sqlite+nodriver:///runs/tiny.db"], "storage", "sqlite+nodriver"),
    case("storage-url-without-a-path", ["--space", SPACE, "--storage", "notaurl://", "--trials", "1"], "storage", runs="none"),
    case("storage-url-not-a-url", ["--space", SPACE, "--storage", "not a url at all", "--trials", "1"], "storage", runs="none"),
    case("unknown-storage-driver-fresh", ["--space", SPACE, "--storage", "sqlite+nodriver:///x.db", "--trials", "1"], "storage",
         runs="none"),
    case("unreachable-storage", [*SEARCH, "--storage", PG], "cannot open storage", "postgresql://u:***@127.0.0.1:1/db",
         secret="secret"),
    case("sqlite-folder-under-a-file", [*SEARCH, "--storage", "sqlite:///blocker/sub/s.db"], "blocker/sub/artifacts",
         "cannot be created", "--artifacts DIR", files={"blocker": "a regular file"}),
    case("sqlite-folder-under-a-file-no-artifacts", [*SEARCH, "--no-artifacts", "--storage", "sqlite:///blocker/sub/s.db"],
         "cannot create blocker/sub for the study database", "--storage", files={"blocker": "a regular file"}),
    case("runs-is-a-file", SEARCH, "runs/artifacts", "--artifacts DIR", runs="file"),
    case("runs-is-a-file-no-artifacts", [*SEARCH, "--no-artifacts"], "cannot create runs", "--storage", runs="file"),
    case("artifacts-under-a-file", [*SEARCH, "--artifacts", "blocker/art"], "blocker/art", "--artifacts DIR",
         files={"blocker": "a regular file"}),
    case("study-of-other-directions", SEARCH, "--study NEW_NAME", space=space({"objectives": [{"metric": "loss"}]})),
    # -- plugins ----------------------------------------------------------------------------------------
    case("unknown-plugin-flag", [*SEARCH, "--plugin", "no_such_module"], "iasf-search: error: cannot load plugin module 'no_such_module'",
         "--plugin", "install it or fix the name"),
    case("duplicate-plugins", [*SEARCH, "--plugin", "plugin_samples.dup_a", "--plugin", "plugin_samples.dup_b"],
         "op 'twin' is registered by two plugins", "plugin_samples.dup_a", "plugin_samples.dup_b"),
    case("unknown-plugin-in-space", SEARCH, f"{SPACE}: plugins[0]", "no_such_module", "install it or fix the name",
         space=space({"plugins": ["no_such_module"]})),
    # -- flags --------------------------------------------------------------------------------------------
    case("zero-trials", ["--space", SPACE, "--trials", "0"], "--trials must be at least 1"),
    case("negative-timeout", [*SEARCH, "--timeout", "-1"], "--timeout must be positive"),
    case("zero-timeout", [*SEARCH, "--timeout", "0"], "--timeout must be positive"),
    case("missing-gpu", [*SEARCH, "--device", "cuda:7"], "cuda:7", "--device cpu"),
    case("unknown-device", [*SEARCH, "--device", "tpu"], "'tpu'", "auto, cpu, cuda or cuda:N"),
    case("trials-not-a-number", ["--space", SPACE, "--trials", "ten"], "--trials", "'ten'", "--help"),
    case("workers-zero", [*SEARCH, "--workers", "0"], "--workers must be at least 1"),
    case("workers-not-a-number", [*SEARCH, "--workers", "many"], "--workers", "expected a number or auto, got 'many'"),
    case("trials-per-gpu-zero", [*SEARCH, "--trials-per-gpu", "0"], "--trials-per-gpu must be at least 1"),
    case("trials-per-gpu-on-the-cpu", [*SEARCH, "--trials-per-gpu", "2", "--device", "cpu"], "--trials-per-gpu needs a CUDA GPU",
         "--device cpu", "use --workers N"),
    case("trials-per-gpu-and-workers", [*SEARCH, "--workers", "3", "--trials-per-gpu", "2"],
         "--trials-per-gpu sets the number of workers", "leave out --workers"),
    case("trials-per-gpu-and-one-worker", [*SEARCH, "--workers=1", "--trials-per-gpu", "2"],
         "--trials-per-gpu sets the number of workers", "--workers auto"),
    case("unknown-flag", [*SEARCH, "--trails", "3"], "unrecognized arguments: --trails"),
    case("unknown-log-format", ["search", "--space", "x.yaml", "--log-format", "xml"],
         "iasf-search: error: argument --log-format: invalid choice: 'xml'"),
    # -- a fresh storage: nothing may be created (no runs/, no folder for the database) -----------------------
    case("bad-space-fresh-storage", [*FRESH, "--space", SPACE, "--trials", "1"], "did you mean 'manifold'",
         space="name: tiny\ntask: {dataset: digits}\nmanifld: {nodes: 1}\n", runs="none"),
    case("missing-space-fresh-storage", [*FRESH, "--space", "no-such.yaml", "--trials", "1"], "no such space file", runs="none"),
    case("missing-gpu-fresh-storage", [*FRESH, "--space", SPACE, "--device", "cuda:7", "--trials", "1"], "cuda:7", runs="none"),
    case("unknown-device-fresh-storage", [*FRESH, "--space", SPACE, "--device", "tpu", "--trials", "1"], "tpu", runs="none"),
    case("zero-trials-fresh-storage", [*FRESH, "--space", SPACE, "--trials", "0"], "--trials must be at least 1", runs="none"),
    case("zero-timeout-fresh-storage", [*FRESH, "--space", SPACE, "--timeout", "0"], "--timeout must be positive", runs="none"),
    case("unknown-plugin-fresh-storage", [*FRESH, "--space", SPACE, "--plugin", "no_such_module", "--trials", "1"], "no_such_module",
         runs="none"),
    # -- best, export, report, dashboard, train on what does not exist ---------------------------------------
    case("best-unknown-study", ["best", "--space", SPACE, "--study", "tinny"], "no study 'tinny'", "sqlite:///runs/tiny.db",
         "studies there: tiny"),
    case("best-unknown-study-by-storage", ["best", "--storage", "sqlite:///runs/tiny.db", "--study", "tinny"], "no study 'tinny'",
         "studies there: tiny"),
    case("best-no-database", ["best", "--storage", "sqlite:///runs/other.db", "--study", "tiny"], "runs/other.db",
         "no such study database"),
    case("best-no-database-fresh", ["best", "--space", SPACE, "--storage", "sqlite:///sub/none.db"], "no such study database",
         runs="none"),
    case("best-no-default-database-fresh", ["best", "--space", SPACE], "no such study database", runs="none"),
    case("best-without-space-or-study", ["best", "--storage", "sqlite:///x.db"], "--space", runs="none"),
    case("export-unknown-study", ["export", "--space", SPACE, "--study", "tinny", "--out", "exported"], "no study 'tinny'",
         "studies there: tiny"),
    case("export-unknown-trial", ["export", "--space", SPACE, "--trial", "99", "--out", "exported"], "--trial 99",
         "no such trial", "completed trials:"),
    case("export-missing-artifacts", ["export", "--space", SPACE, "--artifacts", "nowhere", "--out", "exported"], "nowhere",
         "no artifact folder", "--artifacts DIR"),
    case("report-unknown-study", ["report", "--space", SPACE, "--study", "tinny", "--out", "report"], "no study 'tinny'",
         "studies there: tiny"),
    case("dashboard-unknown-study", ["dashboard", "--space", SPACE, "--study", "tinny", "--port", "0"], "no study 'tinny'",
         "studies there: tiny"),
    # -- a study changed outside iasf-search (found by tests/results/test_fuzz_stored_studies.py) ------------
    case("best-record-of-the-wrong-kind", ["best", "--space", SPACE], "study 'tiny', trial #0", "'val_accuracy' holds [0.5], not a number",
         "changed outside iasf-search", tamper=("trial_user_attributes", "val_accuracy", [0.5])),
    case("search-space-record-not-a-mapping", SEARCH, "study 'tiny'", "'space' holds 'x', not a mapping",
         tamper=("study_user_attributes", "space", "x")),
    case("export-architecture-record-not-text", ["export", "--space", SPACE, "--out", "exported"], "trial #0",
         "'architecture' holds 7, not text", tamper=("trial_system_attributes", "architecture", 7)),
    case("report-baselines-record-a-list", ["report", "--space", SPACE, "--out", "report"], "'baselines' holds [],",
         tamper=("study_user_attributes", "baselines", [])),
    case("train-missing-arch", ["train", "--arch", "exported/arch.json"], "exported/arch.json", "no such file", "arch.json"),
    # -- baseline: it reads the data as a search does and writes only once the baselines are fitted ----------
    case("baseline-missing-space-file", ["baseline", "--space", "no-such.yaml"], "no such space file", "search_spaces/vision.yaml"),
    case("baseline-without-space", ["baseline", "--storage", "sqlite:///runs/tiny.db", "--study", "tiny"],
         "the following arguments are required: --space"),
    case("baseline-bad-space", ["baseline", "--space", SPACE], "did you mean 'manifold'",
         space=space({"manifld": TINY_SPACE["manifold"]}, drop=["manifold"])),
    case("baseline-missing-data-fresh-storage", ["baseline", *FRESH, "--space", SPACE], "image_folder", "missing-images",
         "no such folder", space=space(file_task("image_folder", "missing-images")), runs="none"),
    case("baseline-study-of-other-directions", ["baseline", "--space", SPACE], "--study NEW_NAME",
         space=space({"objectives": [{"metric": "loss"}]})),
    case("baseline-unreachable-storage", ["baseline", "--space", SPACE, "--storage", PG], "cannot open storage",
         "postgresql://u:***@127.0.0.1:1/db", secret="secret"),
    case("baseline-runs-is-a-file", ["baseline", "--space", SPACE], "cannot create runs", "--storage", runs="file"),
    case("baseline-unknown-flag", ["baseline", "--space", SPACE, "--trials", "3"], "unrecognized arguments: --trials"),
]


def tamper(db: Path, table: str, key: str, value: Any) -> None:
    import contextlib
    import json
    import sqlite3

    owner = "study_id" if table.startswith("study") else "trial_id"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        changed = conn.execute(f"UPDATE {table} SET value_json = ? WHERE {owner} = 1 AND key = ?", (json.dumps(value), key))
        assert changed.rowcount == 1, (table, key)


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` -> the sha256 of its content (``dir`` for a folder)."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def existing_runs(tmp_path_factory) -> Path:
    """``runs/`` of a real 2-trial search of the tiny space at the default storage (built once, copied by each case)."""
    folder = tmp_path_factory.mktemp("existing")
    (folder / SPACE).write_text(space(), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(DISABLE_AUTOLOAD_ENV, "1")
        mp.chdir(folder)
        assert main(["--space", SPACE, "--trials", "2", "--device", "cpu", "-q"]) == 0
    gc.collect()  # close the search's SQLite connections: its write-ahead log goes into tiny.db, -wal/-shm go away
    runs = folder / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["artifacts", "tiny.db"]
    assert any((runs / "artifacts").iterdir())
    return runs


@pytest.mark.parametrize("bad", CASES)
def test_bad_input(bad: Case, capsys, tmp_path, monkeypatch, existing_runs):
    monkeypatch.syspath_prepend(str(tmp_path))  # plugin modules a case writes
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # so importing them leaves no __pycache__ behind
    if bad.runs == "existing":
        shutil.copytree(existing_runs, tmp_path / "runs")
        if bad.tamper is not None:
            tamper(tmp_path / "runs" / "tiny.db", *bad.tamper)
    elif bad.runs == "file":
        (tmp_path / "runs").write_text("a regular file where the runs folder belongs", encoding="utf-8")
    if bad.space is not None:
        (tmp_path / SPACE).write_text(bad.space, encoding="utf-8")
    for name, content in bad.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    before = _tree(tmp_path)
    db_before = hashlib.sha256((tmp_path / "runs" / "tiny.db").read_bytes()).hexdigest() if bad.runs == "existing" else None

    capsys.readouterr()
    rc = main(list(bad.argv))
    out, err = capsys.readouterr()
    if any(p.name.endswith(("-wal", "-shm")) for p in tmp_path.rglob("*")):
        gc.collect()  # close the SQLite connections a read left open in this process: -wal and -shm go on close

    assert rc == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("iasf-search: error: "), err
    for fragment in bad.fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert "Traceback" not in err and "Traceback" not in out
    if bad.secret:
        assert bad.secret not in out + err
    # nothing written, nothing changed: the existing study, its artifacts, the case's own files
    if db_before is not None:
        assert hashlib.sha256((tmp_path / "runs" / "tiny.db").read_bytes()).hexdigest() == db_before
    assert _tree(tmp_path) == before
