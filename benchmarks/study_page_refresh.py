"""Benchmark: what a refresh of the dashboard's study page costs on a 1,000-trial study.

Builds a SQLite study of ``--trials`` trials whose architectures and training settings are sampled from
``search_spaces/vision.yaml`` by the engine's own sampling (:func:`iasf_search.sampling.sample_trial`, random
sampler), recorded as a search records them (architecture, summary, costs, learning curve, representation
metrics); a quarter complete, the rest pruned after epoch 1, 3 or 9. Accuracy is made up (it rises with the
attention nodes), since only the page's cost is measured. Then, side by side on the same study:

* **first write**: :meth:`~iasf_search.results.dashboard_page.StudyPage.publish` with nothing cached (every
  architecture parsed): what ``iasf-search dashboard`` pays on an old study, and worker 0 at a resumed search's start;
* **refresh**: the same after 10 more trials, architectures of earlier trials kept: what the plugin pays between trials;
* **Optuna's importance**: ``optuna.importance.get_param_importances`` (fANOVA, Optuna's default) on the same study,
  what optuna-dashboard's own "Hyperparameter Importance" computes when its study page loads: the reference point;
* the bytes stored for the note and the plots.

With the plugin's defaults (at most one refresh per ``refresh_seconds`` = 60 s and per cost / ``max_share`` = 2%),
a refresh costs at most 2% of the search's time; the table gives what it costs in seconds.

    python benchmarks/study_page_refresh.py [--trials 1000] [--repeats 3] [--results PATH]

The summary line is appended to ``benchmarks/results/study_page_refresh.jsonl`` (or ``--results``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState
from workers_throughput import machine, revision

from iasf_search import open_session
from iasf_search.graph import hidden_nodes, to_json
from iasf_search.optuna_internals import storage_of
from iasf_search.results.access import stored_study
from iasf_search.results.dashboard_page import StudyPage
from iasf_search.results.records import (
    ARCH_HASH,
    ARCHITECTURE,
    COST_PREFIX,
    METRIC_PREFIX,
    PARAMS,
    PRUNED_AT_EPOCH,
    SUMMARY,
    TEST_ACCURACY,
    TRAIN_CONFIG,
    TRAIN_SECONDS,
    VAL_ACCURACY,
    VAL_LOSS,
    set_record,
)
from iasf_search.sampling import describe_graph, sample_trial

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "study_page_refresh.jsonl"
EPOCHS = 27


def add_trials(study: optuna.Study, session, count: int, rng: random.Random) -> None:
    """``count`` trials sampled from the session's space and recorded as a search records them (made-up accuracy)."""
    for _ in range(count):
        trial = study.ask()
        graph, train_config, _ = sample_trial(trial, session.space, session.components)
        attention = sum(graph.nodes[n]["op"] == "attention" for n in hidden_nodes(graph))
        final = min(0.99, 0.7 + 0.05 * attention + rng.uniform(-0.03, 0.03))
        set_record(trial, ARCHITECTURE, to_json(graph))
        set_record(trial, TRAIN_CONFIG, train_config)
        params = 4000 * len(hidden_nodes(graph)) + rng.randint(0, 2000)
        for key, value in ((SUMMARY, describe_graph(graph, session.components)), (ARCH_HASH, f"{rng.getrandbits(64):016x}"),
                           (PARAMS, params), (COST_PREFIX + "params", float(params)), (COST_PREFIX + "flops", 90.0 * params)):
            trial.set_user_attr(key, value)
        complete = rng.random() < 0.25
        last = EPOCHS if complete else rng.choice((1, 3, 9))
        for epoch in range(1, last + 1):
            trial.report(final * (1 - 0.5 ** epoch), epoch)
        trial.set_user_attr(VAL_ACCURACY, final * (1 - 0.5 ** last))
        if not complete:
            trial.set_user_attr(PRUNED_AT_EPOCH, last)
            study.tell(trial, state=TrialState.PRUNED)
            continue
        for key, value in ((VAL_LOSS, 1 - final), (TEST_ACCURACY, final - 0.01), (TRAIN_SECONDS, rng.uniform(5, 30)),
                           (METRIC_PREFIX + "effective_rank", rng.uniform(5, 20)), (METRIC_PREFIX + "oversmoothing", rng.random())):
            trial.set_user_attr(key, value)
        study.tell(trial, final)


def stored_bytes(study: optuna.Study) -> tuple[int, int]:
    """``(note characters, plot characters)`` the dashboard keeps in the study's system attributes."""
    storage = storage_of(study)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))
    note = sum(len(v) for k, v in attrs.items() if k.startswith("dashboard:note_str:"))
    plots = sum(len(v) for k, v in attrs.items() if k.startswith("dashboard:plot_data:"))
    return note, plots


def measure(trials: int, seed: int, folder: Path) -> dict:
    session = open_session(ROOT / "search_spaces" / "vision.yaml")
    url = f"sqlite:///{folder / f'page-{seed}.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, study_name="page", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    rng = random.Random(seed)
    add_trials(study, session, trials, rng)
    page = StudyPage()
    opened = stored_study(study, components=session.components)
    first = page.publish(opened)
    add_trials(study, session, 10, rng)
    refresh = page.publish(stored_study(study, components=session.components))
    start = time.perf_counter()
    optuna.importance.get_param_importances(study)
    importance = time.perf_counter() - start
    note, plots = stored_bytes(study)
    return {"seed": seed, "trials": len(study.trials), "first_s": round(first, 3), "refresh_s": round(refresh, 3),
            "optuna_importance_s": round(importance, 3), "note_chars": note, "plot_chars": plots}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSONL file the summary is appended to")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.repeats):
            row = measure(args.trials, seed, Path(folder))
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {"date": datetime.date.today().isoformat(), "machine": machine(), "revision": revision(), "trials": args.trials,
               "runs": rows, **{f"median_{k}": statistics.median(r[k] for r in rows)
                                for k in ("first_s", "refresh_s", "optuna_importance_s", "note_chars", "plot_chars")}}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a", encoding="utf-8") as f:
        f.write(json.dumps(summary) + "\n")
    print(f"median over {len(rows)}: first write {summary['median_first_s']:.2f} s, refresh {summary['median_refresh_s']:.2f} s, "
          f"Optuna's importance {summary['median_optuna_importance_s']:.2f} s; note {summary['median_note_chars']:,} chars, "
          f"plots {summary['median_plot_chars']:,} chars")


if __name__ == "__main__":
    main()
