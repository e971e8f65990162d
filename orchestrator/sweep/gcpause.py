"""The cyclic garbage collector paused while a command makes a sweep's worth of objects.

Planning, reading or inspecting 100,000 runs makes millions of acyclic objects (run specs, rows,
parsed JSON); the collector's passes over that growing heap were 45% of `status` at 100,000 runs
and half of loading collect's index. Reference counting frees them as always; only the search for
reference cycles waits until the block ends (then it runs as usual, on the next allocations).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_FREEZE_AT_END: list[bool] = [False]
"""Whether a paused block ends by freezing what it made (a process that exits after its command)."""


def freeze_at_end(on: bool = True) -> None:
    """Set the process's policy for the end of a paused block. Off (the default), the objects made
    inside are left to the collector, and the first allocation after the block starts a collection
    that walks all of them (0.3 s after planning 100,000 runs; once per outermost block). On, they
    are frozen instead (`gc.freeze`: never examined again, their reference cycles, if any, kept to
    the end of the process): for the `orchestrate` process only (cli/process.py), never for a
    library caller or a test session that goes on."""
    _FREEZE_AT_END[0] = on


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The collector off inside the block (as it was after: a nested pause leaves it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if _FREEZE_AT_END[0]:
                gc.freeze()
            gc.enable()


@contextlib.contextmanager
def resumed_gc() -> Iterator[None]:
    """The collector on inside the block (as it was after): work inside a paused block that makes
    cyclic garbage, such as the report's matplotlib figures (a figure and its canvas refer to each
    other: freed only by the collector)."""
    was_enabled = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        if not was_enabled:
            gc.disable()
