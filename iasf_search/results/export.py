"""Ship a found architecture: export a trial to a folder, and load it back as a ``torch.nn.Module``.

An export folder holds

* ``arch.json`` — the architecture graph (:func:`iasf_search.graph.to_json`);
* ``model.safetensors`` — the trained weights (the trial's checkpoint artifact);
* ``model.json`` — what is needed to rebuild it (input shape, classes, plugins) and what it scored;
* ``space.yaml`` — the search space the study ran, every default filled in;
* ``README.md`` — a model card: metrics, costs, dataset, the commands and space that produced it;
* ``model.onnx`` — only with ``onnx=True``, where the ops allow it.

:func:`load_model` needs only the folder (and the plugins it names installed).
"""

from __future__ import annotations

import json
import logging
import shlex
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import safetensors.torch
import torch
import yaml
from optuna.trial import FrozenTrial, TrialState

from iasf_search.build import ArchNet, build_model
from iasf_search.errors import BadInput
from iasf_search.graph import from_json
from iasf_search.plugin_manager import Components, load_components
from iasf_search.results.artifacts import CHECKPOINT, read_trial_file, trial_files
from iasf_search.results.records import ARCHITECTURE, TRAIN_CONFIG, record
from iasf_search.study import safe_url, trial_architecture

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

FORMAT = "iasf-search-model/1"
EXPORT_FILES = ("arch.json", CHECKPOINT, "model.json", "space.yaml", "README.md", "model.onnx")
METRICS = ("val_accuracy", "val_loss", "test_accuracy", "epochs", "train_seconds", "params")


def masked_command(argv: Sequence[str]) -> str:
    """The command line as typed (program name shortened), with storage-URL passwords hidden."""
    words = [Path(argv[0]).name if argv else "iasf-search", *argv[1:]]
    return " ".join(shlex.quote(safe_url(w) if "://" in w else w) for w in words)


def trained_source(study: optuna.Study, trial: FrozenTrial) -> FrozenTrial:
    """The trial that actually trained ``trial``'s weights (itself, or the one it reused)."""
    number = trial.user_attrs.get("reused_from")
    if number is None:
        return trial
    return study.get_trials(deepcopy=False)[number]


def trial_weights(study: optuna.Study, trial: FrozenTrial, store: ArtifactStore) -> dict[str, torch.Tensor] | None:
    """The trial's trained weights from its checkpoint artifact, or None when it has none."""
    data = read_trial_file(study, trained_source(study, trial), store, CHECKPOINT)
    return None if data is None else safetensors.torch.load(data)


def study_components(study: optuna.Study, plugins: Sequence[str] = ()) -> Components:
    """The plugins the study's space names (plus ``plugins``), with built-ins and entry points."""
    named = study.user_attrs.get("space", {}).get("plugins", [])
    return load_components([*((m, "the study's space") for m in named), *((m, "--plugin") for m in plugins)])


def data_shape(study: optuna.Study) -> tuple[tuple[int, ...], int]:
    """``(sample_shape, num_classes)`` the study's models were built for."""
    data = study.user_attrs.get("data")
    if not data:
        raise BadInput(f"study '{study.study_name}' does not record its data shape (it was made by an older iasf-search); "
                       f"rerun its search with --study NEW_NAME")
    return tuple(data["sample_shape"]), int(data["num_classes"])


def rebuild_trial_model(study: optuna.Study, trial: FrozenTrial, store: ArtifactStore, components: Components) -> ArchNet | None:
    """The trial's trained model in eval mode on the CPU, or None when it kept no checkpoint."""
    weights = trial_weights(study, trial, store)
    if weights is None:
        return None
    sample_shape, num_classes = data_shape(study)
    model = build_model(trial_architecture(trial), components, sample_shape, num_classes)
    model.load_state_dict(weights)
    return model.eval()


