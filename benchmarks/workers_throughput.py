"""Benchmark: trials per minute with 1, 2 and 4 parallel workers on SQLite, JournalStorage and PostgreSQL (issue #5).

For every storage and worker count it runs, in a fresh temporary directory and on a fresh study,

    iasf-search --space FAST.yaml --storage URL --trials N --workers W -q

where FAST.yaml (written by this script) is a deliberately tiny space: digits, patch 2, width 8 or
16, 1-2 nodes of mlp/conv, 1 epoch at batch 128, random sampler, no pruner, no artifact files. A
trial trains in well under a second, so what is measured is mostly the per-trial coordination cost
(sampling, storage reads and writes, heartbeats, the exact-target check), the per-process start-up
and how the workers share the CPU — not the models.

Per run it reads the study back and reports:

* trials/min over the busy window: finished trials / (last trial's ``datetime_complete`` - first
  trial's ``datetime_start``). Process start-up (Python + torch import, data loading; about 3 s per
  process, paid by the parent and again by every worker) falls outside this window, which is the
  fairer figure for a long search; the wall time of the whole command is reported beside it.
* trials/min after warm-up: from the W-th trial completion to the last. The first trial of every
  process is slow (seconds: torch's first-call set-up), which the busy window still contains.
* scaling efficiency = (rate with W workers / rate with 1 worker) / W, for both rates.
* wall s of the whole command, split into start-up (command start to first trial start), the busy
  window and the tail (last completion to exit).
* median trial duration (start to completion) and the mean number of trials in flight over the
  busy window (sum of trial durations / window): close to W means the workers were always busy.
* finished trials (must be exactly N), surplus trials (FAIL, ``failure_reason: surplus``: a worker
  created a trial when the target was already covered) and any other FAIL or unfinished trial.
* others' CPU %: the share of the machine's CPU time (all cores) used during the run by processes
  other than the command, its workers and the PostgreSQL cluster (``/proc/stat`` minus their CPU
  times): other people's jobs competing for the cores. Rows with a large share are suspect.

Each configuration runs ``--repeats`` times; the table shows medians. Runs are interleaved round
robin (forward, then backward on the next round, ...) so that drifting machine load spreads over
all configurations. PostgreSQL runs use one throwaway cluster started here (Debian's ``initdb`` and
``pg_ctl``, as the ``postgres`` user when run as root, on 127.0.0.1 only, default durability
settings unless ``--pg-fast``) and a fresh database per run; without PostgreSQL they are skipped
with the reason printed.

    python benchmarks/workers_throughput.py --trials 60 --repeats 2 \
        --storages sqlite journal postgresql sqlite+artifacts --out-md /tmp/workers.md

Run it alone on the machine: every figure is a rate and other processes' CPU use changes it (the
load average before and after and the others' CPU share of each run are printed with the table).
It exits with status 1 when a run failed, finished other than exactly N trials or left trials
running; the problems are listed under the table and the commands' output is printed as they occur.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

STUDY = "workers-throughput"
STORAGES = ("sqlite", "journal", "postgresql", "sqlite+artifacts")
ARTIFACTS_OFF = "artifacts: {diagram: false, heatmaps: none, checkpoints: none}\n"


def space_yaml(artifacts: bool) -> str:
    """The fast space; ``artifacts`` keeps the default trial files (diagram on every trial, checkpoint of the best)."""
    return f"""\
# Written by benchmarks/workers_throughput.py: a space whose trials train in well under a second,
# so that storage and coordination overhead are visible.
name: {STUDY}
task: {{dataset: digits}}
stem: {{patch: 2, overlap: false, position: learned}}
manifold:
  nodes: {{low: 1, high: 2}}
  width: [8, 16]
  ops:
    mlp: {{expansion: [2]}}
    conv: {{kernel: [3]}}
