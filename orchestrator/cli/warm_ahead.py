"""The warm process reads ahead: before it listens, it plans the sweep of the command that started
it and decodes that sweep's collect index file (orchestrator.sweep.warm_memo keeps both), so each
command on the sweep forked from it starts with them: 0.1 s of planning and 0.2 s of index at
10,000 runs. The plan holds while the spec does; the index file holds across collects (each one
rewrites only the small change file beside it, read by the command itself) until it is rewritten
whole, when a command decodes it as usual.

A guess, never a source of truth: a kept plan is used only for a spec equal in every field, a kept
index only while its file holds the same bytes (warm_memo), and anything that fails here leaves
nothing kept. It runs in the starting command's folder and environment.
"""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path

from orchestrator.sweep import gcpause, warm_memo

_VALUED = frozenset({"--max-runs", "--interval"})
"""Options of `collect` and `status` followed by a value."""


def read_ahead(argv: list[str], env: dict[str, str], here: int) -> None:
    """Plan the sweep `argv` named (and load its index, for `collect`) with `env` in folder `here`,
    keeping the results for the next fork; the warm process's folder and environment restored."""
    saved = dict(os.environ)
    try:
        with contextlib.suppress(BaseException):  # a guess that failed keeps nothing: the command reads
            os.fchdir(here)
            os.environ.clear()
            os.environ.update(env)
            with warm_memo.keeping(), gcpause.paused_gc():
                _ahead(argv)
    finally:
        os.chdir("/")
        os.environ.clear()
        os.environ.update(saved)
        gc.freeze()  # kept for every fork: never walked by their collections


def _ahead(argv: list[str]) -> None:
    from orchestrator.sweep.plan import plan

    target, overrides, smoke = _parsed(argv[1:])
    if target is None or smoke:
        return
    from orchestrator.results import collect, index_file

    # The same for `status SPEC` as for `collect SPEC|FOLDER`: a user's next command on the sweep
    # may be either.
    for spec, root in collect.resolve_target(Path(target), overrides)[:1]:
        plan(spec)
        index_file.keep_ahead(root / collect.INDEX_FILE)


def _parsed(args: list[str]) -> tuple[str | None, list[str], bool]:
    """The target (first positional), the overrides (`k=v`) and whether `--smoke` was given."""
    target: str | None = None
    overrides: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in _VALUED
        elif target is None:
            target = arg
        elif "=" in arg:
            overrides.append(arg)
    return target, overrides, "--smoke" in args
