"""Terminal progress: a plugin on the life-cycle hooks that prints one line per finished trial."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from iasf_search.hookspecs import hookimpl
from iasf_search.space import SearchSpace
from iasf_search.study import finished_trials


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def trial_outcome(trial: FrozenTrial) -> str:
    """``val 0.9815``, ``pruned at epoch 4 (val 0.91)``, ``FAILED: reason``, with ``(reused #n)``."""
    attrs = trial.user_attrs
    if trial.state == TrialState.COMPLETE:
        text = f"val {attrs.get('val_accuracy', float('nan')):.4f}"
        return text + (f" (reused #{attrs['reused_from']})" if "reused_from" in attrs else "")
    if trial.state == TrialState.PRUNED:
        if "failure_reason" in attrs:
            return f"pruned: {attrs['failure_reason']}"
        return f"pruned at epoch {attrs.get('pruned_at_epoch', '?')} (val {attrs.get('val_accuracy', float('nan')):.4f})"
    return f"{trial.state.name}: {attrs.get('failure_reason', 'no reason recorded')}"


class ConsoleProgress:
    """Prints ``[done/target] #n  outcome  best ...  summary  elapsed ETA`` per finished trial."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        self.target = 0
        self.done_at_start = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    @hookimpl
    def iasf_study_start(self, study: optuna.Study, space: SearchSpace, target: int) -> None:
        self.start = time.perf_counter()
        self.target = target
        self.done_at_start = len(finished_trials(study))
        if self.done_at_start >= target:
            self._print(f"study '{study.study_name}' already holds {self.done_at_start} finished trials "
                        f"(target {target}): nothing to train")
        else:
            verb = "resuming" if self.done_at_start else "starting"
            self._print(f"{verb} study '{study.study_name}': {self.done_at_start}/{target} finished trials, "
                        f"dataset {space.dataset}, {len(space.ops)} ops, objective "
                        + ", ".join(f"{o.direction} {o.metric}" for o in space.objectives))

    @hookimpl
    def iasf_trial_end(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = len(finished_trials(study))
        elapsed = time.perf_counter() - self.start
        ran = max(1, done - self.done_at_start)
        eta = elapsed / ran * max(0, self.target - done)
        best = ""
        if len(study.directions) == 1:
            try:
                b = study.best_trial
                best = f"best {b.value:.4f} (#{b.number})"
            except ValueError:
                best = "best -"
        seconds = trial.user_attrs.get("train_seconds")
        took = f"{seconds:5.1f}s" if isinstance(seconds, (int, float)) and "reused_from" not in trial.user_attrs else "    - "
        self._print(f"[{done:>3}/{self.target}] #{trial.number:<3} {trial_outcome(trial):<28} {best:<18} {took}  "
                    f"{clock(elapsed)} ETA {clock(eta)}  {trial.user_attrs.get('summary', '')}")