training:
  epochs: 1
  batch_size: 128
  lr: {{low: 1.0e-3, high: 1.0e-2, log: true}}   # continuous: no two trials share a result-reuse key
{"" if artifacts else ARTIFACTS_OFF}search: {{sampler: random, pruner: none, trials: 40, seed: 0}}
"""


# --- machine ----------------------------------------------------------------------------------------------

def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def ram_gib() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "? GiB"


def versions() -> str:
    import sqlite3

    import sqlalchemy

    parts = [f"Python {platform.python_version()}", f"torch {torch.__version__}", f"Optuna {optuna.__version__}",
             f"SQLAlchemy {sqlalchemy.__version__}", f"SQLite {sqlite3.sqlite_version}"]
    with contextlib.suppress(ImportError):
        import psycopg

        parts.append(f"psycopg {psycopg.__version__}")
    return ", ".join(parts)


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu_model()}), {ram_gib()} RAM, {gpu}"


def cpu_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores; idle and iowait excluded)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and its finished, waited-for descendants (the command and its workers)."""
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def revision() -> str:
    """The checkout's commit (with ``+ uncommitted changes`` when the tree differs), or ``unknown``."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "iasf_search", "plugins"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" + uncommitted changes in iasf_search/ or plugins/" if dirty else "")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


# --- a throwaway PostgreSQL cluster (the logic of tests/postgres.py, with durability settings left alone) -----

def pg_binaries() -> Path | None:
    on_path = shutil.which("initdb")
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(n) for n in re.findall(r"\d+", p)], reverse=True)
    for folder in [*([Path(on_path).parent] if on_path else []), *map(Path, debian)]:
        if all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """``initdb --auth=trust`` + ``pg_ctl start`` in a temporary folder on 127.0.0.1; :meth:`stop` removes it."""

    def __init__(self, bindir: Path, fast: bool) -> None:
        self.bindir, self.fast = bindir, fast
        self.prefix: list[str] = []
        owner = None
        if os.geteuid() == 0:  # initdb refuses root
            import pwd

            try:
                owner = pwd.getpwnam("postgres").pw_uid
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run the server as") from None
            if not shutil.which("runuser"):
                raise RuntimeError("running as root and runuser (util-linux) is missing")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.base = Path(tempfile.mkdtemp(prefix="iasf-bench-pg-", dir="/tmp" if owner is not None else None))
        if owner is not None:
            os.chown(self.base, owner, -1)
        self.data, self.log = self.base / "data", self.base / "server.log"
        self.url: str | None = None
        self.version = ""

    def _run(self, *args: str) -> str:
        result = subprocess.run([*self.prefix, *args], cwd=self.base, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=120)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stdout.strip()[-2000:]}\n{log}".strip())
        return result.stdout

    def start(self) -> str:
        self.version = self._run(str(self.bindir / "postgres"), "--version").strip()
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        fast = " -c fsync=off -c synchronous_commit=off -c full_page_writes=off" if self.fast else ""
        last: Exception | None = None
        for _ in range(3):  # another process may take the free port between our check and the server's bind
            port = free_port()
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o",
                          f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={self.base}{fast}",
                          "-w", "-t", "30", "start")
            except RuntimeError as exc:
                last = exc
                continue
            self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            return self.url
        raise last or RuntimeError("pg_ctl start failed")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection closed, the server away for about a second (the soak's fault)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", "60",
                  "restart")

    def cpu_s(self) -> float:
        """CPU seconds of this cluster's server processes so far (postmaster, live backends, and through the
        postmaster's cumulative children times the backends that have exited)."""
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        total = 0
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = Path(stat).read_text()
                pid = int(stat.split("/")[2])
                fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "; fields[0] is the state
                ppid, utime, stime, cutime, cstime = int(fields[1]), *(int(v) for v in fields[11:15])
                if pid == postmaster:
                    total += utime + stime + cutime + cstime
                elif ppid == postmaster:
                    total += utime + stime
        return total / os.sysconf("SC_CLK_TCK")

    def execute(self, statement: str) -> None:
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def new_database(self) -> str:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def drop_database(self, url: str) -> None:
        with contextlib.suppress(Exception):
            self.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    def stop(self) -> None:
        if self.url is not None:
            self.url = None
            with contextlib.suppress(Exception):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


