"""``--workers N``: N worker processes on this machine, one study, coordinated by the storage only.

The parent validates the search and creates the study (workers started together on a fresh
database would race on its schema), then starts ``iasf-search search ... --worker i/N`` (:data:`WORKER_BOOT`)
N times. Each worker is an ordinary search process: Optuna's storage hands out trial numbers and
queued retries, and :func:`iasf_search.search.study.run_search` makes the workers together finish exactly
the target. Workers on other machines join by running the same command with the same
``--storage postgresql://...``. Output lines are prefixed with the worker's index.

``--workers auto`` (:func:`worker_count`) fills the machine: on GPUs, ``--trials-per-gpu K`` workers
per visible GPU (default 1: small models leave a large GPU idle, so several trials can share it); on
the CPU, one single-threaded worker per core, the arrangement that trained the default spaces'
trials fastest on 2 cores (``benchmarks/fill_machine.py``). Never more workers than trials left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from typing import TextIO

import optuna
from optuna.storages import fail_stale_trials

from iasf_search.optuna_internals import heartbeat_enabled
from iasf_search.search.interrupts import INTERRUPTED_STATUS, TERMINATED_STATUS, Terminated

WORKER_FLAG = "--worker"
OWN_FLAGS = ("--workers", "--trials-per-gpu")
"""Flags of the parent process only: a worker's command line leaves them out."""
AUTO = "auto"
CPU_THREADS_PER_WORKER = 1
"""``--workers auto`` on the CPU: one worker per this many cores (``benchmarks/fill_machine.py``)."""
THREADS_ENV = "IASF_SEARCH_THREADS"
"""The CPU threads a worker process uses (set by :func:`worker_env`)."""
STOP_GRACE_SECONDS = 30
"""How long a stopped worker may take to record its running trial before it is killed."""


WORKER_BOOT = "import sys; del sys.path[0]; from iasf_search.cli import main; sys.exit(main())"
"""A worker's program: the CLI, with the current directory taken off the import path first (``python -m`` and ``-c``
put it there), so that a stray ``yaml.py`` or ``PIL.py`` beside the command shadows nothing, as in the parent's
``iasf-search`` console script, whose import path starts at its own folder."""


STORAGE_ENV = "IASF_SEARCH_WORKER_STORAGE"
"""The environment variable that hands workers the storage URL (``--storage env:...``): a password in the URL stays
off their command lines, which every user of the machine can read (``ps``)."""


def worker_argv(typed: Sequence[str], index: int, count: int) -> list[str]:
    """The command line of worker ``index``: the user's search arguments without ``--workers``, and ``--storage``
    pointing at :data:`STORAGE_ENV` (:func:`worker_env` sets it) instead of the URL."""
    args: list[str] = []
    words = iter(typed)
    for word in words:
        flag = word.partition("=")[0]
        if flag in (*OWN_FLAGS, "--storage") and "=" not in word:
            next(words, None)  # the flag's value
        if flag in OWN_FLAGS:
            continue
        args += ["--storage", f"env:{STORAGE_ENV}"] if flag == "--storage" else [word]
    if args and args[0] == "search":
        args = args[1:]
    return [sys.executable, "-c", WORKER_BOOT, "search", *args, WORKER_FLAG, f"{index}/{count}"]


def worker_index(flag: str) -> int:
    """This worker's index from the value of :data:`WORKER_FLAG` (``i/N``)."""
    return int(flag.partition("/")[0])


def use_worker_threads() -> None:
    """In a worker process: use the share of CPU threads :func:`worker_env` gave it."""
    import torch

    torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (empty without CUDA)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except Exception:
        return []


def gpus_in_use(device: str, gpus: Sequence[str]) -> int:
    """How many GPUs workers of ``--device device`` spread over: every visible one for ``auto`` and
    ``cuda``, the named one for ``cuda:N``, none for ``cpu`` or without CUDA."""
    if not gpus or device == "cpu":
        return 0
    return len(gpus) if device in ("auto", "cuda") else 1


