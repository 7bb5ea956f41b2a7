"""What an export folder says about its model: ``model.json`` (:func:`model_info`: what rebuilding
it needs and what it scored) and the ``README.md`` model card (:func:`model_card`)."""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from iasf_search.results.records import (
    ARCH_HASH,
    COST_PREFIX,
    EPOCHS,
    FOLD_VAL_ACCURACIES,
    PARAMS,
    REUSED_FROM,
    SUMMARY,
    TEST_ACCURACY,
    TRAIN_CONFIG,
    TRAIN_SECONDS,
    VAL_ACCURACY,
    VAL_ACCURACY_STD,
    VAL_LOSS,
    record,
    study_commands,
    study_data,
    study_space,
)

FORMAT = "iasf-search-model/1"
"""The ``format`` of ``model.json`` (and the weights' metadata) this iasf-search writes and reads."""
METRICS = (VAL_ACCURACY, VAL_LOSS, TEST_ACCURACY, EPOCHS, TRAIN_SECONDS, PARAMS, VAL_ACCURACY_STD, FOLD_VAL_ACCURACIES)
"""The trial attributes ``model.json`` keeps as metrics (those the trial has: the folds' only with cross-validation)."""


def model_info(study: optuna.Study, trial: FrozenTrial, sample_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """The content of ``model.json``."""
    a = trial.user_attrs
    space = study_space(study)
    return {
        "format": FORMAT,
        "study": study.study_name,
        "trial": trial.number,
        "reused_from": a.get(REUSED_FROM),
        "arch_hash": a.get(ARCH_HASH),
        "summary": a.get(SUMMARY),
        "sample_shape": list(sample_shape),
        "num_classes": num_classes,
        "padded": bool(study_data(study).get("padded", False)),
        "modality": study_data(study).get("modality"),
        "dataset": space.get("task", {}),
        "plugins": space.get("plugins", []),
        "objectives": [{"metric": o.get("metric"), "direction": o.get("direction"), "value": v}
                       for o, v in zip(space.get("objectives", []), trial.values, strict=False)],
        "metrics": {k: a[k] for k in METRICS if k in a},
        "costs": {k[len(COST_PREFIX):]: v for k, v in a.items() if k.startswith(COST_PREFIX)},
        "train_config": record(trial, TRAIN_CONFIG, {}),
        "commands": study_commands(study),
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
                  *[f"| {k} | {'not measured' if v is None else format(v, ',.6g')} |" for k, v in info["costs"].items()]]
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