# --- one run ----------------------------------------------------------------------------------------------

@dataclass
class Run:
    storage: str
    workers: int
    round: int
    wall_s: float = 0.0
    window_s: float = 0.0
    rate: float = 0.0
    """Finished trials per minute over the busy window."""
    steady: float = 0.0
    """Finished trials per minute after warm-up: from the W-th completion to the last."""
    startup_s: float = 0.0
    """From starting the command to the first trial's start."""
    tail_s: float = 0.0
    """From the last trial's completion to the command's exit."""
    median_trial_s: float = 0.0
    in_flight: float = 0.0
    finished: int = 0
    surplus: int = 0
    other_fail: int = 0
    unfinished: int = 0
    load_before: float = 0.0
    others_cpu: float = 0.0
    """Share of the machine's CPU (all cores) used during the command by processes other than the benchmark's
    (the command, its workers, the PostgreSQL cluster): other people's jobs that slow the run down."""
    problems: list[str] = field(default_factory=list)


def open_study(url: str) -> optuna.Study:
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        storage: str | optuna.storages.BaseStorage = optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    else:
        storage = url
    return optuna.load_study(study_name=STUDY, storage=storage)


def run_one(storage: str, workers: int, rnd: int, args: argparse.Namespace, spaces: dict[bool, Path],
            pg: Postgres | None) -> Run:
    run = Run(storage, workers, rnd, load_before=os.getloadavg()[0])
    with tempfile.TemporaryDirectory(prefix="iasf-bench-") as tmp:
        if storage.startswith("sqlite"):
            url = f"sqlite:///{tmp}/study.db"  # tmp is absolute: sqlite:////tmp/...
        elif storage == "journal":
            url = f"journal:{tmp}/study.log"
        else:
            assert pg is not None
            url = pg.new_database()
        cmd = ["iasf-search", "--space", str(spaces[storage == "sqlite+artifacts"]), "--storage", url,
               "--trials", str(args.trials), "--workers", str(workers), "-q"]
        try:
            busy0, own0, pg0 = cpu_busy_s(), own_cpu_s(), pg.cpu_s() if pg is not None else 0.0
            start, start_clock = time.perf_counter(), time.time()
            # its own process group, so that a timeout stops the workers too, not only the parent
            proc = subprocess.Popen(cmd, cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
            try:
                output, _ = proc.communicate(timeout=args.run_timeout)
                code: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate()
                code = None
            run.wall_s = time.perf_counter() - start
            end_clock = time.time()
            others = (cpu_busy_s() - busy0) - (own_cpu_s() - own0) - ((pg.cpu_s() - pg0) if pg is not None else 0.0)
            run.others_cpu = max(0.0, others / (run.wall_s * (os.cpu_count() or 1)))
            if code != 0:
                run.problems.append(f"exit status {code if code is not None else f'timeout after {args.run_timeout} s'}; "
                                    f"output:\n{output.rstrip()[-4000:]}")
            try:
                trials = open_study(url).get_trials(deepcopy=False)
            except Exception as exc:  # no study: the command failed before creating it
                run.problems.append(f"cannot read the study back: {type(exc).__name__}: {exc}")
                return run
        finally:
            if pg is not None and storage == "postgresql":
                pg.drop_database(url)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    run.finished = len(done)
    run.surplus = sum(str(t.user_attrs.get("failure_reason", "")).startswith("surplus") for t in failed)
    run.other_fail = len(failed) - run.surplus
    run.unfinished = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    for t in failed:
        if not str(t.user_attrs.get("failure_reason", "")).startswith("surplus"):
            run.problems.append(f"trial {t.number} FAIL: {t.user_attrs.get('failure_reason', '(no failure_reason: worker lost?)')}")
    if run.finished != args.trials:
        run.problems.append(f"{run.finished} finished trials, expected exactly {args.trials} "
                            f"(states: {dict(sorted(_states(trials).items()))})")
    if run.unfinished:
        run.problems.append(f"{run.unfinished} trial(s) left RUNNING/WAITING")
    timed = [t for t in trials if t.datetime_start is not None and t.datetime_complete is not None]
    if timed:
        first = min(t.datetime_start for t in timed)
        last = max(t.datetime_complete for t in timed)
        run.window_s = (last - first).total_seconds()
        run.rate = 60 * run.finished / run.window_s if run.window_s > 0 else 0.0
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in timed]
        run.median_trial_s = statistics.median((t.datetime_complete - t.datetime_start).total_seconds() for t in done) if done else 0.0
        run.in_flight = sum(durations) / run.window_s if run.window_s > 0 else 0.0
        run.startup_s = first.timestamp() - start_clock  # Optuna stamps trials with naive local time
        run.tail_s = end_clock - last.timestamp()
    completions = sorted(t.datetime_complete for t in done if t.datetime_complete is not None)
    if len(completions) > workers:
        span = (completions[-1] - completions[workers - 1]).total_seconds()
        run.steady = 60 * (len(completions) - workers) / span if span > 0 else 0.0
    return run


