"""Command line: argument parsing, output and exit codes (0 done, 1 unexpected error, 2 bad input, 130 interrupted by
Ctrl-C, 143 terminated by SIGTERM)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

import optuna
import torch
from tqdm import tqdm

from iasf_search.errors import BadInput, SearchFailed, one_line
from iasf_search.plugin_manager import contributions, load_components, plugins_to_load
from iasf_search.plugins.console_progress import ConsoleProgress
from iasf_search.plugins.json_event_log import JsonEventLog, error_event, summary_event, write_event
from iasf_search.results.access import StoredStudy, best_trials, open_stored_study, pick_trial
from iasf_search.results.artifacts import default_artifact_dir, open_artifact_store
from iasf_search.results.baselines import baseline_line, comparison, fit_baselines, record_baselines
from iasf_search.results.export import export_trial
from iasf_search.results.retrain import retrain
from iasf_search.results.summary import print_baselines, print_pareto, print_summary, print_trial
from iasf_search.search import interrupts
from iasf_search.search.setup import load_task, open_task_study, study_location
from iasf_search.search.storage import masked_command, safe_url, storage_from_env
from iasf_search.search.study import SearchResult, pareto_plot_path, run_search, run_with_workers
from iasf_search.search.workers import AUTO, WORKER_FLAG, use_worker_threads, worker_index
from iasf_search.session import Session, open_session

COMMANDS = ("search", "best", "baseline", "plugins", "dashboard", "export", "train", "report", "analyze", "calibrate")


def _common(parser: argparse.ArgumentParser, *, space_required: bool) -> None:
    parser.add_argument("--space", required=space_required, metavar="PATH", help="search-space YAML file")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: sqlite:///runs/<space name>.db)")
    parser.add_argument("--study", metavar="NAME", help="study name (default: the space's name)")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="load a plugin module (repeatable)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")


def _artifacts_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifacts", metavar="DIR",
                        help="trials' files (diagrams, heat maps, checkpoints); default: artifacts/ beside a SQLite "
                             "database, else runs/artifacts")


class _UsageError(Exception):
    """A command-line argument argparse rejected."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one ``iasf-search: error:`` line and exit status 2, like all bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{message} (see {self.prog} --help)")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="iasf-search",
        description="Search attention architecture graphs with Optuna and PyTorch. "
                    "`iasf-search --space FILE` is short for `iasf-search search --space FILE`.")
    parser.add_argument("--version", action="version", version=f"iasf-search {importlib.metadata.version('iasf-search')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_search, _add_best, _add_baseline, _add_plugins, _add_dashboard, _add_export, _add_report, _add_analyze,
                _add_train, _add_calibrate):
        add(sub)
    return parser


def _add_search(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search", help="run or resume a search (the default command)")
    _common(search, space_required=True)
    search.add_argument("--trials", type=int, metavar="N", help="run until the study holds N finished trials")
    search.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long")
    search.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    search.add_argument("--seed", type=int, help="sampler and training seed (default: search.seed)")
    _artifacts_flag(search)
    search.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                        help="run N worker processes on this machine against the study (each takes its own GPU where there "
                             "are several); auto: one per core on the CPU, --trials-per-gpu per GPU")
    search.add_argument("--trials-per-gpu", type=int, metavar="K",
                        help="K workers per visible GPU, each training its own trial (small models leave a GPU idle); "
                             "implies --workers auto")
    search.add_argument(WORKER_FLAG, help=argparse.SUPPRESS)  # i/N: set by --workers for each worker process
    search.add_argument("--no-artifacts", action="store_true", help="attach no files to trials (notes and attributes only)")
    search.add_argument("-q", "--quiet", action="store_true", help="no per-trial lines or progress bar, only the summary")
    search.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="text (default) or json: one JSON object per line per event on stdout")
    search.set_defaults(func=cmd_search)


def _add_best(sub: argparse._SubParsersAction) -> None:
    best = sub.add_parser("best", help="print the best trial (or Pareto set) and its architecture")
    _common(best, space_required=False)
    best.set_defaults(func=cmd_best)


