"""Retrain a found architecture from scratch on train + validation and report its test accuracy.

The search selects on the validation split with a short schedule; the final model should see the
validation samples too and train longer. The test split stays held out, as in the search.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import safetensors.torch
import torch

from iasf_search.build import build_model, count_parameters
from iasf_search.components import TaskData
from iasf_search.data import check_task
from iasf_search.errors import BadInput
from iasf_search.files import write_atomically
from iasf_search.graph import GraphError, from_json, validate
from iasf_search.plugin_manager import plugins_to_load
from iasf_search.results.artifacts import CHECKPOINT
from iasf_search.results.export import prepare_out_dir
from iasf_search.results.model_card import FORMAT
from iasf_search.session import Session, open_session
from iasf_search.space import SearchSpace
from iasf_search.train import Diverged, attach_aux, evaluate, resolve_device, train
from iasf_search.trial.cross_validation import pooled

EPOCH_FACTOR = 2
"""Default retraining length: this many times the epochs the trial trained during the search."""


@dataclass
class RetrainResult:
    out: Path
    epochs: int
    seconds: float
    test_accuracy: float
    test_loss: float
    search_test_accuracy: float | None
    train_samples: int
    params: int


def training_config(space: SearchSpace, info: dict[str, Any], file: Path) -> dict[str, Any]:
    """The trial's training settings from ``model.json``; else the space's, which must then be fixed values."""
    if info.get("train_config"):
        return dict(info["train_config"])
    config = {}
    for key, rng in space.training.items():
        if not rng.is_fixed:
            raise BadInput(f"{space.file}: training.{key} is searched, and {file.parent} has no model.json with the trial's "
                           f"settings; give the folder of an iasf-search export, or fix training.{key} to one value")
        config[key] = rng.fixed
    return config


def retrain(arch: str | Path, *, space_path: str | Path | None = None, epochs: int | None = None, device: str = "auto",
            seed: int | None = None, out: str | Path | None = None, plugins: Sequence[str] = ()) -> RetrainResult:
    """Train ``arch`` (an ``arch.json``) from scratch on train + validation; evaluate on test; save to ``out``.

    :param space_path: the space giving the dataset and training settings; default ``space.yaml``
        beside ``arch`` (an export folder has one).
    :param epochs: default :data:`EPOCH_FACTOR` times the trial's epochs.
    :param out: folder for the retrained model (loadable with :func:`iasf_search.load_model`);
        default ``retrained/`` beside ``arch``.
    :raises BadInput: unreadable architecture or space, unusable data or device.
    """
    arch = Path(arch)
    space_file = _check_arguments(arch, space_path, epochs)
    graph = read_architecture(arch)
    session, info, config = _settings(arch, space_file, epochs, plugins)
    space = session.space
    try:
        torch_device = resolve_device(device)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    seed = space.search.seed if seed is None else seed
    data = _retraining_data(session, torch_device)
    out = Path(out) if out is not None else arch.parent / "retrained"
    prepare_out_dir(out)

    trained = _train_from_scratch(graph, session, data, config, torch_device, seed, space_file)
    _save_files(out, arch, space_file, trained.model)
    new_info = _retrained_info(info, space, data, config, trained, seed, torch_device)
    write_atomically(out / "model.json", json.dumps(new_info, indent=2) + "\n")
    search_metrics = info.get("metrics", {})
    return RetrainResult(out, trained.epochs, trained.seconds, trained.test_accuracy, trained.test_loss,
                         search_metrics.get("test_accuracy"), len(data.x_train), trained.params)


def _check_arguments(arch: Path, space_path: str | Path | None, epochs: int | None) -> Path:
    """The space file to read (``--space``, else ``space.yaml`` beside ``arch``), once the arguments are usable."""
    if not arch.is_file():
        raise BadInput(f"--arch {arch}: no such file; give the arch.json of an iasf-search export")
    space_file = Path(space_path) if space_path is not None else arch.parent / "space.yaml"
    if not space_file.is_file():
        raise BadInput(f"{space_file}: no such space file; pass --space PATH (the space the architecture was found in)")
    if epochs is not None and epochs < 1:
        raise BadInput(f"--epochs must be at least 1, got {epochs}")
    return space_file


def read_architecture(arch: Path) -> nx.DiGraph:
    """The validated architecture graph of an ``arch.json`` file.

    :raises BadInput: the file is not an architecture graph.
    """
    try:
        graph = from_json(arch.read_text(encoding="utf-8"))
        validate(graph)
    except (ValueError, KeyError, GraphError) as exc:
        raise BadInput(f"{arch}: not an architecture graph ({type(exc).__name__}: {exc}); give the arch.json of an export") from None
    return graph


def _settings(arch: Path, space_file: Path, epochs: int | None,
              plugins: Sequence[str]) -> tuple[Session, dict[str, Any], dict[str, Any]]:
    """``(session, model.json beside arch or {}, training settings with the retraining's epochs)``.

    The session loads ``plugins`` (``--plugin``), then the plugins ``model.json`` records, then the space file's
    (:func:`~iasf_search.plugin_manager.plugins_to_load`'s order)."""
    info_file = arch.parent / "model.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    session = open_session(space_file, plugins=[module for module, _ in plugins_to_load(plugins, info.get("plugins", []))])
    config = training_config(session.space, info, arch)
    config["epochs"] = epochs or EPOCH_FACTOR * int(config["epochs"])
    return session, info, config


def _retraining_data(session: Session, torch_device: torch.device) -> TaskData:
    """The space's task, train and validation merged, on the device."""
    space = session.space
    data = session.components.datasets.get(space.dataset).load(space.dataset_options, space.split)
    check_task(space.dataset, data)
    return pooled(data).to(torch_device)


@dataclass
class _Trained:
    """A model trained from scratch and its test scores."""

    model: torch.nn.Module
    epochs: int
    seconds: float
    params: int
    test_accuracy: float
    test_loss: float


def _train_from_scratch(graph: nx.DiGraph, session: Session, data: TaskData, config: dict[str, Any],
                        torch_device: torch.device, seed: int, space_file: Path) -> _Trained:
    """Build ``graph`` with fresh weights (seeded), train it with ``config``, evaluate it on the test split."""
    torch.manual_seed(seed)
    model = build_model(graph, session.components, data.sample_shape, data.num_classes, padded=data.padded).to(torch_device)
    params = count_parameters(model)
    aux = attach_aux(model, config.get("auxiliary", {}), session.components, data.x_train[:2], torch_device)
    try:
        result = train(model, data, config, device=torch_device, seed=seed, aux=aux)
    except Diverged as exc:
        raise BadInput(f"retraining diverged ({exc}); lower training.lr in {space_file} or pass fewer --epochs") from None
    if hasattr(model, "aux_modules"):
        del model.aux_modules
    test_acc, test_loss = evaluate(model, data.x_test, data.y_test, torch_device)
    return _Trained(model, result.epochs, result.seconds, params, test_acc, test_loss)


def _save_files(out: Path, arch: Path, space_file: Path, model: torch.nn.Module) -> None:
    """The architecture and space copied into ``out``, and the retrained weights."""
    if arch.resolve() != (out / "arch.json").resolve():
        write_atomically(out / "arch.json", arch.read_bytes())
    if space_file.resolve() != (out / "space.yaml").resolve():
        write_atomically(out / "space.yaml", space_file.read_bytes())
    write_atomically(out / CHECKPOINT, safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                                                              metadata={"format": FORMAT, "retrained": "train+val"}))


def _retrained_info(info: dict[str, Any], space: SearchSpace, data: TaskData, config: dict[str, Any], trained: _Trained,
                    seed: int, torch_device: torch.device) -> dict[str, Any]:
    """The retrained model's ``model.json``: the export's, with the new metrics and how it was retrained."""
    return {
        **info, "format": FORMAT, "sample_shape": list(data.sample_shape), "num_classes": data.num_classes,
        "modality": data.modality, "plugins": list(space.plugins), "train_config": config,
        "metrics": {"test_accuracy": trained.test_accuracy, "test_loss": trained.test_loss, "epochs": trained.epochs,
                    "train_seconds": round(trained.seconds, 3), "params": trained.params},
        "retrained": {"on": "train+val", "samples": len(data.x_train), "seed": seed, "device": str(torch_device),
                      "search_metrics": info.get("metrics", {})},
    }
