"""Scale out and survive: parallel workers reach exactly the target, a killed worker's trial is
failed and retried, per-trial time limits, the journal storage, the surplus rule."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from conftest import make_doc
from optuna.trial import TrialState
from optuna_dashboard import get_note

import iasf_search
from iasf_search.cli import main
from iasf_search.results.summary import stop_reasons
from iasf_search.search.workers import STORAGE_ENV, WORKER_BOOT, worker_argv, worker_count, worker_env

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def load(url: str, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_storage(request, tmp_path):
    """A storage URL several processes share: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs' / 'tiny.db'}"
    return request.getfixturevalue("postgres_db_url")


def test_four_workers_finish_exactly_the_target_without_duplicates(shared_storage, write_space, capsys):
    write_space({"manifold.width": 8})
    url = shared_storage
    rc = main(["--space", "tiny.yaml", "--storage", url, "--trials", "6", "--workers", "4"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    study = load(url)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) == len(study.trials)
    assert len([t for t in study.trials if t.state in FINISHED]) == 6
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    surplus = [t for t in study.trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs["failure_reason"].startswith("surplus") for t in surplus)
    assert {line.split()[0] for line in out.splitlines() if line.startswith("w")} <= {"w0", "w1", "w2", "w3"}
    assert len({line.split()[0] for line in out.splitlines() if line.startswith("w") and "] #" in line}) >= 2
    assert "study 'tiny': 6/6 finished trials" in out and out.count("best trial #") == 1
    # the last worker out wrote the study page with every trial
    assert f"({len(study.trials)} of {len(study.trials)} trials finished)" in get_note(study)
    # resuming with more workers than trials left still lands exactly on the target
    assert main(["--space", "tiny.yaml", "--storage", url, "--trials", "7", "--workers", "2", "-q"]) == 0
    assert len([t for t in load(url).trials if t.state in FINISHED]) == 7


def test_workers_import_nothing_from_the_current_directory(tmp_path, write_space, capsys):
    (tmp_path / "yaml.py").write_text("raise ImportError('a stray yaml.py shadowed the installed one')\n", encoding="utf-8")
    write_space({"manifold.width": 8})
    url = f"sqlite:///{tmp_path / 'runs' / 'tiny.db'}"
    rc = main(["--space", "tiny.yaml", "--storage", url, "--trials", "2", "--workers", "2", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "shadowed" not in err and len([t for t in load(url).trials if t.state in FINISHED]) == 2


def test_worker_command_lines_and_environment(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    argv = worker_argv(["--space", "s.yaml", "--workers", "4", "--trials", "9"], 2, 4)
    assert argv[1:] == ["-c", WORKER_BOOT, "search", "--space", "s.yaml", "--trials", "9", "--worker", "2/4"]
    secret = worker_argv(["--space", "s.yaml", "--storage", "postgresql://me:s3cret@db/x", "--workers", "2"], 0, 2)
    assert secret[3:] == ["search", "--space", "s.yaml", "--storage", f"env:{STORAGE_ENV}", "--worker", "0/2"]
    assert worker_argv(["--storage=postgresql://me:s3cret@db/x"], 1, 2)[3:6] == ["search", "--storage", f"env:{STORAGE_ENV}"]
    assert worker_env(0, 2, "cpu", [], "postgresql://me:s3cret@db/x")[STORAGE_ENV] == "postgresql://me:s3cret@db/x"
    assert worker_argv(["search", "--workers=2", "--space", "s.yaml"], 0, 2)[3:] == ["search", "--space", "s.yaml", "--worker", "0/2"]
    env = worker_env(5, 4, "auto", ["0", "3", "6"])
    assert env["CUDA_VISIBLE_DEVICES"] == "6"  # round robin over the visible GPUs
    assert "CUDA_VISIBLE_DEVICES" not in worker_env(1, 2, "cpu", ["0", "1"])  # --device cpu: no GPU pinned
    assert worker_env(1, 2, "cuda:0", ["0", "1"]).get("CUDA_VISIBLE_DEVICES") is None  # a named GPU: all on it
    assert int(env["IASF_SEARCH_THREADS"]) >= 1


def test_worker_command_lines_leave_out_the_parents_flags():
    argv = worker_argv(["--space", "s.yaml", "--trials-per-gpu", "3", "--workers=auto", "--device", "cuda"], 1, 3)
    assert argv[3:] == ["search", "--space", "s.yaml", "--device", "cuda", "--worker", "1/3"]
    assert worker_argv(["--trials-per-gpu=2", "--space", "s.yaml"], 0, 2)[3:] == ["search", "--space", "s.yaml", "--worker", "0/2"]


@pytest.mark.parametrize(("requested", "device", "per_gpu", "gpus", "cores", "left", "expected"), [
    (3, "auto", None, [], 2, 10, 3),  # a number is taken as given
    (3, "auto", None, [], 2, 1, 3),
    ("auto", "auto", None, [], 2, 10, 2),  # CPU: one worker per core
    ("auto", "cpu", None, ["0", "1"], 16, 10, 10),  # never more than the trials left
    ("auto", "cpu", None, [], 16, 0, 1),  # at least one
    ("auto", "auto", None, ["0", "1"], 16, 10, 2),  # GPUs: one per GPU by default
    ("auto", "cuda", 3, ["0", "1"], 16, 10, 6),  # K per GPU
    ("auto", "cuda:1", 4, ["0", "1"], 16, 10, 4),  # a named GPU: K on it
    ("auto", "auto", 4, ["0"], 16, 3, 3),
])
def test_worker_count(requested, device, per_gpu, gpus, cores, left, expected):
    assert worker_count(requested, device, trials_per_gpu=per_gpu, gpus=gpus, cores=cores, trials_left=left) == expected


def test_trials_per_gpu_needs_a_gpu_and_no_number_of_workers():
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        worker_count("auto", "auto", trials_per_gpu=2, gpus=[], cores=2, trials_left=5)
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        worker_count("auto", "cpu", trials_per_gpu=2, gpus=["0"], cores=2, trials_left=5)
    with pytest.raises(ValueError, match="leave out --workers"):
        worker_count(2, "cuda", trials_per_gpu=2, gpus=["0"], cores=2, trials_left=5)


def test_workers_auto_fills_the_cpu_with_one_worker_per_core(tmp_path, write_space, capsys, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    write_space({"manifold.width": 8})
    url = f"sqlite:///{tmp_path / 'auto.db'}"
    assert main(["--space", "tiny.yaml", "--storage", url, "--trials", "4", "--workers", "auto", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert {line.split()[0] for line in out.splitlines() if line.startswith("w") and "] #" in line} <= {"w0", "w1"}
    assert any(line.startswith("w1 ") for line in out.splitlines())
    assert len([t for t in load(url).trials if t.state in FINISHED]) == 4


def slow_space(tmp_path):
    """A space whose trials take a few seconds (so one can be killed mid-trial), heartbeats every second."""
    doc = make_doc({"manifold.width": 16, "manifold.nodes": 2, "training.epochs": 12,
                    "search": {"sampler": "random", "pruner": "none", "seed": 0, "heartbeat_interval": 1, "grace_period": 3}})
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_a_killed_worker_trial_is_failed_retried_once_and_the_target_is_reached(tmp_path):
    path = slow_space(tmp_path)
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    command = [sys.executable, "-m", "iasf_search", "--space", str(path), "--storage", url, "--trials", "2", "-q"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:  # wait until a trial is training
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "timeout"
        try:
            running = [t for t in load(url).trials if t.state == TrialState.RUNNING and "params" in t.user_attrs]
        except Exception:
            running = []
        if running:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = running[0].number
    assert load(url).trials[killed].state == TrialState.RUNNING  # nothing could mark it

    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    study = load(url)
    assert study.trials[killed].state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state in FINISHED
    assert retries[0].params == study.trials[killed].params  # the same architecture and settings again
    assert len([t for t in study.trials if t.state in FINISHED]) == 2
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert stop_reasons(study)["worker lost (no heartbeat; retried)"] == 1


def start_two_workers(tmp_path, name: str, sigint: signal.Handlers) -> tuple[subprocess.Popen, list, list[str], str]:
    """Start ``--workers 2`` on a slow space in its own process group with SIGINT set to ``sigint``
    (whatever this test process inherited), and wait until both workers are training.

    :returns: the process, the running trials, the command (without ``--workers``) and the storage URL.
    """
    path = slow_space(tmp_path)
    url = f"sqlite:///{tmp_path / name}"
    command = [sys.executable, "-m", "iasf_search", "--space", str(path), "--storage", url, "--trials", "3", "-q"]
    proc = subprocess.Popen([*command, "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own process group, as a terminal's foreground job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    deadline = time.monotonic() + 120
    while True:  # wait until both workers are training
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[1] if proc.poll() is not None else "timeout"
        try:
            running = [t for t in load(url).trials if t.state == TrialState.RUNNING and "params" in t.user_attrs]
        except Exception:
            running = []
        if len(running) == 2:
            return proc, running, command, url
        time.sleep(0.2)


def assert_stopped_and_resumed(proc: subprocess.Popen, running: list, command: list[str], url: str, reason: str,
                               status: int) -> None:
    """The stopped run exited with ``status``; each trial training at the signal was marked ``reason`` or had just
    finished; nothing is left running; the same command then completes the study."""
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == status, err
    assert f"{reason}: finished trials are kept" in err
    study = load(url)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    stopped = {t.number for t in study.trials if t.user_attrs.get("failure_reason") == reason}
    # every trial is finished or was stopped by the signal (nothing else failed, nothing left running);
    # one per worker at most (a worker that had just finished its trial may have started the next one)
    assert {t.number for t in study.trials if t.state not in FINISHED} == stopped and 1 <= len(stopped) <= 2
    for t in running:  # each trial training at the signal was either marked or had just finished
        assert t.number in stopped or study.trials[t.number].state in FINISHED
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    assert len([t for t in load(url).trials if t.state in FINISHED]) == 3


def test_ctrl_c_stops_every_worker_and_the_same_command_resumes(tmp_path):
    # SIGINT at its default in the child, whatever this test inherited (a background job's pytest has it ignored)
    proc, running, command, url = start_two_workers(tmp_path, "int.db", signal.SIG_DFL)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: every process of the group gets SIGINT
    assert_stopped_and_resumed(proc, running, command, url, "interrupted", 130)


@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["sigint-default", "sigint-ignored"])
def test_sigterm_stops_every_worker_and_the_same_command_resumes(tmp_path, sigint):
    # a scheduler's kill: SIGTERM to the command's process only; a background job has SIGINT ignored
    proc, running, command, url = start_two_workers(tmp_path, "term.db", sigint)
    proc.send_signal(signal.SIGTERM)
    assert_stopped_and_resumed(proc, running, command, url, "terminated", 143)


def test_max_trial_seconds_stops_a_trial_with_a_reason(tmp_path, write_space, capsys):
    write_space({"training.epochs": 200, "search.max_trial_seconds": 0.5, "manifold.nodes": 1})
    assert main(["--space", "tiny.yaml", "--trials", "2", "-q"]) == 0
    out = capsys.readouterr().out
    study = load("sqlite:///runs/tiny.db")
    for t in study.trials:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["failure_reason"].startswith("time limit: stopped after")
        assert "search.max_trial_seconds: 0.5" in t.user_attrs["failure_reason"]
        assert t.duration.total_seconds() < 30
    assert "stopped early or failed: 2 x time limit" in out


def test_journal_storage_runs_and_resumes(tmp_path, write_space, capsys):
    write_space()
    url = f"journal:{tmp_path / 'runs' / 'tiny.log'}"
    assert main(["--space", "tiny.yaml", "--storage", url, "--trials", "2", "-q"]) == 0
    assert main(["--space", "tiny.yaml", "--storage", url, "--trials", "3", "-q"]) == 0
    out = capsys.readouterr().out
    study = iasf_search.load_results(url, "tiny")
    assert len([t for t in study.trials if t.state in FINISHED]) == 3
    assert (tmp_path / "runs" / "artifacts").is_dir()           # beside the log file
    assert f"--storage journal:{tmp_path / 'runs' / 'tiny.log'}" in out
    assert main(["best", "--storage", url, "--study", "tiny"]) == 0


def test_out_of_memory_fails_the_trial_with_a_reason_and_the_study_goes_on(tmp_path, write_space, capsys):
    write_space({"plugins": ["plugin_samples.out_of_memory"], "manifold.ops": {"oom": {}, "mlp": {"expansion": 1}},
                 "search.sampler": "random"})
    assert main(["--space", "tiny.yaml", "--trials", "3", "-q"]) == 0
    study = load("sqlite:///runs/tiny.db")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["failure_reason"].startswith("out of memory: CUDA out of memory") for t in failed)
    assert len([t for t in study.trials if t.state in FINISHED]) == 3
    assert f"{len(failed)} x out of memory" in capsys.readouterr().out


def test_surplus_rule_fails_a_trial_beyond_the_target(make_session, digits):
    from iasf_search.trial.objective import Surplus, TrialObjective

    study = optuna.create_study()
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=0.5))
    objective = TrialObjective(make_session(), digits, "cpu", 0, target=2)
    trial = study.ask()
    with pytest.raises(Surplus):
        objective(trial)
    assert study.trials[-1].user_attrs["failure_reason"].startswith("surplus: 2 earlier trials")