def _add_baseline(sub: argparse._SubParsersAction) -> None:
    baseline = sub.add_parser("baseline", help="fit 1-nearest-neighbour and logistic regression on the space's splits "
                                               "and record them on the study")
    _common(baseline, space_required=True)
    baseline.set_defaults(func=cmd_baseline)


def _add_plugins(sub: argparse._SubParsersAction) -> None:
    plugins = sub.add_parser("plugins", help="list the loaded plugins, where each came from and what it contributes")
    _common(plugins, space_required=False)
    plugins.set_defaults(func=cmd_plugins)


def _add_dashboard(sub: argparse._SubParsersAction) -> None:
    dashboard = sub.add_parser("dashboard", help="serve optuna-dashboard for the study, with its trials' files")
    _common(dashboard, space_required=False)
    _artifacts_flag(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    dashboard.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    dashboard.set_defaults(func=cmd_dashboard)


def _add_export(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="write a trial's architecture, weights and model card to a folder")
    _common(export, space_required=False)
    _artifacts_flag(export)
    export.add_argument("--trial", type=int, metavar="N", help="trial number (default: the best trial, or the first of the Pareto set)")
    export.add_argument("--out", required=True, metavar="DIR", help="folder to write (new, empty, or a previous export)")
    export.add_argument("--onnx", action="store_true", help="also write model.onnx (needs the onnx extra)")
    export.set_defaults(func=cmd_export)


def _add_report(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="write an offline HTML report of the study (figures as PNG files too)")
    _common(report, space_required=False)
    _artifacts_flag(report)
    report.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and the figures' PNG files")
    report.set_defaults(func=cmd_report)


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    analyze = sub.add_parser("analyze", help="rank-correlate the trials' recorded measurements with validation accuracy")
    _common(analyze, space_required=False)
    analyze.add_argument("--out", metavar="DIR", help="also write correlations.png, correlations.csv and correlations.md here")
    analyze.set_defaults(func=cmd_analyze)


def _add_train(sub: argparse._SubParsersAction) -> None:
    retrain = sub.add_parser("train", help="retrain an exported architecture from scratch on train + validation")
    retrain.add_argument("--arch", required=True, metavar="PATH", help="arch.json of an export folder")
    retrain.add_argument("--space", metavar="PATH", help="the space it was found in (default: space.yaml beside --arch)")
    retrain.add_argument("--epochs", type=int, metavar="N", help="epochs (default: twice the trial's)")
    retrain.add_argument("--out", metavar="DIR", help="folder for the retrained model (default: retrained/ beside --arch)")
    retrain.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    retrain.add_argument("--seed", type=int, help="training seed (default: search.seed)")
    retrain.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="load a plugin module (repeatable)")
    retrain.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    retrain.set_defaults(func=cmd_train)


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    calibrate = sub.add_parser("calibrate", help="fit a hardware profile of this machine for the predicted_latency_ms cost")
    calibrate.add_argument("--out", required=True, metavar="FILE", help="profile YAML to write (name it as target: in a space)")
    calibrate.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    calibrate.add_argument("--name", help="the profile's name (default: local-cpu or local-cuda)")
    calibrate.add_argument("--threads", type=int, metavar="N", help="CPU threads to calibrate with (default: torch's, as a search uses)")
    calibrate.add_argument("--quick", action="store_true", help="fewer sizes and repeats: a rough profile in about a second")
    calibrate.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    calibrate.set_defaults(func=cmd_calibrate)


def _load(args: argparse.Namespace, observers: Sequence[tuple[object, str]] = ()) -> Session:
    return open_session(args.space, plugins=args.plugin, observers=observers)


def _workers(value: str) -> int | str:
    """``--workers``: a number or ``auto``."""
    if value == AUTO:
        return AUTO
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {value!r}") from None


