"""What the warm process (cli/warm_server.py) computed before it forked this command's process: the
last sweep's plan and collect's index, each kept with what decides it, and used here, once, only
where that still holds. In any other process nothing is kept and nothing here costs anything.

A kept value is the one the same call would compute now, or it is not used: a plan is keyed by the
spec's every field (plan() is pure), an index by the digest of its files' bytes (read before and
after it was loaded: kept only when they did not change meanwhile). A command's process may change
the value it was handed (it is its own copy, forked); a second call in the same process computes
afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

MAX_KEPT_RUNS = 20_000
"""Plans and indexes of more runs are not kept: an idle warm process should stay small."""

_KEPT: dict[tuple[str, str], tuple[Any, Any]] = {}
"""(kind, key) -> (proof, value)."""
_KEEPING = [False]


def active() -> bool:
    """Whether anything is kept or being kept (else callers skip computing keys)."""
    return _KEEPING[0] or bool(_KEPT)


@contextlib.contextmanager
def keeping() -> Iterator[None]:
    """While the warm process reads ahead: every `keep` inside keeps its value (the earlier ones are
    dropped first: one sweep's worth at most)."""
    _KEPT.clear()
    _KEEPING[0] = True
    try:
        yield
    finally:
        _KEEPING[0] = False


def keep(kind: str, key: str, proof: Any, value: Any, runs: int) -> None:
    """Keep `value` for (kind, key) with its `proof`, inside `keeping()` and for at most MAX_KEPT_RUNS."""
    if _KEEPING[0] and proof is not None and runs <= MAX_KEPT_RUNS:
        _KEPT[(kind, key)] = (proof, value)


def recall(kind: str, key: str, proof: Any) -> Any | None:
    """The value kept for (kind, key) when its proof equals `proof` now, else None; forgotten here
    either way (used once)."""
    entry = _KEPT.pop((kind, key), None)
    if entry is None or proof is None or entry[0] != proof:
        return None
    return entry[1]


def file_proof(*paths: str) -> tuple[str | None, ...] | None:
    """Each file's content digest (blake2b of its bytes; None: absent): the exact proof, with no
    clock in it (a results folder on NFS has the server's). None when one cannot be read."""
    out: list[str | None] = []
    for path in paths:
        try:
            with open(path, "rb") as file:
                out.append(hashlib.file_digest(file, "blake2b").hexdigest())
        except FileNotFoundError:
            out.append(None)
        except OSError:
            return None
    return tuple(out)