def pick_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial ``number`` (must be complete), or the best trial / first of the Pareto set."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise BadInput(f"study '{study.study_name}' has no completed trial yet; run the search first")
    if number is None:
        if len(study.directions) == 1:
            return study.best_trial
        return sorted(study.best_trials, key=lambda t: t.number)[0]
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            if t.state != TrialState.COMPLETE:
                raise BadInput(f"--trial {number}: trial #{number} is {t.state.name}, not COMPLETE; "
                               f"completed trials: {_numbers(complete)}")
            return t
    raise BadInput(f"--trial {number}: no such trial in study '{study.study_name}'; completed trials: {_numbers(complete)}")


def _numbers(trials: Sequence[FrozenTrial], limit: int = 20) -> str:
    shown = ", ".join(str(t.number) for t in trials[:limit])
    return shown + (", ..." if len(trials) > limit else "")


def prepare_out_dir(out: Path) -> None:
    """Create ``out``, refusing a file or a folder holding anything but a previous export."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: is a file; give a folder")
    if out.is_dir():
        foreign = [p.name for p in out.iterdir() if p.name not in EXPORT_FILES]
        if foreign:
            raise BadInput(f"--out {out}: folder holds other files ({', '.join(sorted(foreign)[:3])}); give an empty or new folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot create it: {exc.strerror}") from None


@dataclass
class ExportResult:
    directory: Path
    trial: int
    files: list[str]
    onnx_error: str | None = None


def export_trial(study: optuna.Study, trial: FrozenTrial, store: ArtifactStore, out: str | Path, *,
                 onnx: bool = False, plugins: Sequence[str] = ()) -> ExportResult:
    """Write ``trial``'s export folder (see the module docstring) to ``out``.

    :raises BadInput: the trial kept no checkpoint (naming the trials that did), or ``out`` is unusable.
    """
    out = Path(out)
    model = rebuild_trial_model(study, trial, store, study_components(study, plugins))
    if model is None:
        kept = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if CHECKPOINT in trial_files(study, trained_source(study, t))]
        raise BadInput(f"trial #{trial.number} kept no checkpoint (the search keeps one for trials that were best when they "
                       f"finished; artifacts.checkpoints: all keeps every one); trials with one: {_numbers(kept) or 'none'}")
    sample_shape, num_classes = data_shape(study)
    prepare_out_dir(out)
    space = study.user_attrs.get("space", {})
    info = model_info(study, trial, sample_shape, num_classes)
    (out / "arch.json").write_text(json.dumps(json.loads(record(trial, ARCHITECTURE)), indent=2) + "\n", encoding="utf-8")
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / CHECKPOINT),
                                metadata={"format": FORMAT, "trial": str(trial.number)})
    (out / "model.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (out / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False), encoding="utf-8")
    (out / "README.md").write_text(model_card(info, space), encoding="utf-8")
    files = ["arch.json", CHECKPOINT, "model.json", "space.yaml", "README.md"]
    onnx_error = None
    if onnx:
        onnx_error = export_onnx(model, sample_shape, out / "model.onnx")
        if onnx_error is None:
            files.append("model.onnx")
    return ExportResult(out, trial.number, files, onnx_error)


def model_info(study: optuna.Study, trial: FrozenTrial, sample_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """The content of ``model.json``."""
    a = trial.user_attrs
    space = study.user_attrs.get("space", {})
    return {
        "format": FORMAT,
        "study": study.study_name,
        "trial": trial.number,
        "reused_from": a.get("reused_from"),
        "arch_hash": a.get("arch_hash"),
        "summary": a.get("summary"),
        "sample_shape": list(sample_shape),
        "num_classes": num_classes,
        "modality": study.user_attrs.get("data", {}).get("modality"),
        "dataset": space.get("task", {}),
        "plugins": space.get("plugins", []),
        "objectives": [{"metric": o.get("metric"), "direction": o.get("direction"), "value": v}
                       for o, v in zip(space.get("objectives", []), trial.values, strict=False)],
        "metrics": {k: a[k] for k in METRICS if k in a},
        "costs": {k[len("cost."):]: v for k, v in a.items() if k.startswith("cost.")},
        "train_config": record(trial, TRAIN_CONFIG, {}),
        "commands": study.user_attrs.get("commands", []),
    }


def model_card(info: dict[str, Any], space: dict[str, Any]) -> str:
    """``README.md`` of an export folder."""
    m = info["metrics"]
    params = f", {m['params']:,} parameters" if isinstance(m.get("params"), int) else ""
    lines = [
        f"# {info['study']} trial {info['trial']}: {info['summary']}", "",
        f"Architecture `{info['arch_hash']}` found by iasf-search; input shape {tuple(info['sample_shape'])}, "
        f"{info['num_classes']} classes{params}.", "",
        "## Use it", "", "```python", "import iasf_search", "model = iasf_search.load_model('.')  # this folder",
        f"logits = model(x)  # x: (batch, {', '.join(str(s) for s in info['sample_shape'])}) -> (batch, {info['num_classes']})",
        "```", "",
        "## Metrics", "", "| metric | value |", "|---|---|",
        *[f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in m.items()],
    ]
    if info["costs"]:
        lines += ["", "## Costs (measured before training)", "", "| cost | value |", "|---|---|",
                  *[f"| {k} | {v:,.6g} |" for k, v in info["costs"].items()]]
    dataset = info["dataset"]
    lines += ["", "## Data", "", f"Dataset `{dataset.get('dataset')}` with options `{json.dumps(dataset.get('options', {}))}`, "
              f"split `{json.dumps(dataset.get('split', {}))}` (validation selects, test reports)."]
    lines += ["", "## Training settings", "", f"`{json.dumps(info['train_config'], sort_keys=True)}`"]
    if info["reused_from"] is not None:
        lines += ["", f"The weights are those of trial {info['reused_from']}, which trained the identical architecture."]
    lines += ["", "## How it was produced", ""]
    lines += [f"    {c}" for c in info["commands"]] or ["(the study does not record its commands)"]
    lines += ["", f"with the space in `space.yaml` (every default filled in; name `{space.get('name')}`). "
                  "Retrain from scratch on train + validation: `iasf-search train --arch arch.json`."]
    return "\n".join(lines) + "\n"


def export_onnx(model: ArchNet, sample_shape: tuple[int, ...], path: Path) -> str | None:
    """Write ``model`` as ONNX (batch axis dynamic); the reason when the ops do not allow it, else None."""
    try:
        import onnx  # noqa: F401 - torch.onnx needs it; say so plainly when it is missing
        import onnxscript  # noqa: F401
    except ImportError:
        return "ONNX export needs the onnx extra: pip install 'iasf-search[onnx]'"
    example = torch.zeros(2, *sample_shape)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it logs every optional op set it skips
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["x"], output_names=["logits"],
                              dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, external_data=False, verbose=False)
    except Exception as exc:
        path.unlink(missing_ok=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"ONNX export failed: {type(exc).__name__}: {first[:300]}"
    finally:
        exporter_log.setLevel(level)
    return None


def load_model(directory: str | Path, *, device: str | torch.device = "cpu", plugins: Sequence[str] = ()) -> ArchNet:
    """Rebuild an exported model (eval mode): ``(B, *sample_shape) -> (B, num_classes)`` logits.

    :param directory: an export folder (``iasf-search export``).
    :param plugins: extra plugin modules to load, beyond those the folder's ``model.json`` names.
    :raises BadInput: the folder is not an export, or its files do not match each other.
    """
    folder = Path(directory)
    info_path = folder / "model.json"
    if not info_path.is_file():
        raise BadInput(f"{folder}: no model.json there; give a folder written by iasf-search export")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info.get("format") != FORMAT:
        raise BadInput(f"{info_path}: format {info.get('format')!r}, this iasf-search reads {FORMAT!r}")
    components = load_components([*((m, str(info_path)) for m in info.get("plugins", [])), *((m, "plugins=") for m in plugins)])
    graph = from_json((folder / "arch.json").read_text(encoding="utf-8"))
    model = build_model(graph, components, tuple(info["sample_shape"]), int(info["num_classes"]))
    weights = safetensors.torch.load_file(str(folder / CHECKPOINT))
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise BadInput(f"{folder / CHECKPOINT}: weights do not fit arch.json: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval()
