"""Scheduler headroom: how many more array tasks this user may queue right now.

Clusters cap queued jobs per user (MaxSubmitJobs of the association or QOS, counted per array
task) and job records overall (MaxJobCount). A submission past a cap fails half-way, after part
of the sweep is queued, or waits minutes inside sbatch's retries; so `submit` asks first and
submits only what fits, saying how many runs it held back (`submit --follow` feeds them in as
the queue drains).
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from typing import TypeVar

from orchestrator.launch.slurmcli import run

Config = TypeVar("Config")
Run = TypeVar("Run")


@dataclass(frozen=True)
class QueueLimits:
    """What caps this user's submissions, and how much of it is in use."""

    max_submit_jobs: int | None
    """The smallest MaxSubmitJobs of the user's association and its QOS (None: no limit or no accounting)."""
    max_job_count: int | None
    """The controller's MaxJobCount (job records of all users)."""
    queued_by_user: int
    """This user's pending and running jobs, one per array task."""
    jobs_in_system: int
    """Every user's pending and running jobs, one per array task."""
    note: str | None = None
    """Why a limit could not be read (sacctmgr unavailable, accounting off)."""

    def headroom(self) -> int | None:
        """Array tasks that may be submitted now (None: no known limit)."""
        room = []
        if self.max_submit_jobs is not None:
            room.append(self.max_submit_jobs - self.queued_by_user)
        if self.max_job_count is not None:
            room.append(self.max_job_count - self.jobs_in_system)
        return max(0, min(room)) if room else None

    def describe(self) -> str:
        """One line naming the limits and their use."""
        parts = []
        if self.max_submit_jobs is not None:
            parts.append(f"MaxSubmitJobs {self.max_submit_jobs} ({self.queued_by_user} queued by you)")
        if self.max_job_count is not None:
            parts.append(f"MaxJobCount {self.max_job_count} ({self.jobs_in_system} in the system)")
        return ", ".join(parts) or "no limits found"


def _int_values(text: str) -> list[int]:
    return [int(value) for value in re.split(r"[|\n]", text) if value.strip().isdigit()]


def max_submit_jobs(user: str) -> tuple[int | None, str | None]:
    """The user's MaxSubmitJobs from the association and its QOS (sacctmgr), with a note on failure."""
    assoc = run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", "format=MaxSubmit,QOS"])
    if assoc.returncode != 0:
        return None, f"sacctmgr unavailable ({(assoc.stderr or assoc.stdout).strip()[:120]})"
    limits = []
    qos_names: set[str] = set()
    for line in assoc.stdout.splitlines():
        limit, _, qos_list = line.partition("|")
        limits += _int_values(limit)
        qos_names.update(name for name in qos_list.split(",") if name.strip())
    if qos_names:
        qos = run(["sacctmgr", "-n", "-P", "show", "qos", f"names={','.join(sorted(qos_names))}", "format=MaxSubmitPU"])
        limits += _int_values(qos.stdout) if qos.returncode == 0 else []
    return (min(limits) if limits else None), None


def queue_limits() -> QueueLimits:
    """Read the limits and the queue: scontrol, two squeue calls, one or two sacctmgr calls."""
    user = getpass.getuser()
    config = run(["scontrol", "show", "config"]).stdout
    match = re.search(r"^MaxJobCount\s*=\s*(\d+)", config, re.M)
    # -a: jobs in Hidden partitions count against the limits too.
    mine = run(["squeue", "-h", "-a", "-r", "-u", user, "-o", "%i"]).stdout.split()
    everyone = run(["squeue", "-h", "-a", "-r", "-o", "%i"]).stdout.split()
    submit_limit, note = max_submit_jobs(user)
    max_jobs = int(match.group(1)) if match else None
    return QueueLimits(submit_limit, max_jobs, len(mine), len(everyone), note)


def within(
    arrays: list[tuple[Config, list[list[Run]]]], room: int | None
) -> tuple[list[tuple[Config, list[list[Run]]]], int]:
    """The first `room` array tasks in plan order (None: all), and how many runs were held back."""
    if room is None:
        return arrays, 0
    kept: list[tuple[Config, list[list[Run]]]] = []
    held = 0
    for config, tasks in arrays:
        take = tasks[: max(0, room)]
        room -= len(take)
        held += sum(len(task) for task in tasks[len(take) :])
        if take:
            kept.append((config, take))
    return kept, held
