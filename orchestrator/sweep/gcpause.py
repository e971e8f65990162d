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


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The collector off inside the block (as it was after: a nested pause leaves it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
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
