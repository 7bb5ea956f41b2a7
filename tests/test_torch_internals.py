"""The private PyTorch names iasf-search uses: still there, still what the code expects, and imported nowhere else.

When a torch upgrade removes or moves one of them, these tests fail first, naming the private path and
the torch version; fix :mod:`iasf_search.torch_internals` (and only it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import resolve_private

from iasf_search import torch_internals
from iasf_search.torch_internals import PRIVATE_NAMES, OpOverload, TorchDispatchMode, mem_tracker_class, tree_flatten

ROOT = Path(__file__).resolve().parent.parent


def resolve(path: str) -> object:
    return resolve_private(path, "torch", torch.__version__, "iasf_search/torch_internals.py")


@pytest.mark.parametrize("name", sorted(PRIVATE_NAMES))
def test_private_name_still_exists_in_this_torch(name):
    found = resolve(PRIVATE_NAMES[name])
    ours = mem_tracker_class() if name == "MemTracker" else getattr(torch_internals, name)
    assert ours is found, f"torch_internals.{name} is not {PRIVATE_NAMES[name]} (torch {torch.__version__})"


def test_dispatch_mode_sees_each_aten_op_as_an_op_overload():
    """What kernel tracing relies on: a TorchDispatchMode subclass gets every op as an OpOverload with
    ``overloadpacket``, ``is_view`` and ``decompose``, and the op's result goes back to the caller."""
    seen = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    a, b = torch.ones(2, 3), torch.ones(3, 4)
    with Recorder():
        out = torch.mm(a, b).t()
    assert torch.equal(out, torch.full((4, 2), 3.0))
    assert seen[0] is torch.ops.aten.mm.default and seen[1] is torch.ops.aten.t.default
    assert all(isinstance(f, OpOverload) for f in seen), f"dispatched ops are not {PRIVATE_NAMES['OpOverload']} (torch {torch.__version__})"
    assert seen[0].overloadpacket is torch.ops.aten.mm and seen[1].is_view and not seen[0].is_view
    assert callable(seen[0].decompose)


def test_tree_flatten_returns_the_leaves_in_order():
    x, y = torch.zeros(1), torch.ones(2)
    leaves, _spec = tree_flatten(((x, 3), {"k": [y, None]}))
    assert leaves[0] is x and leaves[1] == 3 and leaves[2] is y and leaves[3] is None and len(leaves) == 4


def test_mem_tracker_has_what_the_peak_memory_cost_calls():
    tracker_class = mem_tracker_class()
    missing = [m for m in ("track_external", "get_tracker_snapshot", "__enter__", "__exit__") if not hasattr(tracker_class, m)]
    assert not missing, f"{PRIVATE_NAMES['MemTracker']} of torch {torch.__version__} lacks {missing}"


def test_mem_tracker_is_imported_only_when_used():
    """Importing it takes seconds: loading the built-in plugins must not."""
    code = ("import sys; from iasf_search.plugin_manager import load_components; load_components(autoload=False); "
            "print('torch.distributed._tools.mem_tracker' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False"


PRIVATE_IMPORT = re.compile(r"\btorch(\.\w+)*\._[a-z]\w*")
"""A dotted torch path with an underscore-prefixed part: ``torch._ops``, ``torch.utils._pytree``, ..."""


def test_private_torch_names_are_used_only_through_torch_internals():
    offenders = []
    for folder in ("iasf_search", "plugins", "iasf"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "torch_internals.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if PRIVATE_IMPORT.search(code) and "``" not in code:  # ``torch._x`` in a docstring names it
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "import these through iasf_search/torch_internals.py:\n" + "\n".join(offenders)
