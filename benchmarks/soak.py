"""Benchmark (issue #24): a long search on PostgreSQL that meets the faults of a shared machine, against a quiet one.

Two arms, one after the other, each ``--minutes`` long (default 30) on a fresh database of one throwaway PostgreSQL
cluster (default durability; Debian's ``initdb``/``pg_ctl``, 127.0.0.1 only):

* ``quiet``: ``--workers`` worker processes (default 4) and nothing else;
* ``soak``: the same, while the database is restarted (``pg_ctl restart -m fast``) every ``--restart-every`` minutes
  (default 5) and one worker, in turn, is SIGKILLed every ``--kill-every`` minutes (default 7) and started again at
  once, as a supervisor (systemd, Slurm's requeue) would.

Each worker is its own ``iasf-search --space S --storage URL --worker i/N --timeout T`` process, as workers on several
machines are (``--workers N`` would end the whole command when one of its workers is killed); ``T`` is the time left
of the arm, so that every worker stops starting trials at the same moment. ``S`` is ``search_spaces/vision.yaml`` with
``search:`` changed only for a long run: no trial limit, and heartbeats every 5 s with a 30 s grace period, so that a
killed worker's trial is failed and retried within the arm.

Per arm it reports, from the study read back at the end:

* finished trials (complete or pruned) and finished trials per minute of the arm, and the soak's rate against the
  quiet one's;
* retried: trials failed as lost (their worker killed) and queued again by the heartbeat rule (must equal the kills
  that hit a running trial);
* lost: trials that failed for any other reason and were not retried, plus trials left RUNNING or WAITING (must be 0);
* the outage warnings the workers printed and any traceback or unexpected error in their output (must be 0).

    python benchmarks/soak.py [--minutes 30] [--workers 4] [--restart-every 5] [--kill-every 7] [--arms quiet soak]

Results are appended to ``benchmarks/results/soak.jsonl`` (one line per arm) and printed as a table. Run it alone on
the machine: the rates are compared between arms.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState
from workers_throughput import Postgres, load, machine, pg_binaries, revision

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "soak.jsonl"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class Arm:
    name: str
    minutes: float
    workers: int
    finished: int = 0
    per_minute: float = 0.0
    retried: int = 0
    lost: int = 0
    running_left: int = 0
    waiting_left: int = 0
    surplus: int = 0
    kills: int = 0
    restarts: int = 0
    outage_warnings: int = 0
    tracebacks: int = 0
    worker_exits: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def soak_space(folder: Path) -> Path:
    """``vision.yaml`` with ``search:`` set for a long run of independent workers."""
    doc = yaml.safe_load((ROOT / "search_spaces" / "vision.yaml").read_text(encoding="utf-8"))
    doc["search"].update({"trials": 100_000, "timeout": None, "heartbeat_interval": 5, "grace_period": 30})
    path = folder / "soak.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


class Workers:
    """``count`` worker processes of one study; each relays its stderr into a shared list of lines."""

    def __init__(self, space: Path, url: str, artifacts: Path, count: int, end: float) -> None:
        self.space, self.url, self.artifacts, self.count, self.end = space, url, artifacts, count, end
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.exits: list[int] = []
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def start(self, index: int) -> None:
        left = max(1, int(self.end - time.monotonic()))
        proc = subprocess.Popen([sys.executable, "-m", "iasf_search", "--space", str(self.space), "--storage", self.url,
                                 "--artifacts", str(self.artifacts), "--worker", f"{index}/{self.count}",
                                 "--timeout", str(left), "-q"],
                                cwd=self.artifacts.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.procs[index] = proc
        threading.Thread(target=self._relay, args=(index, proc), daemon=True).start()

    def _relay(self, index: int, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            with self.lock:
                self.lines.append(f"w{index} {line.rstrip()}")
            print(f"  w{index} {line.rstrip()}", flush=True)

    def kill(self, index: int) -> None:
        proc = self.procs[index]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            self.exits.append(proc.wait())
            self.start(index)

    def wait(self) -> None:
        for proc in self.procs:
            if proc is not None:
                self.exits.append(proc.wait())


def run_arm(name: str, pg: Postgres, args: argparse.Namespace, folder: Path) -> Arm:
    arm = Arm(name, args.minutes, args.workers)
    url = pg.new_database()
    space = soak_space(folder)
    artifacts = folder / name / "artifacts"
    artifacts.mkdir(parents=True)
    # the study is made first, as --workers does, so that the workers do not race on a fresh database's schema
    made = subprocess.run([sys.executable, "-m", "iasf_search", "--space", str(space), "--storage", url, "--artifacts",
                           str(artifacts), "--trials", "1", "-q"], cwd=artifacts.parent, capture_output=True, text=True)
    if made.returncode != 0:
        arm.problems.append(f"making the study failed: {made.stderr.strip()[-500:]}")
        return arm
    study_name = yaml.safe_load(space.read_text(encoding="utf-8"))["name"]
    before = finished_count(url, study_name)
    start = time.monotonic()
    end = start + args.minutes * 60
    workers = Workers(space, url, artifacts, args.workers, end)
    for i in range(args.workers):
        workers.start(i)
    faults = []
    if name == "soak":
        faults += [(start + k * args.restart_every * 60, "restart") for k in range(1, int(args.minutes // args.restart_every) + 1)]
        faults += [(start + k * args.kill_every * 60, "kill") for k in range(1, int(args.minutes // args.kill_every) + 1)]
    for at, fault in sorted(f for f in faults if f[0] < end):
        time.sleep(max(0.0, at - time.monotonic()))
        if fault == "restart":
            pg.restart()
            arm.restarts += 1
        else:
            workers.kill(arm.kills % args.workers)
            arm.kills += 1
        print(f"{name}: {fault} at {(time.monotonic() - start) / 60:.1f} min", flush=True)
    workers.wait()
    minutes = (time.monotonic() - start) / 60
    study = optuna.load_study(study_name=study_name, storage=url)
    trials = study.get_trials(deepcopy=False)
    retried_numbers = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    arm.finished = sum(t.state in FINISHED for t in trials) - before
    arm.per_minute = arm.finished / minutes
    arm.retried = len(retried_numbers)
    arm.surplus = sum(str(t.user_attrs.get("failure_reason", "")).startswith("surplus") for t in trials)
    arm.running_left = sum(t.state == TrialState.RUNNING for t in trials)
    arm.waiting_left = sum(t.state == TrialState.WAITING for t in trials)
    failed_unretried = [t for t in trials if t.state == TrialState.FAIL and t.number not in retried_numbers
                        and not str(t.user_attrs.get("failure_reason", "")).startswith("surplus")]
    arm.lost = len(failed_unretried) + arm.running_left + arm.waiting_left
    arm.outage_warnings = sum("is unreachable (" in line for line in workers.lines)
    arm.tracebacks = sum(("Traceback" in line or "unexpected error" in line) for line in workers.lines)
    arm.worker_exits = workers.exits
    arm.problems += [f"#{t.number} failed: {t.user_attrs.get('failure_reason')}" for t in failed_unretried]
    pg.drop_database(url)
    return arm


def finished_count(url: str, name: str) -> int:
    study = optuna.load_study(study_name=name, storage=url)
    return sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))


def table(arms: list[Arm]) -> list[str]:
    quiet = next((a for a in arms if a.name == "quiet"), None)
    lines = ["| arm | minutes | finished | per minute | vs quiet | retried | lost | RUNNING left | restarts | kills | "
             "outage warnings | tracebacks |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in arms:
        ratio = f"{a.per_minute / quiet.per_minute:.2f}" if quiet and quiet.per_minute else "-"
        lines.append(f"| {a.name} | {a.minutes:g} | {a.finished} | {a.per_minute:.1f} | {ratio} | {a.retried} | {a.lost} | "
                     f"{a.running_left} | {a.restarts} | {a.kills} | {a.outage_warnings} | {a.tracebacks} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--restart-every", type=float, default=5, help="minutes between database restarts (soak arm)")
    parser.add_argument("--kill-every", type=float, default=7, help="minutes between worker SIGKILLs (soak arm)")
    parser.add_argument("--arms", nargs="+", default=["quiet", "soak"], choices=["quiet", "soak"])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    bindir = pg_binaries()
    if bindir is None:
        print("no PostgreSQL (initdb, pg_ctl): install Debian's postgresql", file=sys.stderr)
        return 2
    pg = Postgres(bindir, fast=False)
    pg.start()
    header = {"date": datetime.date.today().isoformat(), "machine": machine(), "code": revision(), "postgres": pg.version,
              "load_before": load()}
    print(header, flush=True)
    arms = []
    try:
        with tempfile.TemporaryDirectory(prefix="iasf-soak-") as tmp:
            for name in args.arms:
                arm = run_arm(name, pg, args, Path(tmp))
                arms.append(arm)
                args.results.parent.mkdir(parents=True, exist_ok=True)
                with args.results.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({**header, **asdict(arm), "load_after": load()}) + "\n")
                print("\n".join(table(arms)), flush=True)
    finally:
        pg.stop()
    bad = [a for a in arms if a.lost or a.running_left or a.tracebacks or a.problems]
    for a in bad:
        print(f"{a.name}: lost {a.lost}, RUNNING left {a.running_left}, tracebacks {a.tracebacks}; {a.problems[:5]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
