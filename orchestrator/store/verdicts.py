"""`<output>/.result-verdicts.json`: whether each completed run's metrics.json counts as its result,
remembered by the file's stat, so `status` (and `submit`, through run_states.inspect) parse a
finished run's metrics.json once rather than on every call: at 10,000 runs that parse and check
was about half of `status`.

An entry is [run ids it was checked for, [mtime ns, size, inode, ctime ns, checked at ns], the
problem or None]. It holds while the file's stat is the one recorded and the file had not changed
within RACY_NS of the check (a same-size rewrite within one tick of the file system's clock keeps
its mtime; any write moves the ctime, which no one can set back, and a replaced file has another
inode). The cache is tied to the rules' source (the contract, this module, bounded reads): other
rules, all read again. A cache that cannot be read or written only makes the next call slower.
It decides only what `status` and `submit` count as done; `collect` reads metrics.json itself, so
a hand-edited verdict cannot put a number in a table (it would only skip a rerun, as an edited
metrics.json could).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.sweep import bounded
from trainers import contract, rundir

FILE = ".result-verdicts.json"
Fresh = tuple[list[int] | None, str | None]
"""A verdict just checked: the stat key of the file checked (None: no regular file) and its problem."""
RULE_MODULES = ("run_states", "status_reads")
"""The modules beside this one that decide which verdicts are asked and given (in the cache's version)."""
RACY_NS = 2_000_000_000
"""A verdict given less than this after the file's last change is not trusted next time."""


@functools.lru_cache(maxsize=1)
def rules_version() -> str:
    """The cache's validity: the source of the rules that gave its verdicts."""
    here = Path(__file__)
    rules = (here, Path(contract.__file__), Path(bounded.__file__), *(here.with_name(f"{n}.py") for n in RULE_MODULES))
    return hashlib.sha256(b"".join(path.read_bytes() for path in rules)).hexdigest()[:16]


class Verdicts:
    """The remembered verdicts of one sweep folder: `get` answers from them or asks `check`."""

    def __init__(self, root: Path) -> None:
        self.path = root / FILE
        self.entries = _load(self.path)
        self.changed = False

    def get(self, folder: Path, run_ids: tuple[str, ...], check: Callable[[], str | None]) -> str | None:
        """The problem of `folder`'s metrics.json for these run ids (None: it counts), remembered."""
        key = _stat_key(folder / rundir.METRICS)
        if self._holds(folder.name, run_ids, key):
            return self.entries[folder.name][2]  # type: ignore[no-any-return]
        now = time.time_ns()
        return self.put(folder, run_ids, (key, check()), now)

    def ahead(self, folder: Path, run_ids: tuple[str, ...], check: Callable[[], str | None]) -> Fresh | None:
        """`get` done in a worker (store.status_reads) up to recording: None when the remembered
        verdict holds (`held` answers it), else the verdict checked, which `put` records."""
        key = _stat_key(folder / rundir.METRICS)
        if self._holds(folder.name, run_ids, key):
            return None
        return key, check()

    def held(self, name: str) -> str | None:
        """The remembered problem of run folder `name`, once `ahead` found that it holds."""
        return self.entries[name][2]  # type: ignore[no-any-return]

    def put(self, folder: Path, run_ids: tuple[str, ...], fresh: Fresh, checked_at: int) -> str | None:
        """Remember a verdict checked no earlier than `checked_at` (ns) on the file `fresh` stats."""
        key, problem = fresh
        if key is not None:
            self.entries[folder.name] = [list(run_ids), [*key, checked_at], problem]
            self.changed = True
        return problem

    def _holds(self, name: str, run_ids: tuple[str, ...], key: list[int] | None) -> bool:
        entry = self.entries.get(name)
        if key is None or not (isinstance(entry, list) and len(entry) == 3 and entry[0] == list(run_ids)):
            return False
        return _holds(entry[1], key) and (entry[2] is None or isinstance(entry[2], str))

    def save(self) -> None:
        """Write the verdicts when any changed (atomically; a read-only folder is left as it is)."""
        if self.changed:
            data = {"version": rules_version(), "entries": self.entries}
            with contextlib.suppress(OSError):
                rundir.write_text(self.path, json.dumps(data, separators=(",", ":")))


def _stat_key(path: Path) -> list[int] | None:
    """[mtime ns, size, inode, ctime ns] of a regular file, None for anything else."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return [info.st_mtime_ns, info.st_size, info.st_ino, info.st_ctime_ns]


def _holds(recorded: Any, key: list[int]) -> bool:
    """A recorded [mtime, size, inode, ctime, checked at] that still describes the file `key` stats."""
    if not (isinstance(recorded, list) and len(recorded) == 5 and all(type(v) is int for v in recorded)):
        return False
    return recorded[:4] == key and recorded[4] - key[3] >= RACY_NS


def _load(path: Path) -> dict[str, Any]:
    """The entries of the cache file; empty when absent, unreadable or written under other rules."""
    return bounded.cache_entries(path, rules_version())
