"""StopRequest's signals, without training (the trainer's use of them: tests/training/test_resume_steps.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from trainers.runtime.preemption import StopRequest


@pytest.fixture
def sigterm_restored() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def test_sigterm_that_would_end_the_process_is_left_alone(sigterm_restored: None) -> None:
    """Outside a job that ignores it (a local run, a debug run), SIGTERM still kills: not taken over."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stop = StopRequest()
    stop.install()
    try:
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_asks_one_save_without_a_stop_and_keeps_the_old_handler(sigterm_restored: None) -> None:
    calls: list[int] = []

    def old(signum: int, frame: object) -> None:
        calls.append(signum)

    signal.signal(signal.SIGTERM, old)
    stop = StopRequest(checkpoint_every_min=None)
    stop.install()
    try:
        assert stop.poll(0, 1) == (False, False)
        os.kill(os.getpid(), signal.SIGTERM)
        assert calls == [signal.SIGTERM]
        assert stop.poll(0, 2) == (True, False)
        assert stop.why().startswith("on SIGTERM")
        stop.saved()
        assert stop.poll(0, 3) == (False, False), "one signal, one save"
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGTERM) is old


def test_ignored_sigterm_is_taken_over_and_given_back(sigterm_restored: None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop = StopRequest()
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.poll(2, 0) == (True, False)
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_usr2_still_stops(sigterm_restored: None) -> None:
    before = signal.getsignal(signal.SIGUSR2)
    stop = StopRequest()
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert stop.poll(0, 1) == (True, True)
        assert stop.why() == "on SIGUSR2"
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGUSR2) == before