def worker_count(requested: str | int, device: str, *, trials_per_gpu: int | None, gpus: Sequence[str], cores: int,
                 trials_left: int) -> int:
    """The number of worker processes for ``--workers requested`` (an int, or ``auto``).

    ``auto``: with GPUs (:func:`gpus_in_use`), ``trials_per_gpu`` (default 1) per GPU; on the CPU,
    ``cores // CPU_THREADS_PER_WORKER``; in both cases at most ``trials_left`` and at least 1.
    A number is taken as given.

    :raises ValueError: ``trials_per_gpu`` without a GPU to use, or with a number of workers.
    """
    used = gpus_in_use(device, gpus)
    if trials_per_gpu is not None:
        if requested != AUTO:
            raise ValueError("--trials-per-gpu sets the number of workers (K per GPU); leave out --workers "
                             "or give --workers auto")
        if not used:
            raise ValueError(f"--trials-per-gpu needs a CUDA GPU, and none is in use (--device {device}, "
                             f"{len(gpus)} visible); use --workers N on the CPU")
    if requested != AUTO:
        return int(requested)
    count = used * (trials_per_gpu or 1) if used else cores // CPU_THREADS_PER_WORKER
    return max(1, min(count, trials_left))


def worker_env(index: int, count: int, device: str, gpus: Sequence[str], storage: str | None = None) -> dict[str, str]:
    """Worker ``index``'s environment: its own GPU (round robin over ``gpus``) when the device is
    ``auto`` or ``cuda``, a share of the CPU threads, and the storage URL (:data:`STORAGE_ENV`)."""
    env = dict(os.environ)
    if storage is not None:
        env[STORAGE_ENV] = storage
    if gpus and device in ("auto", "cuda"):
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    env[THREADS_ENV] = str(max(1, (os.cpu_count() or 1) // count))
    return env


def wait_for_others(study: optuna.Study, heartbeat_interval: float, running: int, left: float | None) -> bool:
    """Sleep a poll interval while ``running`` trials of other workers run, failing stale ones
    (heartbeats); False when the storage has no heartbeats (a dead worker's trial would never end).

    :param left: seconds left of this run's timeout (None: none); the sleep does not overrun it.
    """
    if not heartbeat_enabled(study):
        warnings.warn(f"{running} trial(s) of this study are running elsewhere; this storage has no heartbeats, "
                      f"so this process stops instead of waiting for them", stacklevel=3)
        return False
    fail_stale_trials(study)
    pause = min(1.0, heartbeat_interval)  # one small query a second while waiting
    time.sleep(pause if left is None else max(0.0, min(pause, left)))
    return True


def _pump(stream: TextIO, prefix: str, out: TextIO, lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            out.write(prefix + line)
            out.flush()


def run_workers(typed: Sequence[str], count: int, device: str, *, storage: str | None = None, json_lines: bool = False) -> int:
    """Start ``count`` workers, relay their output, wait for all; returns the combined exit status
    (143 if any was terminated, else 130 if any was interrupted, else 1 if any failed, else 2 if
    any had bad input, else 0).

    A Ctrl-C or SIGTERM that reaches this process (:mod:`iasf_search.search.interrupts`) is relayed to
    every worker explicitly, whatever reached their process group: each marks its running trial
    failed (``interrupted`` or ``terminated``) and exits; this process waits for them and raises
    the same interrupt.

    :param storage: the storage URL (the study's, as the parent resolved it), handed over in :data:`STORAGE_ENV`.
    """
    gpus = visible_gpus()
    procs = [subprocess.Popen(worker_argv(typed, i, count), env=worker_env(i, count, device, gpus, storage), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=1)
             for i in range(count)]
    lock = threading.Lock()
    pumps = []
    for i, proc in enumerate(procs):
        prefix = "" if json_lines else f"w{i} "
        pumps += [threading.Thread(target=_pump, args=(proc.stdout, prefix, sys.stdout, lock), daemon=True),
                  threading.Thread(target=_pump, args=(proc.stderr, f"w{i} ", sys.stderr, lock), daemon=True)]
    for pump in pumps:
        pump.start()
    try:
        codes = [proc.wait() for proc in procs]
    except KeyboardInterrupt as stop:
        _relay(procs, signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)
        for pump in pumps:
            pump.join(timeout=5)
        raise
    for pump in pumps:
        pump.join(timeout=5)
    for status in (TERMINATED_STATUS, INTERRUPTED_STATUS, 1, 2):
        if status in codes:
            return status
    return 0 if all(c == 0 for c in codes) else 1


def _relay(procs: Sequence[subprocess.Popen], signum: int) -> None:
    """Send ``signum`` to every worker still running and wait for each to record its trial and exit
    (killed after :data:`STOP_GRACE_SECONDS`, when the heartbeat check later fails its trial)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signum)
    for proc in procs:
        try:
            proc.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
