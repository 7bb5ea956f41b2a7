"""Terminal progress: a plugin on the life-cycle hooks that prints one line per finished trial.

On a terminal the lines scroll above a live progress bar (finished/target, best value or Pareto-set
size, elapsed, ETA); on a pipe or file the lines are written plainly, without carriage returns.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from iasf_search.hookspecs import hookimpl
from iasf_search.results.access import best_trials, finished_trials
from iasf_search.results.records import (
    EPOCHS,
    FAILURE_REASON,
    PRUNED_AT_EPOCH,
    REUSED_FROM,
    STEPS,
    SUMMARY,
    TRAIN_SECONDS,
    VAL_ACCURACY,
    VAL_ACCURACY_STD,
)
from iasf_search.space import SearchSpace


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def trial_outcome(trial: FrozenTrial) -> str:
    """``val 0.9815`` (cross-validated: ``val 0.9815±0.012``, the folds' mean and spread), ``pruned at epoch 4
    (val 0.91)``, ``FAILED: reason``, with ``(reused #n)``."""
    attrs = trial.user_attrs
    if trial.state == TrialState.COMPLETE:
        spread = f"±{attrs[VAL_ACCURACY_STD]:.3f}" if isinstance(attrs.get(VAL_ACCURACY_STD), (int, float)) else ""
        text = f"val {attrs.get(VAL_ACCURACY, float('nan')):.4f}{spread}"
        return text + (f" (reused #{attrs[REUSED_FROM]})" if REUSED_FROM in attrs else "")
    if trial.state == TrialState.PRUNED:
        if FAILURE_REASON in attrs:
            return f"pruned: {attrs[FAILURE_REASON]}"
        return f"pruned at epoch {attrs.get(PRUNED_AT_EPOCH, '?')} (val {attrs.get(VAL_ACCURACY, float('nan')):.4f})"
    return f"{trial.state.name}: {attrs.get(FAILURE_REASON, 'no reason recorded')}"


def training_length(trial: FrozenTrial) -> str:
    """``"13.7s 30ep/570st"``: seconds, epochs and optimiser steps a finished trial trained, or ``-`` when it
    did not train (a reused result, a failure)."""
    attrs = trial.user_attrs
    seconds = attrs.get(TRAIN_SECONDS)
    if not isinstance(seconds, (int, float)) or REUSED_FROM in attrs:
        return f"{'-':>6} {'':>11}"
    length = f"{attrs[EPOCHS]}ep/{attrs[STEPS]}st" if EPOCHS in attrs and STEPS in attrs else ""
    return f"{seconds:5.1f}s {length:>11}"


def is_tty(stream: TextIO) -> bool:
    """Whether ``stream`` is an open interactive terminal (False for pipes, files, closed streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def terminal_size(stream: TextIO) -> tuple[int, int]:
    """``(columns, lines)`` of the terminal behind ``stream``; zeros when unknown (no real terminal, or one reporting no size)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return 0, 0
    return size.columns, size.lines


def eta_seconds(elapsed: float, ran: int, remaining: int, timeout: float | None = None) -> float:
    """Seconds left at the average pace of the ``ran`` trials of this run (at least one counted), and at
    most the ``timeout`` seconds of the run not yet elapsed (no trial starts after it)."""
    pace = elapsed / max(1, ran) * max(0, remaining)
    return pace if timeout is None else min(pace, max(0.0, timeout - elapsed))


def best_so_far(study: optuna.Study) -> str:
    """``best 0.9815 (#3)`` (one objective: the trial the search's summary will name, ties broken as
    :func:`~iasf_search.results.access.best_trials` does), ``Pareto set 4`` (several), ``best -`` before any
    (feasible) trial completes."""
    best = best_trials(study)
    if not best:
        return "best -"
    if len(study.directions) == 1:
        return f"best {best[0].value:.4f} (#{best[0].number})"
    return f"Pareto set {len(best)}"


class ConsoleProgress:
    """Prints ``[done/target] #n  outcome  best ...  summary  elapsed ETA`` per finished trial.

    :param stream: where to write (default ``sys.stdout``). When it is a terminal, a tqdm bar stays at
        the bottom and the lines are written above it; the bar is closed when the study ends.
    :param bar: force the bar on or off; default: on exactly when ``stream`` is a terminal.
    """

    def __init__(self, stream: TextIO | None = None, *, bar: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.use_bar = is_tty(self.stream) if bar is None else bar
        self.bar: tqdm | None = None
        self.start = time.perf_counter()
        self.target = 0
        self.done_at_start = 0
        self.timeout: float | None = None

    def _print(self, text: str) -> None:
        if self.bar is not None:
            tqdm.write(text, file=self.stream)
            self.stream.flush()
        else:
            print(text, file=self.stream, flush=True)

    def _open_bar(self, study: optuna.Study) -> None:
        # follow the terminal's width as it is resized; 80x24 where it reports no size (tqdm would print nothing)
        width = {"dynamic_ncols": True} if min(terminal_size(self.stream)) > 0 else {"ncols": 80, "nrows": 24}
        self.bar = tqdm(total=self.target, initial=self.done_at_start, file=self.stream, desc="trials",
                        bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}{postfix}",
                        postfix=self._postfix_text(study), smoothing=0, mininterval=0, miniters=1, leave=False, **width)

    @staticmethod
    def _postfix_text(study: optuna.Study, best: str = "") -> str:
        # a fixed width keeps the bar from changing length when the text grows
        return f"{best or best_so_far(study):<18}"

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @hookimpl
    def iasf_study_start(self, study: optuna.Study, space: SearchSpace, target: int, timeout: float | None) -> None:
        self.start = time.perf_counter()
        self.target, self.timeout = target, timeout
        self.done_at_start = len(finished_trials(study))
        if self.done_at_start >= target:
            self._print(f"study '{study.study_name}' already holds {self.done_at_start} finished trials "
                        f"(target {target}): nothing to train")
        else:
            verb = "resuming" if self.done_at_start else "starting"
            self._print(f"{verb} study '{study.study_name}': {self.done_at_start}/{target} finished trials, "
                        f"dataset {space.dataset}, {len(space.ops)} ops, objective "
                        + ", ".join(f"{o.direction} {o.metric}" for o in space.objectives))
            if self.use_bar:
                self._open_bar(study)

    @hookimpl
    def iasf_trial_start(self, study: optuna.Study, trial: optuna.Trial) -> None:
        if self.bar is not None:
            self.bar.refresh()  # keeps the elapsed clock moving between finished trials

    @hookimpl
    def iasf_trial_end(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = len(finished_trials(study))
        elapsed = time.perf_counter() - self.start
        eta = eta_seconds(elapsed, done - self.done_at_start, self.target - done, self.timeout)
        best = best_so_far(study) if len(study.directions) == 1 else ""
        took = training_length(trial)
        self._print(f"[{done:>3}/{self.target}] #{trial.number:<3} {trial_outcome(trial):<28} {best:<18} {took}  "
                    f"{clock(elapsed)} ETA {clock(eta)}  {trial.user_attrs.get(SUMMARY, '')}")
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix_text(study, best), refresh=False)
            if done > self.bar.n:
                self.bar.update(done - self.bar.n)
            else:
                self.bar.refresh()

    @hookimpl
    def iasf_study_end(self, study: optuna.Study, space: SearchSpace) -> None:
        self._close_bar()
