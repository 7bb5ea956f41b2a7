"""Stopping a search cleanly on Ctrl-C (SIGINT) and on SIGTERM (``kill``, Slurm, Kubernetes).

Both signals become a :class:`KeyboardInterrupt` in the search loop: the running trial is failed
with reason ``interrupted`` (SIGINT) or ``terminated`` (SIGTERM), finished trials are kept, and the
command exits with status 130 or 143 (128 + the signal number, as shells report it). The same
command then resumes the study.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

INTERRUPTED_STATUS = 128 + signal.SIGINT  # 130
TERMINATED_STATUS = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C, but reported as ``terminated`` with exit status 143."""


def exit_status(exc: KeyboardInterrupt) -> int:
    """The exit status for a stop by ``exc``: 143 for SIGTERM, 130 for Ctrl-C."""
    return TERMINATED_STATUS if isinstance(exc, Terminated) else INTERRUPTED_STATUS


def reason(exc: KeyboardInterrupt) -> str:
    """The ``failure_reason`` of a trial stopped by ``exc``: ``terminated`` or ``interrupted``."""
    return "terminated" if isinstance(exc, Terminated) else "interrupted"


@contextlib.contextmanager
def stop_signals(*, sigint: bool = False) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (once: a repeated
    signal while the trial is being recorded is ignored, so the record is not cut short).

    :param sigint: also take over SIGINT the same way (raise :class:`KeyboardInterrupt` once), even
        when this process inherited SIGINT ignored, as the background jobs of a non-interactive
        shell do. Worker processes use it: their parent relays the signal to them explicitly.

    Outside the main thread (where Python cannot handle signals) the block runs unchanged. The
    previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if raised:
            return
        raised = True
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    taken = [signal.SIGTERM, *([signal.SIGINT] if sigint else [])]
    previous = {signum: signal.signal(signum, handler) for signum in taken}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
