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


class _Stop:
    """The state of the active :func:`stop_signals` block: whether its signal came, and where it may raise."""

    def __init__(self) -> None:
        self.raised = False
        self.arrived: KeyboardInterrupt | None = None
        """The stop that came, kept after it was raised: code that catches ``BaseException`` may swallow it."""
        self.pending: KeyboardInterrupt | None = None
        self.modes: list[bool] = []  # innermost last: True raises at once, False defers (see deferred())

    def arrive(self, stop: KeyboardInterrupt) -> None:
        if self.raised:  # a repeat while the trial is being recorded: ignored
            return
        self.raised, self.arrived = True, stop
        if self.modes and not self.modes[-1]:
            self.pending = stop
            return
        raise stop

    def raise_pending(self) -> None:
        stop, self.pending = self.pending, None
        if stop is not None:
            raise stop


_active: list[_Stop] = []


@contextlib.contextmanager
def _mode(immediate: bool) -> Iterator[None]:
    stop = _active[-1] if _active else None
    if stop is None:
        yield
        return
    if immediate:
        stop.raise_pending()
    stop.modes.append(immediate)
    try:
        yield
    finally:
        stop.modes.pop()
    stop.raise_pending()  # leaving a deferring section: the stop that waited raises now


def deferred() -> contextlib.AbstractContextManager[None]:
    """Within: a stop signal waits until the block ends (then raises), so that Optuna's recording of
    a trial is never cut short and leaves no trial RUNNING. The search wraps ``study.optimize`` in it."""
    return _mode(False)


def interruptible() -> contextlib.AbstractContextManager[None]:
    """Within (inside a :func:`deferred` block): a stop signal raises at once, as training should stop
    at once. A signal that waited raises on entry. The trial objective wraps its work in it."""
    return _mode(True)


def arrived() -> KeyboardInterrupt | None:
    """The stop the active :func:`stop_signals` block received, if one came (raised or waiting).

    A stop is raised once, wherever the main thread is; library code that catches ``BaseException``
    (a lazy import torch runs inside the first FLOP count, say) can swallow it and fail later with an
    ordinary exception. The search asks here after such a failure, so that the stop still ends it.
    """
    return _active[-1].arrived if _active else None


def raise_swallowed() -> None:
    """Raise the stop that :func:`arrived` knows of, if one came: a stop swallowed without a failure (a catch-all
    in the cost measurement, say) would otherwise let the trial train to its end. The trial objective calls
    it before training and after every epoch, so such a stop still ends training within one epoch."""
    stop = arrived()
    if stop is not None:
        raise stop


@contextlib.contextmanager
def stop_signals(*, sigint: bool = False) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread, once (a repeated
    signal while the trial is being recorded is ignored, so the record is not cut short); inside a
    :func:`deferred` section it raises when the section ends.

    :param sigint: also take over SIGINT the same way (raise :class:`KeyboardInterrupt` once), even
        when this process inherited SIGINT ignored, as the background jobs of a non-interactive
        shell do. Worker processes use it: their parent relays the signal to them explicitly.

    Outside the main thread (where Python cannot handle signals) the block runs unchanged. The
    previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stop = _Stop()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.arrive(Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())

    taken = [signal.SIGTERM, *([signal.SIGINT] if sigint else [])]
    previous = {signum: signal.signal(signum, handler) for signum in taken}
    _active.append(stop)
    try:
        yield
    finally:
        _active.remove(stop)
        for signum, old in previous.items():
            signal.signal(signum, old)
