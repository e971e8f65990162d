"""Finding and clearing what a killed test session left on the dev cluster (tests/conftest.py runs it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from orchestrator.launch import slurmcli
from orchestrator.launch.limits import max_submit_jobs


def leftover_jobs(queue: str, pytest_root: Path, this_session: Path) -> list[str]:
    """Job ids from `squeue -O ArrayJobID,STDOUT` lines whose output is under an earlier session's folder."""
    found = []
    for line in queue.splitlines():
        job_id, _, stdout = line.strip().partition(" ")
        path = Path(stdout.strip())
        if path.is_relative_to(pytest_root) and not path.is_relative_to(this_session):
            found.append(job_id)
    return sorted(set(found))


def clear_leftovers(user: str, pytest_root: Path, this_session: Path) -> list[str]:
    """Reset the user's MaxSubmitJobs and cancel their jobs from earlier sessions; the cancelled ids."""
    if max_submit_jobs(user)[0] is not None:
        # Only the queue-limit test sets a limit on the dev cluster (start.sh sets none).
        subprocess.run(["sacctmgr", "-i", "modify", "user", user, "set", "MaxSubmitJobs=-1"], check=True)
    queue = slurmcli.run(["squeue", "-h", "-u", user, "-O", "ArrayJobID:30,STDOUT:4000"]).stdout
    stale = leftover_jobs(queue, pytest_root, this_session)
    if stale:
        subprocess.run(["scancel", *stale], check=True)
    return stale
