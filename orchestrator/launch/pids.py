"""Whether a process id is alive: read by sweep status (base) and by the hang watchdog, which runs
as `python -m orchestrator.launch.watchdog` (so the launch package must not import that module:
runpy warned in every job log that it was already imported)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process of that id exists on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