def _check_search_flags(args: argparse.Namespace) -> None:
    if args.trials is not None and args.trials < 1:
        raise BadInput(f"--trials must be at least 1, got {args.trials}")
    if args.timeout is not None and args.timeout <= 0:
        raise BadInput(f"--timeout must be positive, got {args.timeout}")
    if args.workers != AUTO and args.workers < 1:
        raise BadInput(f"--workers must be at least 1 or auto, got {args.workers}")
    if args.trials_per_gpu is not None:
        if args.trials_per_gpu < 1:
            raise BadInput(f"--trials-per-gpu must be at least 1, got {args.trials_per_gpu}")
        if not any(w == "--workers" or w.startswith("--workers=") for w in args.argv):
            args.workers = AUTO  # --trials-per-gpu alone: K per GPU (a typed number is refused by worker_count)


def cmd_search(args: argparse.Namespace) -> int:
    _check_search_flags(args)
    if args.log_format == "json":
        return _search_json(args)
    session = _load(args, [(ConsoleProgress(), "console-progress")] if not args.quiet and args.workers == 1 else [])
    with interrupts.stop_signals(sigint=bool(args.worker)):
        result = _search(session, args)
    if result is not None:
        _write_pareto_plot(result)
        print_summary(result)
    return 0


def _write_pareto_plot(result: SearchResult) -> None:
    """After a search with two or three objectives: the Pareto plot under runs/ (see :func:`pareto_plot_path`)."""
    if len(result.study.directions) > 1:
        from iasf_search.results.report import write_pareto_plot

        result.pareto_plot = write_pareto_plot(result.study, pareto_plot_path(result.storage_url, result.study.study_name))


def _search(session: Session, args: argparse.Namespace) -> SearchResult | None:
    """Run the search: in this process, as worker ``--worker i/N``, or through ``--workers N`` processes.
    None for a worker (the process that started the workers prints the summary)."""
    settings = {"trials": args.trials, "timeout": args.timeout, "storage": args.storage, "study_name": args.study,
                "device": args.device, "seed": args.seed, "artifacts": None if args.no_artifacts else (args.artifacts or "auto"),
                "command": masked_command(["iasf-search", *args.argv])}
    if args.worker:
        use_worker_threads()
        run_search(session, **{**settings, "command": None}, worker=worker_index(args.worker))
        return None
    if args.workers == 1 and args.trials_per_gpu is None:
        return run_search(session, **settings)
    return run_with_workers(session, args.argv, args.workers, trials_per_gpu=args.trials_per_gpu,
                            json_lines=args.log_format == "json", **settings)


def _search_json(args: argparse.Namespace) -> int:
    """``--log-format json``: stdout carries only the events; anything else printed meanwhile goes to stderr."""
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        session = _load(args, [(JsonEventLog(out), "json-event-log")] if not args.quiet and args.workers == 1 else [])
        with interrupts.stop_signals(sigint=bool(args.worker)):
            result = _search(session, args)
        if result is not None:
            _write_pareto_plot(result)
    if result is not None:
        write_event(out, summary_event(result))
    return 0


def _study_location(args: argparse.Namespace, *, study_required: bool = True,
                    session: Session | None = None) -> tuple[str, str | None]:
    """``(storage URL, study name)`` from ``--space`` (``session``: the file's, when already open) or ``--storage``/``--study``."""
    if args.space is None and not (args.storage and (args.study or not study_required)):
        need = "both --storage URL and --study NAME" if study_required else "--storage URL"
        raise BadInput(f"{args.command} needs --space PATH, or {need}")
    if args.space is not None:
        return study_location((session if session is not None else _load(args)).space, args.storage, args.study)
    return args.storage, args.study


def _open_study(args: argparse.Namespace) -> tuple[str, StoredStudy]:
    """``(storage URL, the study)`` named by ``--space`` or ``--storage``/``--study``, opened through the results' one
    door with ``--plugin`` (:func:`~iasf_search.results.access.open_stored_study`): the plugins are loaded at most once,
    the ``--space`` file's serving the study when they are the ones it names."""
    session = _load(args) if args.space is not None else None
    storage, name = _study_location(args, session=session)
    return storage, open_stored_study(storage, name, plugins=args.plugin, session=session)


def _artifact_dir(args: argparse.Namespace, storage: str) -> Path:
    return Path(args.artifacts) if args.artifacts else default_artifact_dir(storage)


