"""Fault injection, for tests only: read from one environment variable that a test sets.

`ORCH_FAULT_INJECT` holds comma-separated faults, `kind@where`:

- `preflight_fail@node2`: the on-node preflight fails on host node2;
- `oom@3`: the trainer raises torch.OutOfMemoryError before optimizer step 3 (once per run:
  a marker file in the run folder says it fired, so the retried attempt trains through);
- `hang@3`: the trainer stops making progress (sleeps) before step 3, once per run.

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


def step_fault(kind: str, step: int, run_dir: Path) -> bool:
    """Whether fault `kind` (oom, hang) fires before optimizer step `step` of this run: once per run,
    remembered by a marker file so the retried attempt goes through."""
    if not any(where.isdigit() and int(where) == step for where in planned(kind)):
        return False
    marker = run_dir / FIRED.format(kind=kind)
    if marker.exists():
        return False
    marker.touch()
    return True
