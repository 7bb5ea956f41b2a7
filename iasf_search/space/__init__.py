"""Search spaces: the space as plain data (:mod:`~iasf_search.space.spec`) and the parser that makes it from
a YAML document, checked against the loaded plugins (:mod:`~iasf_search.space.parser`).

``from iasf_search.space import SearchSpace, parse_space`` keeps working: the names of both are here.
"""

from iasf_search.space.parser import PRESCREEN_PARAMS, parse_space, plugin_modules, read_space_file
from iasf_search.space.spec import (
    DEFAULT_METRICS_BATCH,
    DEFAULT_NORMS,
    DEFAULT_READOUTS,
    METRICS,
    Constraint,
    Objective,
    SearchSettings,
    SearchSpace,
)

__all__ = [
    "DEFAULT_METRICS_BATCH",
    "DEFAULT_NORMS",
    "DEFAULT_READOUTS",
    "METRICS",
    "PRESCREEN_PARAMS",
    "Constraint",
    "Objective",
    "SearchSettings",
    "SearchSpace",
    "parse_space",
    "plugin_modules",
    "read_space_file",
]
