"""Shared fixtures: tiny space files, isolated working directory, loaded components, digits data, graphs."""

from __future__ import annotations

import copy
import importlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import optuna
import pytest
import torch
import yaml
from optuna.trial import FrozenTrial, TrialState, create_trial

from iasf_search.components import SplitSpec, TaskData
from iasf_search.graph import INPUT, OUTPUT, node_name, to_json
from iasf_search.plugin_manager import DISABLE_AUTOLOAD_ENV, Components, load_components

# Another process may keep both cores busy; OpenMP threads that spin-wait then make even a tiny model
# dozens of times slower. One intra-op thread keeps the suite fast and results reproducible.
torch.set_num_threads(1)

TESTS_DIR = Path(__file__).resolve().parent

TINY_SPACE: dict[str, Any] = {
    "name": "tiny",
    "task": {"dataset": "digits", "options": {"shift": 0}},
    "stem": {"patch": 2, "overlap": False, "position": "learned"},
    "manifold": {
        "nodes": {"low": 1, "high": 2},
        "max_in_degree": 2,
        "lookback": 2,
        "width": [8, 16],
        "ops": {"mlp": {"expansion": [1, 2]}, "conv": {"kernel": 3}},
        "fusions": ["sum"],
    },
    "training": {"epochs": 1, "batch_size": 128, "lr": 0.003, "min_steps": 0},  # min_steps 0: tests keep trials short
    "search": {"sampler": "random", "pruner": "none", "seed": 0},
}
"""A space whose trials train in a fraction of a second on digits (4x4 tokens, width <= 16, 1 epoch)."""

_DROP = object()


def resolve_private(path: str, library: str, version: str, internals: str) -> object:
    """The object at the dotted private ``path`` (module, then attribute), or a test failure naming it,
    the ``library`` ``version`` and the ``internals`` module to fix (tests of optuna/torch_internals)."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{library} {version} has no private {path} ({type(exc).__name__}: {exc}); "
                    f"{internals} must find it elsewhere or replace it", pytrace=False)


def make_doc(set: Mapping[str, Any] | None = None, drop: Iterable[str] = (), base: Mapping[str, Any] | None = None) -> dict:
    """A copy of ``base`` (default :data:`TINY_SPACE`) with dotted keys set (``{"manifold.width": [8]}``) or dropped."""
    doc = copy.deepcopy(dict(base if base is not None else TINY_SPACE))
    changes = [(k, v) for k, v in (set or {}).items()] + [(k, _DROP) for k in drop]
    for dotted, value in changes:
        *parents, last = dotted.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        if value is _DROP:
            node.pop(last, None)
        else:
            node[last] = value
    return doc


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own directory (so ``runs/`` lands there), without installed plugins,
    and can import the sample plugins as ``plugin_samples.NAME``."""
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(TESTS_DIR))


