"""Fault injection, for tests only: read from one environment variable that a test sets.

`ORCH_FAULT_INJECT` holds comma-separated faults, `kind@where`:

- `preflight_fail@node2`: the on-node preflight fails on host node2;
- `oom@3`: the trainer raises torch.OutOfMemoryError (a CUDA out-of-memory error) before micro-batch 3
  of an epoch (once per run: a marker file in the run folder says it fired, so the retried attempt
  trains through); `oom@RUNID:3` only in run RUNID;
- `user_error@RUNID:0`: the trainer raises ValueError there, every attempt (a bug in the config or code).

No spec or site key reaches it (`slurm.setup` lines naming it are refused), and nothing reads it
unless it is set.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

ENV = "ORCH_FAULT_INJECT"
FIRED = ".fault_fired_{kind}"
"""Marker file in the run folder: this fault already fired once for this run."""


def planned(kind: str) -> list[str]:
    """The `where` parts of the injected faults of `kind` (empty unless a test set the variable)."""
    text = os.environ.get(ENV)
    if not text:
        return []
    wanted = []
    for item in text.split(","):
        name, _, where = item.strip().partition("@")
        if name == kind and where:
            wanted.append(where)
    return wanted


def preflight_fault() -> str | None:
    """Why this node's preflight must fail (an injected fault naming this host), else None."""
    host = socket.gethostname()
    return f"injected fault: preflight fails on {host}" if host in planned("preflight_fail") else None


def step_fault(kind: str, step: int, run_dir: Path, once: bool = True) -> bool:
    """Whether fault `kind` fires before micro-batch `step` of this run (`STEP` or `RUNID:STEP`): with
    `once`, only the first time, remembered by a marker file so the retried attempt goes through."""
    wanted = {where.rpartition(":")[2] for where in planned(kind) if where.rpartition(":")[0] in ("", run_dir.name)}
    if str(step) not in wanted:
        return False
    marker = run_dir / FIRED.format(kind=kind)
    if once and marker.exists():
        return False
    marker.touch()
    return True


def before_micro_batch(run_dir: Path, step: int) -> None:
    """The trainer's hook (one dictionary lookup when no test set the variable)."""
    if ENV not in os.environ:
        return
    if step_fault("user_error", step, run_dir, once=False):
        raise ValueError("injected user error: this run's config cannot train")
    if step_fault("oom", step, run_dir):
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected fault)")
