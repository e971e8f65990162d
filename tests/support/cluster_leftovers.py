"""Finding and clearing what a killed test session left on the dev cluster (tests/conftest.py runs it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from orchestrator.launch import slurmcli
from orchestrator.launch.limits import max_submit_jobs


def session_alive(session: Path) -> bool:
    """Whether the pytest session that owns a numbered temp folder still runs: pytest writes its pid into
    the folder's `.lock` and removes the file at exit; a killed session leaves it with a dead pid."""
    try:
        pid = int((session / ".lock").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def leftover_jobs(queue: str, pytest_root: Path, this_session: Path) -> list[str]:
    """Job ids from `squeue -O ArrayJobID,STDOUT` lines whose output is in another pytest session's folder
    that no running process owns (a concurrent session's jobs are left alone)."""
    found = []
    for line in queue.splitlines():
        job_id, _, stdout = line.strip().partition(" ")
        path = Path(stdout.strip())
        if not path.is_relative_to(pytest_root) or path.is_relative_to(this_session) or path == pytest_root:
            continue
        if not session_alive(pytest_root / path.relative_to(pytest_root).parts[0]):
            found.append(job_id)
    return sorted(set(found))


def set_max_submit(user: str, value: int) -> None:
    """Set the user's MaxSubmitJobs on the dev cluster's association (-1: no limit)."""
    subprocess.run(["sacctmgr", "-i", "modify", "user", user, "set", f"MaxSubmitJobs={value}"], check=True)


def clear_leftovers(user: str, pytest_root: Path, this_session: Path) -> list[str]:
    """Reset the user's MaxSubmitJobs and cancel their jobs from earlier sessions; the cancelled ids."""
    if max_submit_jobs(user)[0] is not None:
        set_max_submit(user, -1)  # only the queue-limit test sets a limit on the dev cluster (start.sh none)
    queue = slurmcli.run(["squeue", "-h", "-u", user, "-O", "ArrayJobID:30,STDOUT:4000"]).stdout
    return slurmcli.cancel(leftover_jobs(queue, pytest_root, this_session))
