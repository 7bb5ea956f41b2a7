"""Stopping on SIGTERM and Ctrl-C (iasf_search.search.interrupts), in this process: the exception each signal
becomes, once only, the exit status and trial reason it maps to, and the handlers put back afterwards."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from iasf_search.search.interrupts import (
    INTERRUPTED_STATUS,
    TERMINATED_STATUS,
    Terminated,
    arrived,
    deferred,
    exit_status,
    interruptible,
    raise_swallowed,
    reason,
    stop_signals,
)


def send(signum: int) -> None:
    """Send ``signum`` to this process and give Python the moment it needs to run the handler."""
    assert signal.getsignal(signum) not in (signal.SIG_DFL, signal.SIG_IGN, None), "no handler: the signal would end the tests"
    os.kill(os.getpid(), signum)
    for _ in range(100):
        time.sleep(0.01)


def test_exit_status_and_reason():
    assert (INTERRUPTED_STATUS, TERMINATED_STATUS) == (130, 143)
    assert issubclass(Terminated, KeyboardInterrupt)
    assert exit_status(Terminated()) == 143 and reason(Terminated()) == "terminated"
    assert exit_status(KeyboardInterrupt()) == 130 and reason(KeyboardInterrupt()) == "interrupted"


def test_sigterm_raises_terminated_once_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    raised = []
    with stop_signals():
        assert signal.getsignal(signal.SIGTERM) is not before
        try:
            send(signal.SIGTERM)
        except Terminated as exc:
            raised.append(exc)
        send(signal.SIGTERM)  # a repeat while the trial is being recorded: ignored
        send(signal.SIGTERM)
    assert len(raised) == 1 and type(raised[0]) is Terminated
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_leaves_the_block_as_terminated():
    with pytest.raises(Terminated):
        with stop_signals():
            send(signal.SIGTERM)
            pytest.fail("the signal did not stop the block")


def test_sigint_is_taken_over_only_when_asked():
    before = signal.getsignal(signal.SIGINT)
    with stop_signals():
        assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt) as info:
        with stop_signals(sigint=True):
            assert signal.getsignal(signal.SIGINT) is not before
            send(signal.SIGINT)
    assert type(info.value) is KeyboardInterrupt  # Ctrl-C, not Terminated
    assert signal.getsignal(signal.SIGINT) is before


def test_sigint_inherited_ignored_is_taken_over_and_ignored_again_after():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a non-interactive shell starts background jobs
    try:
        raised = []
        with stop_signals(sigint=True):
            try:
                send(signal.SIGINT)
            except KeyboardInterrupt as exc:
                raised.append(exc)
            send(signal.SIGTERM)  # one stop per block, whichever signal came first
        assert len(raised) == 1
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_custom_previous_handler_is_put_back():
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with pytest.raises(Terminated), stop_signals():
            send(signal.SIGTERM)
        send(signal.SIGTERM)  # the custom handler again
        assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_the_block_runs_unchanged():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def work():
        with stop_signals(sigint=True):
            seen.append(signal.getsignal(signal.SIGTERM))
        seen.append("done")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [before, "done"]


def test_a_signal_in_a_deferred_section_waits_for_its_end():
    reached_end = False
    with pytest.raises(Terminated):
        with stop_signals(), deferred():
            send(signal.SIGTERM)  # Optuna is recording a trial: nothing may cut that short
            reached_end = True
    assert reached_end


def test_training_inside_a_deferred_section_stops_at_once():
    with pytest.raises(Terminated), stop_signals(), deferred(), interruptible():
        send(signal.SIGTERM)
        pytest.fail("the signal did not stop training")


def test_a_signal_that_waited_stops_the_next_trial_before_it_starts():
    started = []
    with pytest.raises(Terminated), stop_signals(), deferred():
        send(signal.SIGTERM)  # between trials
        with interruptible():
            started.append("trial")
    assert started == []


def test_without_stop_signals_the_sections_change_nothing():
    # no handler installed (the Python API): an interrupt raised inside a deferred section is not held back
    with pytest.raises(KeyboardInterrupt), deferred():
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt), deferred(), interruptible():
        raise KeyboardInterrupt


def test_a_stop_swallowed_by_other_code_is_still_known_until_the_block_ends():
    assert arrived() is None
    with stop_signals(), deferred(), interruptible():
        assert arrived() is None
        try:
            send(signal.SIGTERM)
        except BaseException:  # what a library's catch-all does
            pass
        assert isinstance(arrived(), Terminated)
    assert arrived() is None


def test_a_swallowed_stop_is_raised_again_where_training_checks_for_it():
    raise_swallowed()  # no block: nothing to raise
    with stop_signals(), deferred(), interruptible():
        raise_swallowed()  # no signal yet
        try:
            send(signal.SIGTERM)
        except BaseException:  # swallowed during the cost measurement, say
            pass
        with pytest.raises(Terminated):
            raise_swallowed()  # before training, or after the next epoch
