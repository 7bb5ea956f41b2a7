"""Search output of the console progress plugin (plugins/console_progress.py): the per-trial lines and the live
bar on a terminal, ``-q``, and its helpers. (``--log-format json``: tests/plugins/test_json_event_log.py.)"""

from __future__ import annotations

import io
import re
import sys

import optuna
from conftest import run
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from iasf_search.cli import main
from iasf_search.plugins.console_progress import ConsoleProgress, best_so_far

TRIAL_LINE = re.compile(r"^\[\s*(\d+)/(\d+)\] #(\d+)\s", re.MULTILINE)
FAST = {"manifold.nodes": 1, "manifold.width": 8, "manifold.ops": {"mlp": {"expansion": 1}}}
"""The tiny space cut to one architecture family: each trial trains in a fraction of a second."""


class FakeTerminal(io.StringIO):
    """An in-memory stream that says it is a terminal (of unknown size)."""

    def isatty(self) -> bool:
        return True


def add_trial(study: optuna.Study, values: list[float] | None, state: TrialState = TrialState.COMPLETE, **attrs):
    study.add_trial(create_trial(state=state, values=values, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                                 user_attrs=attrs))
    return study.trials[-1]


# -- end to end --------------------------------------------------------------------------------------


def test_text_output_is_unchanged_without_the_flag(capsys, tmp_path, write_space):
    write_space(FAST)
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--storage", f"sqlite:///{tmp_path / 't.db'}", "--trials", "2")
    assert rc == 0, err
    assert "{" not in out.splitlines()[0] and "best trial #" in out
    assert [int(n) for _, _, n in TRIAL_LINE.findall(out)] == [0, 1]
    assert "\r" not in out  # not a terminal: plain lines, no bar


# -- errors in json mode: the text line on stderr, one error event on stdout -----------------------


# -- the JSON helpers --------------------------------------------------------------------------------


# -- the terminal view --------------------------------------------------------------------------------


def test_terminal_gets_a_bar_with_the_lines_above_it(capsys, monkeypatch, tmp_path, write_space):
    write_space(FAST)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["--space", "tiny.yaml", "--storage", f"sqlite:///{tmp_path / 'tty.db'}", "--trials", "3"]) == 0
    out = terminal.getvalue()
    assert "\r" in out
    # the bar: finished/target, elapsed<remaining and the best value so far
    bars = re.findall(r"trials (\d)/3 \|[^|\r\n]*\| \d\d:\d\d<[^,\r\n]*, ([^\r\n]*)", out)
    counts = [int(n) for n, _ in bars]
    assert {0, 1, 2, 3} <= set(counts) and counts == sorted(counts)
    assert any(best.startswith("best 0.") for _, best in bars)
    # every trial line is intact on its own line, above (before) the bar's next drawing
    lines = re.split(r"[\r\n]", out)
    trial_lines = [line for line in lines if TRIAL_LINE.match(line)]
    assert [TRIAL_LINE.match(line).group(1, 3) for line in trial_lines] == [("1", "0"), ("2", "1"), ("3", "2")]
    assert all(" ETA " in line for line in trial_lines)
    # the bar is gone (cleared) before the summary
    tail = out[out.rindex("trials 3/3"):]
    assert "study 'tiny': 3/3 finished trials" in tail
    assert not re.search(r"\|\s*\d\d:\d\d<", tail.split("\r", 1)[1])


def test_quiet_terminal_gets_no_bar(capsys, monkeypatch, tmp_path, write_space):
    write_space(FAST)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["--space", "tiny.yaml", "--storage", f"sqlite:///{tmp_path / 'q.db'}", "--trials", "2", "-q"]) == 0
    out = terminal.getvalue()
    assert "\r" not in out and "trials 1/2" not in out and TRIAL_LINE.findall(out) == []
    assert "2/2 finished trials" in out


def test_console_progress_bar_lifecycle_and_pareto_size(make_space):
    space = make_space({"objectives": [{"metric": "accuracy"}, {"metric": "params"}]})
    study = optuna.create_study(study_name="mo", directions=["maximize", "minimize"])
    terminal = FakeTerminal()
    progress = ConsoleProgress(terminal)
    assert progress.use_bar
    progress.iasf_study_start(study=study, space=space, target=3, timeout=None)
    assert progress.bar is not None
    for values in ([0.5, 100.0], [0.6, 200.0]):  # both Pareto-optimal
        trial = add_trial(study, values, val_accuracy=values[0], summary="w8 mlp1")
        progress.iasf_trial_end(study=study, trial=trial)
    assert progress.bar.n == 2
    progress.iasf_study_end(study=study, space=space)
    assert progress.bar is None
    out = terminal.getvalue()
    assert re.search(r"trials 2/3 \|[^\r\n]*Pareto set 2", out)
    assert [TRIAL_LINE.match(line).group(1, 3) for line in re.split(r"[\r\n]", out) if TRIAL_LINE.match(line)] == [("1", "0"), ("2", "1")]
    assert out.endswith("\r")  # leave=False: the closed bar's line is cleared


