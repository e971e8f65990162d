"""The `orchestrate` process's garbage-collector policy (console script and `python -m` only).

Two costs of the cyclic collector that a one-shot command never needs to pay, measured on
`collect` of 10,002 runs on the 2-core dev machine (docs/benchmarks.md, "Third round"):

- At exit, CPython's finalisation runs collections over everything still alive: pandas, scipy,
  pydantic's schemas, the command's modules. 0.36-0.41 s of every command here, after the last
  line was printed. Frozen objects (`gc.freeze`) are not examined: 0.05 s.
- During the command, every full collection walks the modules imported at start-up. Freezing them
  once they are imported leaves those passes to the command's own objects.
- The end of each paused block (sweep/gcpause.py: plan, status, the reader, collect) started a
  collection walking everything the block made (0.3 s after planning 100,000 runs): the process
  freezes those objects there instead (`gcpause.freeze_at_end`).

`main()` itself stays free of this: tests call it in-process, where a freeze would pin their
objects for the rest of the session. Nothing here changes what a command writes: every file is
written, closed and renamed into place (rundir.write_text) before `main()` returns. A freeze only
makes the collector skip objects: atexit handlers still run, and objects freed by reference
counting are still finalised; only garbage in reference cycles made before the freeze is left to
the process's end (no output of ours waits in such a cycle).

A command that imported triton (through torch and timm: submit, profile, eval, predict) is
finalised as usual instead: see `run_command`.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from orchestrator.sweep import gcpause


def run_command(main: Callable[[Sequence[str] | None], int]) -> NoReturn:
    """`sys.exit(main())` for a process that exits when the command ends: the imports so far
    frozen before the command, everything frozen after it (see the module docstring)."""
    gc.freeze()
    gcpause.freeze_at_end()
    try:
        code = main(None)
    finally:
        if "triton" in sys.modules:  # a command that imported torch with triton (timm does)
            # Finalised as usual: the frozen collector kept triton's module objects alive through
            # interpreter finalisation, and nanobind then printed a 40-line "leaked instances"
            # report after the command's last line (at the end of every submit and profile). The
            # usual finalisation costs such a command about 1.3 s more, on top of its torch import.
            gc.unfreeze()
            gc.enable()
        else:
            gc.freeze()
    sys.exit(code)