def cmd_best(args: argparse.Namespace) -> int:
    storage, opened = _open_study(args)
    study, name = opened.study, opened.study.study_name
    best = best_trials(study)
    if not best:
        if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            raise BadInput(f"no completed trial of study '{name}' meets the space's constraints (see each trial's "
                           f"'constraints' attribute); relax them in the space file and search again")
        raise BadInput(f"study '{name}' has no completed trial yet; run the search first")
    if len(study.directions) == 1:
        print_trial(best[0], heading="best trial")
    else:
        print_pareto(study, best)
        plot = pareto_plot_path(storage, name)
        if plot.exists():
            print(f"Pareto plot (written by the search): {plot}")
    print_baselines(study, best)
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    """Fit the classic baselines on the space's task (the search's samples and splits), print them, record
    them on the study (created as a search would create it, so that a later search resumes it)."""
    session = _load(args)
    space = session.space
    data = load_task(session)
    baselines = fit_baselines(data, space.search.seed, space.split)
    url, name = study_location(space, args.storage, args.study)
    study, fingerprint = open_task_study(session, data, url, name, seed=space.search.seed)
    record_baselines(study, baselines, fingerprint)
    for key, metrics in baselines.items():
        print(baseline_line(key, metrics))
    if space.split.folds:
        pool = len(data.x_train) + len(data.x_val)
        print(f"cross-validated as the search does: validation is the mean over {space.split.folds} folds"
              f"{f' x {space.split.repeats} repeats' if space.split.repeats > 1 else ''} of the {pool} training and validation "
              f"samples, test after fitting on all of them ({len(data.x_test)} test samples); "
              f"recorded on study '{name}' in {safe_url(url)}")
    else:
        print(f"fitted on {len(data.x_train)} training samples, scored on {len(data.x_val)} validation and "
              f"{len(data.x_test)} test samples; recorded on study '{name}' in {safe_url(url)}")
    best = best_trials(study)
    if best:
        print(comparison(study, best))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    storage, name = _study_location(args, study_required=False)
    from iasf_search.results.dashboard import serve_dashboard  # optuna-dashboard takes a second and a half to import

    serve_dashboard(storage, _artifact_dir(args, storage), study_name=name, host=args.host, port=args.port)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    storage, opened = _open_study(args)
    study = opened.study
    trial = pick_trial(study, args.trial)
    store = open_artifact_store(_artifact_dir(args, storage), create=False)
    result = export_trial(study, trial, store, args.out, onnx=args.onnx, components=opened.components)
    print(f"exported trial #{result.trial} of study '{study.study_name}' to {result.directory}: {', '.join(result.files)}")
    if result.onnx_error:
        print(f"iasf-search: warning: no model.onnx: {result.onnx_error}", file=sys.stderr)
    print(f"use it: iasf_search.load_model({str(result.directory)!r}); retrain: iasf-search train --arch {result.directory / 'arch.json'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    storage, opened = _open_study(args)
    study = opened.study
    folder = _artifact_dir(args, storage)
    # an explicit --artifacts must exist; without one, a study searched with no artifacts still gets its report
    store = open_artifact_store(folder, create=False) if args.artifacts or folder.is_dir() else None
    from iasf_search.results.report import write_report  # matplotlib's pyplot: imported only for reports

    index = write_report(study, args.out, store=store, components=opened.components, storage_url=storage)
    print(f"report of study '{study.study_name}' written to {index} (figures as PNG files beside it)")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """Print each measurement's Spearman rho with validation accuracy and its bootstrap interval; write them with --out."""
    _, opened = _open_study(args)
    study = opened.study
    from iasf_search.results.analysis import analyze, text_table, write_correlations  # matplotlib and scipy: only here
    from iasf_search.results.folders import output_folder

    analysis = analyze(study)
    if analysis.shortfall:
        raise BadInput(analysis.shortfall)
    print(f"study '{analysis.study}': {analysis.trials} complete trials with a validation accuracy; Spearman rank correlation "
          f"with it, 95% bootstrap interval")
    print(text_table(analysis) if analysis.rows else "no recorded measurement varies over enough trials")
    if analysis.skipped:
        print("skipped: " + ", ".join(f"{s.name} ({s.reason})" for s in analysis.skipped))
    if args.out is not None:
        files = write_correlations(analysis, output_folder(args.out))
        print(f"written to {files[0].parent}: {', '.join(f.name for f in files)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    r = retrain(args.arch, space_path=args.space, epochs=args.epochs, device=args.device, seed=args.seed, out=args.out,
                plugins=args.plugin)
    search = f" (in the search: {r.search_test_accuracy:.4f})" if r.search_test_accuracy is not None else ""
    print(f"retrained {r.params:,} parameters for {r.epochs} epochs on train + validation ({r.train_samples} samples) "
          f"in {r.seconds:.1f} s")
    print(f"test accuracy {r.test_accuracy:.4f}{search}, test loss {r.test_loss:.4f}; saved to {r.out}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Time micro-benchmarks on the device, fit a hardware profile, write it, print its figures."""
    from iasf_search.hardware.calibration import calibrate
    from iasf_search.hardware.profiles import describe_profile, load_profile, write_profile
    from iasf_search.train import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise BadInput(f"--device: {exc}") from None
    out = Path(args.out)
    if out.is_dir():
        raise BadInput(f"--out {out}: is a folder; give the path of the YAML file to write")
    if args.threads is not None:
        if args.threads < 1:
            raise BadInput(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    print(f"calibrating {device}" + (f" with {torch.get_num_threads()} threads" if device.type == "cpu" else "") + " ...")
    profile = calibrate(device, name=args.name, quick=args.quick)
    try:
        write_profile(profile, out)
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot write the profile: {exc}") from None
    load_profile(out)  # what was written reads back
    print("\n".join(f"  {line}" for line in describe_profile(profile)))
    print(f"profile '{profile.name}' written to {out}; use it: costs: {{predicted_latency_ms: {{target: {out}}}}}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """Print each plugin, its source (built-in, entry point, --plugin, space file) and its contributions."""
    if args.space is not None:
        components = _load(args).components
    else:
        components = load_components(plugins_to_load(args.plugin))
    for name, contributed in contributions(components).items():
        print(f"{name} ({components.sources.get(name, 'registered at run time')})")
        for kind, items in contributed.items():
            print(f"  {kind + 's' if kind != 'hooks' else kind}: {', '.join(items)}")
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # through tqdm, so that a warning during a search lands above the progress bar, not inside it
    tqdm.write(f"iasf-search: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    typed = list(argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "search")
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"iasf-search: error: {exc}", file=sys.stderr)
        return 2
    args.argv = typed  # as typed, for the study's record of commands
    if args.command is None:
        parser.print_help()
        return 2
    # Optuna logs every failed trial with a traceback at WARNING; the progress lines already say why.
    optuna.logging.set_verbosity(optuna.logging.WARNING if args.debug else optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    json_log = getattr(args, "log_format", "text") == "json"

    def json_error(kind: str, message: str) -> None:
        if json_log:
            write_event(sys.stdout, error_event(kind, message))

    try:
        if getattr(args, "storage", None):
            args.storage = storage_from_env(args.storage)
        return args.func(args)
    except BadInput as exc:
        print(f"iasf-search: error: {one_line(str(exc))}", file=sys.stderr)
        json_error("bad_input", str(exc))
        return 2
    except SearchFailed as exc:
        print(f"iasf-search: error: {one_line(str(exc))}", file=sys.stderr)
        json_error(exc.kind, str(exc))
        return 1
    except BrokenPipeError:  # the reader went away (`iasf-search best | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as stop:
        message = f"{interrupts.reason(stop)}: finished trials are kept; run the same command to resume"
        print(f"\n{message}", file=sys.stderr)
        json_error(interrupts.reason(stop), message)
        return interrupts.exit_status(stop)
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"iasf-search: unexpected error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                  file=sys.stderr)
        json_error("unexpected", f"{type(exc).__name__}: {exc}")
        return 1