def _states(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# --- the matrix -------------------------------------------------------------------------------------------

def schedule(configs: list[tuple[str, int]], repeats: int) -> list[tuple[int, str, int]]:
    """Round robin: every configuration once per round, forward then backward on alternate rounds."""
    order = []
    for rnd in range(repeats):
        for storage, workers in (configs if rnd % 2 == 0 else configs[::-1]):
            order.append((rnd, storage, workers))
    return order


def table(runs: list[Run], storages: list[str], workers: list[int]) -> list[str]:
    lines = ["| storage | workers | trials/min, busy window | efficiency | trials/min, after warm-up | efficiency | "
             "wall s (start-up + busy + tail) | median trial s | trials in flight | finished | surplus FAIL | "
             "other FAIL / unfinished | others' CPU % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def med(values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    for storage in storages:
        base = steady_base = 0.0
        for w in workers:
            mine = [r for r in runs if r.storage == storage and r.workers == w]
            if not mine:
                continue
            ok = [r for r in mine if r.rate > 0]
            rate, steady = med([r.rate for r in ok]), med([r.steady for r in ok])
            if w == 1:
                base, steady_base = rate, steady
            eff = f"{rate / base / w:.2f}" if base and rate else "–"
            steady_eff = f"{steady / steady_base / w:.2f}" if steady_base and steady else "–"
            wall = (f"{med([r.wall_s for r in mine]):.1f} ({med([r.startup_s for r in ok]):.1f} + "
                    f"{med([r.window_s for r in ok]):.1f} + {med([r.tail_s for r in ok]):.1f})")
            mark = " ⚠" if any(r.problems for r in mine) else ""
            lines.append(f"| {storage} | {w} | {rate:.0f}{mark} | {eff} | {steady:.0f} | {steady_eff} | {wall} | "
                         f"{med([r.median_trial_s for r in ok]):.2f} | {med([r.in_flight for r in ok]):.2f} | "
                         f"{', '.join(str(r.finished) for r in mine)} | "
                         f"{', '.join(str(r.surplus) for r in mine)} | "
                         f"{', '.join(f'{r.other_fail}/{r.unfinished}' for r in mine)} | "
                         f"{', '.join(f'{100 * r.others_cpu:.0f}' for r in mine)} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="finished trials per run (default 40)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts (default 1 2 4; include 1)")
    parser.add_argument("--storages", nargs="+", default=["sqlite", "journal", "postgresql"], choices=STORAGES,
                        help="storages (default sqlite journal postgresql; sqlite+artifacts: SQLite with the default "
                             "trial files on — a diagram per trial and the best trial's checkpoint)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration; the table shows medians (default 2)")
    parser.add_argument("--pg-fast", action="store_true",
                        help="PostgreSQL with fsync, synchronous_commit and full_page_writes off (as the tests run it)")
    parser.add_argument("--run-timeout", type=float, default=600, help="seconds before a run is killed (default 600)")
    parser.add_argument("--out-md", type=Path, help="also append the header and table to this Markdown file")
    parser.add_argument("--json", type=Path, help="write every run's figures to this JSON file")
    args = parser.parse_args()
    if shutil.which("iasf-search") is None:
        parser.error("iasf-search is not on PATH: pip install -e . in this environment first")

    started = time.perf_counter()
    load_start = load()
    header = [f"Command: `{' '.join(['python', 'benchmarks/workers_throughput.py', *sys.argv[1:]])}`",
              f"Machine: {machine()}; {versions()}.",
              f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; code at {revision()}."]
    storages = list(args.storages)
    pg: Postgres | None = None
    notes: list[str] = []
    if "postgresql" in storages:
        bindir = pg_binaries()
        reason = None
        if bindir is None:
            reason = "no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin (Debian package postgresql)"
        else:
            try:
                pg = Postgres(bindir, args.pg_fast)
                pg.start()
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                reason = f"a throwaway cluster could not be started: {exc}"
                if pg is not None:
                    pg.stop()
                pg = None
        if reason:
            print(f"skipping postgresql: {reason}", file=sys.stderr)
            notes.append(f"PostgreSQL skipped: {reason}.")
            storages.remove("postgresql")
        else:
            notes.append(f"PostgreSQL: {pg.version}, throwaway cluster on 127.0.0.1 (TCP), "
                         f"{'fsync/synchronous_commit/full_page_writes off' if args.pg_fast else 'default durability settings'}, "
                         f"a fresh database per run.")
    configs = [(s, w) for s in storages for w in args.workers]
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory(prefix="iasf-bench-space-") as tmp:
            spaces = {}
            for artifacts in (False, True):
                spaces[artifacts] = Path(tmp) / f"fast{'-artifacts' if artifacts else ''}.yaml"
                spaces[artifacts].write_text(space_yaml(artifacts))
            order = schedule(configs, args.repeats)
            for i, (rnd, storage, workers) in enumerate(order, 1):
                run = run_one(storage, workers, rnd, args, spaces, pg)
                runs.append(run)
                print(f"[{i}/{len(order)}] round {rnd + 1} {storage:>16} x{workers}: {run.rate:6.1f} trials/min busy, "
                      f"{run.steady:6.1f} after warm-up, wall {run.wall_s:5.1f} s ({run.startup_s:.1f} + "
                      f"{run.window_s:.1f} + {run.tail_s:.1f}), finished {run.finished}, surplus {run.surplus}, "
                      f"load {run.load_before:.2f}, others' CPU {100 * run.others_cpu:.0f}%"
                      + (" — PROBLEM" if run.problems else ""), file=sys.stderr, flush=True)
                for problem in run.problems:
                    print(f"    {problem}", file=sys.stderr, flush=True)
    finally:
        if pg is not None:
            pg.stop()
    elapsed = time.perf_counter() - started
    header.append(f"Load average (1/5/15 min) at start {load_start}, at end {load()}; the benchmark took {elapsed / 60:.1f} min.")
    header.append(f"{args.trials} trials per run, {args.repeats} run(s) per configuration interleaved round robin; "
                  f"medians. Threads: 1 worker = one process with torch's default threads; W workers = W processes "
                  f"with max(1, {os.cpu_count()} // W) threads each.")
    if max(args.workers) > (os.cpu_count() or 1):
        header.append(f"{max(args.workers)} workers on {os.cpu_count()} cores oversubscribe the CPU: expect efficiency well below 1.")
    header += notes
    problems = [(r, p) for r in runs for p in r.problems]
    lines = [*header, "", *table(runs, storages, args.workers)]
    if problems:
        lines += ["", "Problems (⚠):"] + [f"- {r.storage} x{r.workers} round {r.round + 1}: {p.splitlines()[0]}" for r, p in problems]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out_md:
        with args.out_md.open("a") as f:
            f.write("\n" + text)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
