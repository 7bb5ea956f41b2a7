"""Property-based fuzzing of the dataset files a user points a space at (Hypothesis): a valid file of every format the
built-in datasets read (UCR text, ``.ts``, ``.arff``, ``.npz``, ``.csv``, ``.jsonl``, an image of an image folder, a
CIFAR-10 batch), corrupted at random (cut short, bytes flipped, inserted or deleted, tokens such as ``nan``, ``1e400``
or a stray header spliced in), either loads and passes the task check or fails with one line
(:class:`~iasf_search.errors.BadInput`, exit status 2 through the CLI) naming the file, in bounded time; never
another exception. Through the CLI, a corrupted file under an existing study is refused and the study is unchanged.

CI runs a fixed, seeded budget (:data:`EXAMPLES` per format). A longer run:

    IASF_FUZZ_EXAMPLES=2000 python -m pytest -q tests/plugins/test_fuzz_dataset_files.py
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_doc
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from iasf_search.cli import main
from iasf_search.components import SplitSpec
from iasf_search.data import check_task
from iasf_search.errors import BadInput
from iasf_search.plugin_manager import load_components
from iasf_search.series import save_series

EXAMPLES = int(os.environ.get("IASF_FUZZ_EXAMPLES", "40"))
"""Corrupted files tried per format (the fixed budget CI runs)."""
DATASETS = load_components(autoload=False).datasets
SPLIT = SplitSpec(val=0.25, test=0.25)
TOKENS = [b"nan", b"1e400", b"-1e999", b"?", b",", b":", b"\t", b"\n", b"\r\n", b"\x00", b"\xff\xfe", b'"', b"@data\n",
          b"@classLabel true x\n", b"9" * 400, b"{", b"]", "é🧪".encode()]
"""Pieces a corruption splices in: numbers a float cannot hold, separators, a stray header line, bytes no UTF-8 has."""


def rows(n: int = 16, length: int = 10, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    labels = ["ab"[i % 2] for i in range(n)]
    return (rng.normal(size=(n, length)) + np.arange(n)[:, None] % 2).round(3), labels


def ucr(folder: Path) -> tuple[str, dict, Path]:
    x, y = rows()
    path = folder / "toy.tsv"
    path.write_text("".join(f"{label}\t" + "\t".join(f"{v:g}" for v in row) + "\n" for row, label in zip(x, y, strict=True)))
    return "timeseries_file", {"path": str(path)}, path


def ts(folder: Path) -> tuple[str, dict, Path]:
    pytest.importorskip("aeon", reason="the timeseries extra (aeon) is not installed")
    x, y = rows()
    header = ["@problemName toy", "@timeStamps false", "@missing false", "@univariate true", "@equalLength true",
              "@seriesLength 10", "@classLabel true a b", "@data"]
    path = folder / "toy.ts"
    path.write_text("\n".join(header + [",".join(f"{v:g}" for v in row) + f":{label}" for row, label in zip(x, y, strict=True)]) + "\n")
    return "timeseries_file", {"path": str(path)}, path


def arff(folder: Path) -> tuple[str, dict, Path]:
    pytest.importorskip("aeon", reason="the timeseries extra (aeon) is not installed")
    x, y = rows()
    lines = ["@relation toy", *[f"@attribute t{i} numeric" for i in range(10)], "@attribute target {a,b}", "@data"]
    path = folder / "toy.arff"
    path.write_text("\n".join(lines + [",".join(f"{v:g}" for v in row) + f",{label}" for row, label in zip(x, y, strict=True)]) + "\n")
    return "timeseries_file", {"path": str(path)}, path


def npz(folder: Path) -> tuple[str, dict, Path]:
    x, y = rows()
    path = save_series(folder / "toy.npz", x[:, None, :], y)
    return "timeseries_file", {"path": str(path)}, path


WORDS = "rain storm goal match team code chip wind snow bread".split()


def texts(n: int = 24) -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    return [(" ".join(rng.choice(WORDS[:5] if i % 2 else WORDS[5:], size=4)), "xy"[i % 2]) for i in range(n)]


def csv(folder: Path) -> tuple[str, dict, Path]:
    path = folder / "toy.csv"
    path.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in texts()))
    return "text_file", {"path": str(path)}, path


def jsonl(folder: Path) -> tuple[str, dict, Path]:
    path = folder / "toy.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in texts()))
    return "text_file", {"path": str(path)}, path


def image(folder: Path) -> tuple[str, dict, Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (folder / "images" / cls).mkdir(parents=True)
        for i in range(6):
            pixels = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / "images" / cls / f"{i}.png")
    return "image_folder", {"path": str(folder / "images"), "size": 8}, folder / "images" / "dog" / "3.png"


def cifar(folder: Path) -> tuple[str, dict, Path]:
    rng = np.random.default_rng(0)
    root = folder / "cifar-10-batches-py"
    root.mkdir()
    for name in ("data_batch_1", "test_batch"):
        batch = {b"data": (rng.random((20, 3072)) * 255).astype(np.uint8), b"labels": [i % 10 for i in range(20)]}
        (root / name).write_bytes(pickle.dumps(batch, protocol=4))
    return "cifar10", {"path": str(root), "train_batches": 1}, root / "data_batch_1"


FORMATS: dict[str, Callable[[Path], tuple[str, dict, Path]]] = {
    "ucr": ucr, "ts": ts, "arff": arff, "npz": npz, "csv": csv, "jsonl": jsonl, "image": image, "cifar": cifar}


def corrupt(data: bytes, how: str, where: float, extent: float, piece: bytes) -> bytes:
    """``data`` cut short at ``where``, or with bytes flipped, deleted, or ``piece`` inserted there."""
    at = int(where * len(data))
    if how == "truncate":
        return data[:at]
    if how == "flip":
        out = bytearray(data)
        for i in range(at, min(len(out), at + 1 + int(extent * 16))):
            out[i] ^= piece[0] | 1  # never 0: every byte in the range changes
        return bytes(out)
    if how == "delete":
        return data[:at] + data[at + 1 + int(extent * len(data) / 4):]
    return data[:at] + piece + data[at:]


def load(dataset: str, options: dict) -> None:
    """Load and check the task as a search does (:func:`iasf_search.search.setup.load_task`)."""
    component = DATASETS.get(dataset)
    data = component.load({**{k: p.default for k, p in component.params.items()}, **options}, SPLIT)
    check_task(dataset, data)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_corrupted_dataset_file_loads_or_is_one_line(fmt, tmp_path):
    dataset, options, path = FORMATS[fmt](tmp_path)
    load(dataset, options)  # the file as written is valid
    original = path.read_bytes()
    shown = str(path.parent if fmt == "image" else path)

    @seed(0)
    @settings(max_examples=EXAMPLES, deadline=5000, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(how=st.sampled_from(["truncate", "flip", "delete", "insert"]), where=st.floats(0, 1), extent=st.floats(0, 1),
           piece=st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=32))
    def check(how: str, where: float, extent: float, piece: bytes) -> None:
        path.write_bytes(corrupt(original, how, where, extent, piece))
        try:
            load(dataset, options)
        except BadInput as exc:
            message = str(exc)
            assert "\n" not in message and len(message) < 2000, message
            assert shown in message or path.name in message or f"'{dataset}'" in message, message
        # any other exception fails the example: Hypothesis reports the smallest corruption that raises it

    try:
        check()
    finally:
        path.write_bytes(original)


def test_a_corrupted_file_under_an_existing_study_is_refused_and_the_study_is_unchanged(tmp_path, capsys):
    _, options, path = npz(tmp_path)
    doc = make_doc({"task": {"dataset": "timeseries_file", "options": options}, "stem": {"patch": 2},
                    "search": {"sampler": "random", "pruner": "none", "seed": 0}})
    space = tmp_path / "series.yaml"
    space.write_text(yaml.safe_dump(doc), encoding="utf-8")
    db = tmp_path / "runs" / "series.db"
    command = ["--space", str(space), "--storage", f"sqlite:///{db}", "--trials", "1", "-q"]
    assert main(command) == 0, capsys.readouterr().err
    stored = hashlib.sha256(db.read_bytes()).hexdigest()
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # cut in half
    assert main([*command[:-2], "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"iasf-search: error: dataset 'timeseries_file': {path}: not a series file")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == stored


def test_corruptions_change_the_file():
    data = b"0123456789"
    assert corrupt(data, "truncate", 0.5, 0, b"x") == b"01234"
    assert corrupt(data, "insert", 0.2, 0, b"nan") == b"01nan23456789"
    assert corrupt(data, "delete", 0.0, 0, b"x") == b"123456789"
    assert corrupt(data, "flip", 0.0, 0, b"\x00")[0] != data[0]

