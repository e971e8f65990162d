"""A deadline for tests of reads that could block forever (a FIFO opened for reading waits for a
writer): the test fails with `Hung` instead of hanging the suite."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Hung(BaseException):
    """Not an OSError (TimeoutError is one): no `except OSError` in the code under test swallows it."""


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Raise Hung in the main thread if the block runs past `seconds` (SIGALRM)."""

    def stop(signum: int, frame: object) -> None:
        raise Hung(f"still running after {seconds} s: a read blocked?")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
