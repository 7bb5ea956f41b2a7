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

from iasf_search.build import ArchNet, build_model, example_batch
from iasf_search.errors import BadInput
from iasf_search.files import PARTIAL_SUFFIX, write_atomically
from iasf_search.graph import from_json
from iasf_search.plugin_manager import Components, load_components, plugins_to_load
from iasf_search.results.access import data_shape, rebuild_trial_model, stored_study, trained_source, trial_numbers
from iasf_search.results.artifacts import CHECKPOINT, trial_files
from iasf_search.results.model_card import FORMAT, model_card, model_info
from iasf_search.results.records import ARCHITECTURE, record

if TYPE_CHECKING:
    from iasf_search.optuna_internals import ArtifactStore

EXPORT_FILES = ("arch.json", CHECKPOINT, "model.json", "space.yaml", "README.md", "model.onnx")


def prepare_out_dir(out: Path) -> None:
    """Create ``out``, refusing a file or a folder holding anything but a previous export."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: is a file; give a folder")
    if out.is_dir():
        foreign = [p.name for p in out.iterdir() if p.name not in EXPORT_FILES and not p.name.endswith(PARTIAL_SUFFIX)]
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
                 onnx: bool = False, plugins: Sequence[str] = (), components: Components | None = None) -> ExportResult:
    """Write ``trial``'s export folder (see the module docstring) to ``out``.

    :param plugins: extra plugin modules to build the model with (``--plugin``), besides those the study's space names.
    :param components: the study's plugins, already loaded (:attr:`~iasf_search.results.access.StoredStudy.components`);
        default: loaded here (``plugins`` and the study's space's).
    :raises BadInput: the trial kept no checkpoint (naming the trials that did), or ``out`` is unusable.
    """
    out = Path(out)
    opened = stored_study(study, plugins=plugins, components=components)
    model = rebuild_trial_model(study, trial, store, opened.components)
    if model is None:
        raise _no_checkpoint(study, trial)
    sample_shape, num_classes = data_shape(study)
    prepare_out_dir(out)
    (out / "model.onnx").unlink(missing_ok=True)  # an earlier export's: it would sit beside other weights
    files = _write_export_files(study, trial, model, out, model_info(study, trial, sample_shape, num_classes), opened.space)
    onnx_error = None
    if onnx:
        onnx_error = export_onnx(model, sample_shape, out / "model.onnx")
        if onnx_error is None:
            files.append("model.onnx")
    return ExportResult(out, trial.number, files, onnx_error)


def _no_checkpoint(study: optuna.Study, trial: FrozenTrial) -> BadInput:
    """The error for a trial without weights, naming the completed trials that kept some."""
    kept = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if CHECKPOINT in trial_files(study, trained_source(study, t))]
    return BadInput(f"trial #{trial.number} kept no checkpoint (the search keeps one for trials that were best when they "
                    f"finished; artifacts.checkpoints: all keeps every one); trials with one: {trial_numbers(kept) or 'none'}")


def _write_export_files(study: optuna.Study, trial: FrozenTrial, model: ArchNet, out: Path, info: dict[str, Any],
                        space: dict[str, Any]) -> list[str]:
    """Write the architecture, weights, ``model.json``, ``space`` (the study's, resolved) and model card into ``out``;
    their names."""
    write_atomically(out / "arch.json", json.dumps(json.loads(record(trial, ARCHITECTURE)), indent=2) + "\n")
    write_atomically(out / CHECKPOINT, safetensors.torch.save({k: v.contiguous() for k, v in model.state_dict().items()},
                                                              metadata={"format": FORMAT, "trial": str(trial.number)}))
    write_atomically(out / "model.json", json.dumps(info, indent=2) + "\n")
    write_atomically(out / "space.yaml", yaml.safe_dump(space, sort_keys=False))
    write_atomically(out / "README.md", model_card(info, space))
    return ["arch.json", CHECKPOINT, "model.json", "space.yaml", "README.md"]


def export_onnx(model: ArchNet, sample_shape: tuple[int, ...], path: Path) -> str | None:
    """Write ``model`` as ONNX (batch axis dynamic); the reason when the ops do not allow it, else None."""
    try:
        import onnx  # noqa: F401 - torch.onnx needs it; say so plainly when it is missing
        import onnxscript  # noqa: F401
    except ImportError:
        return "ONNX export needs the onnx extra: pip install 'iasf-search[onnx]'"
    example = example_batch(sample_shape, model.padded)  # a padded model is traced through its mask
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
    components = load_components(plugins_to_load(plugins, info.get("plugins", []), extra_from="plugins=",
                                                 recorded_from=str(info_path)))
    graph = from_json((folder / "arch.json").read_text(encoding="utf-8"))
    model = build_model(graph, components, tuple(info["sample_shape"]), int(info["num_classes"]), padded=bool(info.get("padded")))
    weights = safetensors.torch.load_file(str(folder / CHECKPOINT))
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise BadInput(f"{folder / CHECKPOINT}: weights do not fit arch.json: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval()