def test_nothing_to_train_draws_no_bar(make_space):
    study = optuna.create_study(study_name="done", directions=["maximize"])
    add_trial(study, [0.5], val_accuracy=0.5)
    terminal = FakeTerminal()
    progress = ConsoleProgress(terminal)
    progress.iasf_study_start(study=study, space=make_space(), target=1, timeout=None)
    progress.iasf_study_end(study=study, space=make_space())
    assert terminal.getvalue() == "study 'done' already holds 1 finished trials (target 1): nothing to train\n"


def test_plain_stream_gets_plain_lines(make_space):
    study = optuna.create_study(study_name="plain", directions=["maximize"])
    stream = io.StringIO()
    progress = ConsoleProgress(stream)
    assert not progress.use_bar
    progress.iasf_study_start(study=study, space=make_space(), target=2, timeout=None)
    for value in (0.25, 0.5):
        progress.iasf_trial_end(study=study, trial=add_trial(study, [value], val_accuracy=value, train_seconds=1.0, summary="w8"))
    progress.iasf_study_end(study=study, space=make_space())
    out = stream.getvalue()
    assert "\r" not in out
    lines = out.splitlines()
    assert lines[0].startswith("starting study 'plain': 0/2 finished trials")
    assert [TRIAL_LINE.match(line).groups() for line in lines[1:]] == [("1", "2", "0"), ("2", "2", "1")]
    assert "best 0.5000 (#1)" in lines[2] and "ETA 0:00" in lines[2]


# -- helpers -------------------------------------------------------------------------------------------


def test_clock():
    from iasf_search.plugins.console_progress import clock

    assert [clock(s) for s in (0, 59.4, 61, 3599, 3600, 3725)] == ["0:00", "0:59", "1:01", "59:59", "1:00:00", "1:02:05"]


def test_trial_outcome():
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from iasf_search.plugins.console_progress import trial_outcome

    def make(state, value=None, **attrs):
        return create_trial(state=state, value=value, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                            user_attrs=attrs)

    assert trial_outcome(make(TrialState.COMPLETE, 0.9, val_accuracy=0.98154)) == "val 0.9815"
    assert trial_outcome(make(TrialState.COMPLETE, 0.9, val_accuracy=0.9, val_accuracy_std=0.0123)) == "val 0.9000±0.012"
    assert trial_outcome(make(TrialState.COMPLETE, 0.9, val_accuracy=0.5, reused_from=3)) == "val 0.5000 (reused #3)"
    assert trial_outcome(make(TrialState.PRUNED, pruned_at_epoch=4, val_accuracy=0.91)) == "pruned at epoch 4 (val 0.9100)"
    assert trial_outcome(make(TrialState.PRUNED, failure_reason="diverged: nan")) == "pruned: diverged: nan"
    assert trial_outcome(make(TrialState.FAIL, failure_reason="RuntimeError: x")) == "FAIL: RuntimeError: x"
    assert trial_outcome(make(TrialState.FAIL)) == "FAIL: no reason recorded"


def test_eta_is_the_pace_capped_by_the_time_the_timeout_leaves():
    from iasf_search.plugins.console_progress import eta_seconds

    assert eta_seconds(60.0, 2, 10) == 300.0  # 30 s a trial, 10 to go
    assert eta_seconds(60.0, 2, 10, timeout=900.0) == 300.0  # the pace ends first
    assert eta_seconds(60.0, 2, 1000, timeout=900.0) == 840.0  # a 15-minute run ends at its timeout, not in 8 hours
    assert eta_seconds(950.0, 2, 10, timeout=900.0) == 0.0  # past the timeout: the last trials are finishing
    assert eta_seconds(0.0, 0, 5) == 0.0


def test_the_progress_line_s_eta_honours_the_timeout(capsys, tmp_path, write_space):
    write_space({"manifold.nodes": 1, "manifold.width": 8})
    rc, out, err = run(capsys, "--space", "tiny.yaml", "--trials", "1000", "--timeout", "2")
    assert rc == 0, err
    etas = re.findall(r" ETA (\d+):(\d\d) ", out)
    assert etas and all(int(m) * 60 + int(s) <= 2 for m, s in etas)


def test_best_so_far_names_the_trial_the_summary_will_name():
    study = optuna.create_study(direction="maximize")
    assert best_so_far(study) == "best -"
    add_trial(study, [0.99], val_loss=0.2)
    add_trial(study, [0.99], val_loss=0.05)  # level on accuracy, surer: the best, as in the summary
    add_trial(study, [0.5], val_loss=0.01)
    assert best_so_far(study) == "best 0.9900 (#1)"
    pareto = optuna.create_study(directions=["maximize", "minimize"])
    add_trial(pareto, [0.9, 5.0])
    add_trial(pareto, [0.8, 1.0])
    add_trial(pareto, [0.7, 6.0])
    assert best_so_far(pareto) == "Pareto set 2"
