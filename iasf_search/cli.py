"""Command line: argument parsing, output and exit codes (0 done, 1 unexpected error, 2 bad input, 130 interrupted)."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from collections.abc import Sequence

import optuna

from iasf_search import __version__
from iasf_search.errors import BadInput
from iasf_search.graph import INPUT, OUTPUT, hidden_nodes, inputs_of
from iasf_search.plugin_manager import contributions, load_components
from iasf_search.progress import ConsoleProgress
from iasf_search.space import SearchSpace, load_space
from iasf_search.study import (
    SearchResult,
    best_trials,
    default_storage_url,
    finished_trials,
    load_results,
    run_search,
    safe_url,
    trial_architecture,
)

COMMANDS = ("search", "best", "plugins")


def _common(parser: argparse.ArgumentParser, *, space_required: bool) -> None:
    parser.add_argument("--space", required=space_required, metavar="PATH", help="search-space YAML file")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: sqlite:///runs/<space name>.db)")
    parser.add_argument("--study", metavar="NAME", help="study name (default: the space's name)")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="load a plugin module (repeatable)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iasf-search",
        description="Search attention architecture graphs with Optuna and PyTorch. "
                    "`iasf-search --space FILE` is short for `iasf-search search --space FILE`.")
    parser.add_argument("--version", action="version", version=f"iasf-search {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    search = sub.add_parser("search", help="run or resume a search (the default command)")
    _common(search, space_required=True)
    search.add_argument("--trials", type=int, metavar="N", help="run until the study holds N finished trials")
    search.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long")
    search.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    search.add_argument("--seed", type=int, help="sampler and training seed (default: search.seed)")
    search.add_argument("-q", "--quiet", action="store_true", help="no per-trial lines, only the summary")
    search.set_defaults(func=cmd_search)
    best = sub.add_parser("best", help="print the best trial (or Pareto set) and its architecture")
    _common(best, space_required=False)
    best.set_defaults(func=cmd_best)
    plugins = sub.add_parser("plugins", help="list the loaded plugins, where each came from and what it contributes")
    _common(plugins, space_required=False)
    plugins.set_defaults(func=cmd_plugins)
    return parser


def _load(args: argparse.Namespace) -> SearchSpace:
    return load_space(args.space, plugins=args.plugin)


def cmd_search(args: argparse.Namespace) -> int:
    if args.trials is not None and args.trials < 1:
        raise BadInput(f"--trials must be at least 1, got {args.trials}")
    if args.timeout is not None and args.timeout <= 0:
        raise BadInput(f"--timeout must be positive, got {args.timeout}")
    space = _load(args)
    if not args.quiet:
        space.components.pm.register(ConsoleProgress(), name="console-progress")
    result = run_search(space, trials=args.trials, timeout=args.timeout, storage=args.storage,
                        study_name=args.study, device=args.device, seed=args.seed)
    print_summary(result)
    return 0


def print_summary(result: SearchResult) -> None:
    study = result.study
    finished = len(finished_trials(study))
    print()
    best = result.best
    if not best:
        print("no trial completed yet")
    for t in best[:1] if len(study.directions) == 1 else []:
        _print_trial(t, heading="best trial")
    if len(study.directions) > 1:
        _print_pareto(study, best)
    print(f"study '{study.study_name}': {finished}/{result.target} finished trials, "
          f"{result.new_trials} run now in {result.seconds:.0f} s; storage {safe_url(result.storage_url)}")
    print(f"open it: {result.dashboard_command}")


def _print_trial(t: optuna.trial.FrozenTrial, heading: str) -> None:
    a = t.user_attrs
    reused = f" (result reused from #{a['reused_from']})" if "reused_from" in a else ""
    print(f"{heading} #{t.number}: validation accuracy {a.get('val_accuracy', float('nan')):.4f}, "
          f"test accuracy {a.get('test_accuracy', float('nan')):.4f}, {a.get('params', 0):,} parameters, "
          f"trained {a.get('train_seconds', 0):.1f} s{reused}")
    print(f"  architecture {a.get('arch_hash', '?')}: {a.get('summary', '')}")
    if "architecture" in a:
        graph = trial_architecture(t)
        rows = [(INPUT, graph.nodes[INPUT]["op"], graph.nodes[INPUT]["config"], [])]
        rows += [(n, graph.nodes[n]["op"], graph.nodes[n]["config"], inputs_of(graph, n)) for n in hidden_nodes(graph)]
        rows.append((OUTPUT, "head", {}, inputs_of(graph, OUTPUT)))
        for name, op, config, ins in rows:
            node = graph.nodes[name]
            fusion = f" fused by {node['fusion']}" if node.get("fusion") else ""
            src = f"  <- {', '.join(ins)}{fusion}" if ins else ""
            print(f"    {name:<7}{op:<10}{json.dumps(config, sort_keys=True):<48}{src}")
    print(f"  training: {json.dumps(a.get('train_config', {}), sort_keys=True)}")


def _print_pareto(study: optuna.Study, best: list[optuna.trial.FrozenTrial]) -> None:
    space = study.user_attrs.get("space", {})
    names = [o["metric"] for o in space.get("objectives", [])] or [f"objective {i}" for i in range(len(study.directions))]
    print(f"Pareto set ({len(best)} trials):")
    print("  trial  " + "  ".join(f"{n:>12}" for n in names) + "  test acc  architecture")
    for t in best:
        vals = "  ".join(f"{v:>12.4g}" for v in t.values)
        print(f"  #{t.number:<5} {vals}  {t.user_attrs.get('test_accuracy', float('nan')):8.4f}  {t.user_attrs.get('summary', '')}")


def cmd_best(args: argparse.Namespace) -> int:
    if args.space is None and not (args.storage and args.study):
        raise BadInput("best needs --space PATH, or both --storage URL and --study NAME")
    name = args.study
    storage = args.storage
    if args.space is not None:
        space = _load(args)
        name = name or space.name
        storage = storage or default_storage_url(space.name)
    study = load_results(storage, name)
    best = best_trials(study)
    if not best:
        raise BadInput(f"study '{name}' has no completed trial yet; run the search first")
    if len(study.directions) == 1:
        _print_trial(best[0], heading="best trial")
    else:
        _print_pareto(study, best)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """Print each plugin, its source (built-in, entry point, --plugin, space file) and its contributions."""
    if args.space is not None:
        components = _load(args).components
    else:
        components = load_components([(m, "--plugin") for m in args.plugin])
    for name, contributed in contributions(components).items():
        print(f"{name} ({components.sources.get(name, 'registered at run time')})")
        for kind, items in contributed.items():
            print(f"  {kind + 's' if kind != 'hooks' else kind}: {', '.join(items)}")
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"iasf-search: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "search")
    parser = make_parser()
    args = parser.parse_args(argv)
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
    try:
        return args.func(args)
    except BadInput as exc:
        print(f"iasf-search: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are kept; run the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"iasf-search: unexpected error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                  file=sys.stderr)
        return 1
