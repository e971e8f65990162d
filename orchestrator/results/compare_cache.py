"""`<output>/.collect-comparisons.json`: each comparison's interval and p-value, remembered by the
exact values compared, so a second `collect` computes again only the deltas whose cells changed.

From stats.BOOTSTRAP_MIN_SEEDS seeds a delta's interval is a BCa bootstrap: at 1,667 seeds a cell,
2,000 resamples draw 3.3 million indices, about 0.04 s for every delta of every table, every
collect, though a few finished runs change only their own cells' deltas.

An entry is keyed by a digest of the two cells' (seed, value) pairs in order (what stats.compare's
memo is keyed by) and holds the Comparison's fields. The file is tied to the source of the
statistics (stats, resample): under other rules, everything is computed again. It keeps only the
entries the last collect used. A file that cannot be read or written only makes collect slower;
it is trusted as the folder's other files are (whoever can edit it can edit metrics.json).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, cast

from orchestrator.results import resample, stats
from orchestrator.sweep import bounded
from trainers import rundir

FILE = ".collect-comparisons.json"
_Key = tuple[stats.Items, stats.Items]
_ACTIVE: ContextVar[ComparisonCache | None] = ContextVar("comparison_cache", default=None)


@functools.lru_cache(maxsize=1)
def rules_version() -> str:
    """The cache's validity: the source of the statistics that computed its entries."""
    source = b"".join(Path(module.__file__ or "").read_bytes() for module in (stats, resample))
    return hashlib.sha256(source).hexdigest()[:16]


class ComparisonCache:
    """The remembered comparisons of one sweep folder, and those used since it was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved = _load(path)
        self.used: dict[str, list[Any]] = {}

    def save(self) -> None:
        """Keep the entries used this time when they differ from the file's (atomically; a read-only
        folder is left as it is)."""
        if self.used.keys() != self.saved.keys():
            data = {"version": rules_version(), "entries": self.used}
            with contextlib.suppress(OSError):
                rundir.write_text(self.path, json.dumps(data, separators=(",", ":")))


class RememberedMemo(stats.Memo):
    """stats.compare's memo that also answers from, and records into, a ComparisonCache."""

    def __init__(self, cache: ComparisonCache) -> None:
        super().__init__()
        self.cache = cache

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        digest = _digest(key)
        comparison = _comparison(self.cache.saved.get(digest))
        if comparison is None:
            return False
        super().__setitem__(cast(_Key, key), comparison)  # dict's: it is no new computation
        self.cache.used[digest] = self.cache.saved[digest]
        return True

    def __setitem__(self, key: _Key, comparison: stats.Comparison) -> None:
        super().__setitem__(key, comparison)
        self.cache.used[_digest(key)] = _entry(comparison)


def memo() -> stats.Memo:
    """A memo for one table's comparisons: remembered across collects inside `remembered`, else plain."""
    cache = _ACTIVE.get()
    return {} if cache is None else RememberedMemo(cache)


@contextlib.contextmanager
def remembered(root: Path) -> Iterator[None]:
    """Tables built inside reuse and record the comparisons of `root`'s cache file (saved at the end)."""
    cache = ComparisonCache(root / FILE)
    token = _ACTIVE.set(cache)
    try:
        yield
        cache.save()
    finally:
        _ACTIVE.reset(token)


def _digest(key: object) -> str:
    return hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()


def _entry(c: stats.Comparison) -> list[Any]:
    return [c.delta, c.n, c.paired, c.low, c.high, c.p, c.spread, c.left_out]


def _comparison(entry: Any) -> stats.Comparison | None:
    """The Comparison an entry holds; None for anything that is not exactly one."""
    if not (isinstance(entry, list) and len(entry) == 8):
        return None
    delta, n, paired, *optional, left_out = entry
    numbers_fine = all(value is None or type(value) is float for value in optional)
    if not (type(delta) is float and type(n) is int and type(paired) is bool and numbers_fine):
        return None
    if type(left_out) is not int or n < 0 or left_out < 0:
        return None
    if not all(value is None or math.isfinite(value) for value in optional):
        return None
    low, high, p, spread = optional
    return stats.Comparison(delta, n, paired, low, high, p, spread, left_out)


def _load(path: Path) -> dict[str, Any]:
    """The entries of the cache file; empty when absent, unreadable or written under other rules."""
    return bounded.cache_entries(path, rules_version())
