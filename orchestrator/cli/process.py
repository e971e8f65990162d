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
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from orchestrator.sweep import gcpause


def run_command(main: Callable[[Sequence[str] | None], int]) -> NoReturn:
    """`sys.exit(main())` for a process that exits when the command ends: the imports so far
    frozen before the command, everything frozen after it (see the module docstring)."""
    sys.exit(run_main(main))


def run_main(main: Callable[[Sequence[str] | None], int]) -> int:
    """main() on sys.argv as `run_command` runs it, returning its exit status (the warm process's
    command processes end with it themselves: cli/warm_server.py)."""
    fill_closed_streams()
    escape_unencodable()
    gc.freeze()
    gcpause.freeze_at_end()
    try:
        code = main(None)
    except KeyboardInterrupt:  # a second Ctrl-C while main() printed what the first one stopped
        code = 130  # the shell's code for SIGINT, as main() returns for the first; no traceback
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
    return code


def fill_closed_streams() -> None:
    """Standard streams the shell closed (`orchestrate plan SPEC >&-`, `2>&-`) opened on /dev/null.

    Python leaves sys.stdout None then, and `--json` failed writing its object to None. Worse, the
    descriptor stays free: the next file opened (a run's status.json) would get number 1, and
    whatever a worker or library then printed would land in that file. Output to a closed stream
    is dropped, as Python's print() drops it; nothing else changes.
    """
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if mode == "r" else os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 - lives as long as the process


def silence_stdout() -> None:
    """After a closed pipe (`| head -1`): stdout's descriptor onto /dev/null, so the flush at exit does
    not fail on it again (Python's advice for SIGPIPE; rich does the same for what it writes, then
    exits 1, as `main` does: the output was cut short)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): nothing to flush
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def escape_unencodable() -> None:
    """stdout and stderr write what their encoding cannot hold as escapes (`\\udcff`, `\\xb1`), not raw.

    A class folder or file name that is not UTF-8 reaches Python as lone surrogates: a UTF-8 locale's
    stdout wrote them back as the raw bytes (invalid UTF-8 on the terminal), and an ASCII or Latin-1
    one (PYTHONIOENCODING=ascii, LC_ALL=en_US.ISO-8859-1) ended the command in a UnicodeEncodeError
    traceback at the first `±` or `Δ` of a table. Text the encoding holds is unchanged.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
