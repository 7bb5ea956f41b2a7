"""iasf-search: plugin-based, hardware-aware neural-architecture search on Optuna.

Python API (what the CLI does)::

    import iasf_search
    session = iasf_search.open_session("search_spaces/vision.yaml")  # the space and its loaded plugins
    result = iasf_search.run_search(session, trials=10)        # resumable
    best = iasf_search.best_trials(result.study)[0]
    graph = iasf_search.trial_architecture(best)                # networkx.DiGraph
    model = iasf_search.build_model(graph, session.components, sample_shape=(1, 8, 8), num_classes=10)
    model = iasf_search.load_model("exported/")                 # after `iasf-search export --out exported`
    iasf_search.save_series("mine.npz", x, y)                    # arrays (n, C, T) for task.options.path
    layer = iasf_search.IASF(768, 1024, num_heads=8, topological_level=3, arch=graph)  # (B, T, 768) -> same
"""

from iasf_search import moved
from iasf_search.hookspecs import hookimpl

__version__ = "0.1.0"
moved.install()

from iasf_search.build import build_model  # noqa: E402
from iasf_search.errors import BadInput, SearchFailed, SpaceError  # noqa: E402
from iasf_search.iasf_module import IASF  # noqa: E402
from iasf_search.results.access import best_trials, load_results, trial_architecture  # noqa: E402
from iasf_search.results.export import load_model  # noqa: E402
from iasf_search.search.study import SearchResult, run_search  # noqa: E402
from iasf_search.series import save_series  # noqa: E402
from iasf_search.session import Session, load_space, open_session  # noqa: E402
from iasf_search.space import SearchSpace  # noqa: E402

__all__ = [
    "BadInput",
    "IASF",
    "SearchFailed",
    "SearchResult",
    "SearchSpace",
    "Session",
    "SpaceError",
    "best_trials",
    "build_model",
    "hookimpl",
    "load_model",
    "load_results",
    "load_space",
    "open_session",
    "run_search",
    "save_series",
    "trial_architecture",
]
