"""Every private PyTorch name iasf-search relies on, in one place.

PyTorch may rename or remove underscore-prefixed modules in any release. Code elsewhere imports
them from here, so an upgrade that breaks one breaks it here, and ``tests/test_torch_internals.py``
names what disappeared and in which torch version. Each entry says the public API that is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The type of one overload of an aten op (torch.ops.aten.addmm.default), as a dispatch mode
# receives it. No public alias exists (torch.ops.OpOverload is a lazily created op namespace).
from torch._ops import OpOverload

# Dispatch-level interception of every aten op a forward pass runs (kernel tracing,
# iasf_search.hardware.kernels). No public API: torch.utils.flop_counter.FlopCounterMode is
# built on this class but only reports FLOPs, not each op's arguments and outputs.
from torch.utils._python_dispatch import TorchDispatchMode

# Flattening nested args/kwargs/outputs of an op to its tensors. torch has no public pytree
# module in the supported versions (torch.utils.pytree is not there yet).
from torch.utils._pytree import tree_flatten

if TYPE_CHECKING:
    from torch.distributed._tools.mem_tracker import MemTracker

__all__ = ["OpOverload", "TorchDispatchMode", "mem_tracker_class", "tree_flatten"]

PRIVATE_NAMES = {
    "OpOverload": "torch._ops.OpOverload",
    "TorchDispatchMode": "torch.utils._python_dispatch.TorchDispatchMode",
    "tree_flatten": "torch.utils._pytree.tree_flatten",
    "MemTracker": "torch.distributed._tools.mem_tracker.MemTracker",
}
"""Name here -> the private torch path it comes from (for messages and the upgrade test)."""


def mem_tracker_class() -> type[MemTracker]:
    """``torch.distributed._tools.mem_tracker.MemTracker``, imported on first use (importing it takes seconds).

    Peak bytes of live tensor storages during a step, by kind (parameters, gradients, activations,
    optimizer state), on any device. No public API: ``torch.cuda.max_memory_allocated`` covers
    CUDA only, and ``torch.profiler``'s memory profile needs a profiled run and gives no peak by kind.

    :raises ImportError: a torch build without ``torch.distributed``, or a torch that moved the class.
    """
    from torch.distributed._tools.mem_tracker import MemTracker

    return MemTracker
