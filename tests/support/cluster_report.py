"""What the dev cluster and a run looked like when a cluster test gave up waiting.

CI tears the cluster down after the suite, so a timeout message is all that is left to read: it
carries the nodes' and jobs' states as SLURM reports them, SLURM's accounting of each start, the
controller's log lines for the jobs, and the ends of the run's status and job logs.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

CONTROLLER_LOG = Path(os.environ.get("ORCH_SLURM_HOME", "/var/tmp/orchestrate-slurm")) / "log" / "slurmctld.log"
"""slurm/dev-cluster/common.sh's LOG_DIR/slurmctld.log."""


def cluster_report(job_ids: Iterable[str], files: Iterable[Path] = (), lines: int = 25) -> str:
    """Nodes, queue, each job's record and accounting, the controller's lines naming the jobs, and the
    last `lines` lines of each file (a run's status.json, its job logs), as one text."""
    jobs = sorted(set(job_ids))
    parts = [_command(["sinfo", "-N", "-o", "%N %T %E"]), _command(["squeue", "-a", "-o", "%i %T %r %N %M"])]
    for job in jobs:
        parts.append(_command(["scontrol", "show", "job", job]))
        fields = "JobID,State,ExitCode,NodeList,Start,End"
        parts.append(_command(["sacct", "--duplicates", "-X", "-P", "-j", job, "-o", fields]))
    parts.append(_controller_lines(jobs, 40))
    parts.extend(_tail(path, lines) for path in files)
    return "\n".join(parts)


def _command(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"$ {' '.join(argv)}\n  could not run: {exc}"
    return f"$ {' '.join(argv)}\n{result.stdout.rstrip()}{result.stderr.rstrip()}"


def _controller_lines(jobs: list[str], count: int) -> str:
    """The controller log's last `count` lines naming one of the jobs (`JobId=123_0(124)` names `123_0`)
    or its array (`JobId=123`)."""
    try:
        text = CONTROLLER_LOG.read_text(errors="replace")
    except OSError as exc:
        return f"{CONTROLLER_LOG}: unreadable ({exc})"
    ids = {job for name in jobs for job in (name, name.split("_")[0])}  # an array task and its array
    named = re.compile("|".join(rf"JobId={re.escape(job)}(?![0-9_])" for job in sorted(ids)) or "(?!)")
    found = [line for line in text.splitlines() if named.search(line)]
    return f"{CONTROLLER_LOG}, lines naming {', '.join(jobs)}:\n" + "\n".join(found[-count:])


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"{path}: unreadable ({exc})"
    return f"{path} (last {lines} lines):\n" + "\n".join(text.splitlines()[-lines:])