@pytest.fixture
def write_space(tmp_path: Path):
    """``write_space(set=..., drop=..., filename=..., doc=..., text=...)`` writes a space file, returns its path.

    Without ``doc`` or ``text`` it writes :data:`TINY_SPACE` changed by ``set`` / ``drop`` (see :func:`make_doc`).
    """

    def write(set: Mapping[str, Any] | None = None, drop: Iterable[str] = (), *, filename: str = "tiny.yaml",
              doc: Mapping[str, Any] | None = None, text: str | None = None) -> Path:
        path = tmp_path / filename
        if text is None:
            text = yaml.safe_dump(make_doc(set, drop, base=doc), sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def components() -> Components:
    """The built-in components only (no entry points, no extra plugins)."""
    return load_components(autoload=False)


@pytest.fixture(scope="session")
def digits(components: Components) -> TaskData:
    """The digits task (8x8 images, 10 classes), default split, no augmentation."""
    return components.datasets.get("digits").load({"shift": 0}, SplitSpec())


def default_config(component: Any) -> dict[str, Any]:
    """A configuration of ``component`` from its declared defaults: the first choice, or ``low`` of a range."""
    out = {}
    for name, param in component.params.items():
        value = param.default
        out[name] = value[0] if isinstance(value, list) else value["low"] if isinstance(value, dict) else value
    return out


def fusion_config(name: str) -> dict[str, Any]:
    """Defaults of a built-in fusion; ``{}`` for one a test plugin registers."""
    fusions = load_components(autoload=False).fusions
    return default_config(fusions.get(name)) if name in fusions else {}


def build_graph(nodes: Sequence[Mapping[str, Any]], *, width: int = 16, modality: str = "image",
                stem: Mapping[str, Any] | None = None, output: Sequence[str] | None = None,
                output_fusion: str = "sum") -> nx.DiGraph:
    """An architecture graph by hand.

    :param nodes: one mapping per hidden node ``n0, n1, ...`` with ``op``, ``config`` and optionally
        ``inputs`` (default: the previous node) and ``fusion`` (default ``sum`` when several inputs).
    :param output: the nodes the output reads (default: the last node).
    """
    graph = nx.DiGraph(width=width)
    stem_config = dict(stem or {"patch": 2, "overlap": False, "position": "learned"})
    graph.add_node(INPUT, role="input", op=modality, config=stem_config)
    previous = INPUT
    for i, spec in enumerate(nodes):
        name = node_name(i)
        inputs = list(spec.get("inputs", [previous]))
        attrs: dict[str, Any] = {"role": "node", "op": spec["op"], "config": dict(spec.get("config", {}))}
        if len(inputs) > 1:
            attrs["fusion"] = spec.get("fusion", "sum")
            attrs["fusion_config"] = fusion_config(attrs["fusion"])
        graph.add_node(name, **attrs)
        for slot, src in enumerate(inputs):
            graph.add_edge(src, name, slot=slot)
        previous = name
    outs = list(output or [previous])
    out_attrs: dict[str, Any] = {"role": "output"}
    if len(outs) > 1:
        out_attrs.update(fusion=output_fusion, fusion_config=fusion_config(output_fusion))
    graph.add_node(OUTPUT, **out_attrs)
    for slot, src in enumerate(outs):
        graph.add_edge(src, OUTPUT, slot=slot)
    return graph


def small_model(width: int = 16) -> torch.nn.Module:
    """An attention, MLP and convolution model on 8x8 images, in eval mode, weights from seed 0: the model
    the kernel-tracing, roofline and calibration tests trace."""
    from iasf_search.build import build_model

    graph = build_graph([{"op": "attention", "config": {"heads": 2, "pattern": "full"}}, {"op": "mlp", "config": {"expansion": 2}},
                         {"op": "conv", "config": {"kernel": 3, "dilation": 1}}], width=width)
    torch.manual_seed(0)
    return build_model(graph, load_components(autoload=False), (1, 8, 8), 10).eval()


@pytest.fixture
def make_graph():
    """The :func:`build_graph` helper."""
    return build_graph


TRAIN_CONFIG: dict[str, Any] = {
    "epochs": 2, "batch_size": 128, "optimizer": "adamw", "lr": 3.0e-3, "weight_decay": 0.05, "warmup": 0.1,
    "label_smoothing": 0.0, "grad_clip": 1.0, "augment": False, "min_steps": 0, "schedule": "cosine", "compile": False,
}


@pytest.fixture
def fused_model(make_graph, components):
    """A digits model with an mlp, a conv and an attention node fusing both by concat (width 16)."""
    from iasf_search.build import build_model

    torch.manual_seed(0)
    graph = make_graph([
        {"op": "mlp", "config": {"expansion": 2}},
        {"op": "conv", "config": {"kernel": 3, "dilation": 1}, "inputs": ["input"]},
        {"op": "attention", "config": {"heads": 2, "pattern": "full"}, "inputs": ["n0", "n1"], "fusion": "concat"},
    ], width=16)
    return build_model(graph, components, (1, 8, 8), 10)


@pytest.fixture
def train_config() -> dict[str, Any]:
    """A complete training configuration (every key of TRAINING_PARAMS), 2 epochs."""
    return dict(TRAIN_CONFIG)


@pytest.fixture
def make_space(components: Components):
    """``make_space(set=..., drop=..., base=...)``: a validated SearchSpace from a document (see :func:`make_doc`)."""
    from iasf_search.space import parse_space

    def make(set: Mapping[str, Any] | None = None, drop: Iterable[str] = (), base: Mapping[str, Any] | None = None):
        return parse_space(make_doc(set, drop, base=base), components, file="test-space.yaml")

    return make


@pytest.fixture
def make_session(make_space, components: Components):
    """``make_session(set=..., drop=..., base=...)``: :func:`make_space`'s space with the built-in components."""
    from iasf_search.session import Session

    def make(set: Mapping[str, Any] | None = None, drop: Iterable[str] = (), base: Mapping[str, Any] | None = None):
        return Session(make_space(set, drop, base), components)

    return make


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server for the whole session (``$IASF_TEST_POSTGRES_URL``, or a throwaway cluster started and
    stopped here); skips when there is none. See ``tests/postgres.py``."""
    from postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_db_url(postgres_url: str):
    """The URL of a fresh, empty database on :func:`postgres_url`'s server, dropped after the test."""
    from postgres import create_database, drop_database

    url = create_database(postgres_url)
    yield url
    drop_database(postgres_url, url)


OPS = {"attention": {"heads": 2, "pattern": "full"}, "conv": {"kernel": 3, "dilation": 1}, "mlp": {"expansion": 2},
       "pool": {"kind": "avg", "kernel": 3}}


def made_up_trial(number: int, rng: random.Random, accuracy_of: Callable[[nx.DiGraph, float], float], *,
                  state: TrialState = TrialState.COMPLETE, **attrs: Any) -> FrozenTrial:
    """A trial as a search records one (for readers of studies: the study page), made up: a random chain of 1-4
    nodes, a random width, stem, learning rate and readout, whose validation accuracy is ``accuracy_of(graph, lr)``,
    with its parameter count and FLOPs, a learning curve over 3 epochs, and ``attrs`` added to its user attributes."""
    ops = [rng.choice(sorted(OPS)) for _ in range(rng.randint(1, 4))]
    graph = build_graph([{"op": op, "config": OPS[op]} for op in ops], width=rng.choice([16, 32]),
                        stem={"patch": rng.choice([1, 2]), "overlap": False, "position": rng.choice(["learned", "sinusoidal"])})
    if rng.random() < 0.5:
        graph.nodes["output"]["readout"] = "max"
    lr = 10 ** rng.uniform(-3.5, -2)
    accuracy = accuracy_of(graph, lr)
    user_attrs = {"val_accuracy": accuracy, "val_loss": 1.0 - accuracy, "params": 1000 * len(ops) * graph.graph["width"],
                  "cost.params": 1000.0 * len(ops) * graph.graph["width"], "cost.flops": 5e4 * len(ops) ** 2,
                  "summary": f"w{graph.graph['width']} " + " > ".join(ops), **attrs}
    curve = {1: accuracy - 0.2, 2: accuracy - 0.05, 3: accuracy}
    complete = state == TrialState.COMPLETE
    trial = create_trial(state=state, value=accuracy if complete else None, user_attrs=user_attrs,
                         intermediate_values=curve if complete else {1: curve[1]},
                         system_attrs={"architecture": to_json(graph), "train_config": {"lr": lr, "optimizer": "adamw"}})
    trial.number = number
    return trial


def attention_decides(graph, lr) -> float:
    """Accuracy rises with the number of attention nodes, plus a little noise: nothing else matters."""
    count = sum(graph.nodes[n].get("op") == "attention" for n in graph)
    return 0.6 + 0.08 * count + random.Random(hash(to_json(graph)) % 1000 + int(lr * 1e6)).uniform(-0.005, 0.005)


def made_up_study(count: int, seed: int = 0, directions: Sequence[str] = ("maximize",)) -> optuna.Study:
    """An in-memory study of ``count`` :func:`made_up_trial` trials (attention decides accuracy); with two
    directions its objectives are validation accuracy and parameters."""
    rng = random.Random(seed)
    study = optuna.create_study(directions=list(directions), study_name="made-up")
    for i in range(count):
        trial = made_up_trial(i, rng, attention_decides)
        if len(directions) > 1:
            trial = create_trial(values=[trial.value, trial.user_attrs["params"]], user_attrs=trial.user_attrs,
                                 system_attrs=trial.system_attrs, intermediate_values=trial.intermediate_values)
        study.add_trial(trial)
    return study


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``iasf-search ARGS`` in this process: ``(exit status, stdout, stderr)``."""
    from iasf_search.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def finished(study) -> list:
    """The study's complete and pruned trials."""
    from optuna.trial import TrialState

    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


EXPORT_SPACE = make_doc({"manifold.ops": {"attention": {"heads": 2, "pattern": ["full", "local"], "window": 3}, "conv": {"kernel": 3}},
                         "manifold.width": 16, "training.lr": 0.01, "training.epochs": 2, "costs": ["params", "flops"]})
"""The space of :func:`export_search`: attention and convolution, 2 epochs, two costs recorded."""


@pytest.fixture(scope="session")
def export_search(tmp_path_factory):
    """A finished 4-trial search of :data:`EXPORT_SPACE` (through the CLI), for the export and retrain tests:
    ``(folder, space file, storage URL)``; the study is ``tiny``, its artifacts beside the database."""
    return finished_search(tmp_path_factory.mktemp("export"), EXPORT_SPACE, trials=4)


def finished_search(tmp: Path, doc: Mapping[str, Any], *, trials: int) -> tuple[Path, Path, str]:
    """A search of the space ``doc`` run through the CLI to ``trials`` finished trials in the folder ``tmp``:
    ``(folder, space file, storage URL)``; the study is ``tiny``, its artifacts beside the database."""
    from iasf_search.cli import main

    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(dict(doc)), encoding="utf-8")
    url = f"sqlite:///{tmp / 'runs' / 'tiny.db'}"
    assert main(["--space", str(path), "--storage", url, "--trials", str(trials), "-q"]) == 0
    return tmp, path, url


PAGE_SPACE = make_doc({"manifold.ops": {"attention": {"heads": 2, "pattern": "full"}, "conv": {"kernel": 3}, "mlp": {"expansion": 2}},
                       "manifold.width": 16, "training.lr": [0.003, 0.01], "training.epochs": 2, "costs": ["params", "flops"],
                       "search.pruner": "none"})
"""The space of :func:`page_search`: three ops, two learning rates, 2 epochs, two costs, no pruning."""


@pytest.fixture(scope="session")
def page_search(tmp_path_factory):
    """A finished 7-trial search of :data:`PAGE_SPACE` through the CLI, for the study page's tests:
    ``(folder, space file, storage URL)``; the study is ``tiny``, its artifacts beside the database."""
    return finished_search(tmp_path_factory.mktemp("page"), PAGE_SPACE, trials=7)
