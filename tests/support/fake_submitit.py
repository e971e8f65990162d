"""submitit's own SlurmExecutor over a fake sbatch: the one stand-in for SLURM submission in unit tests.

Only the sbatch call is replaced (`_make_submission_command`: a shell prints what sbatch would, as the
test decides); the rest is submitit's code, so the tests keep its contract:

- job attributes (`job.job_id`...) are forbidden inside `with executor.batch()`: AttributeError;
- `update_parameters` refuses unknown names (ValueError), checks values by rendering the script, and
  raises RuntimeError inside `batch()`;
- a batch of one submission is a lone job (`A`), of several an array (`A_0`, `A_1`, ...);
- sbatch failing raises FailedJobError with its stderr (at the end of `batch()`);
- each task's pickle is written where its job looks for it.

The controller hands out ids from 100 up, only to the jobs it takes (a refused sbatch uses no id).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import submitit
import submitit.slurm.slurm
from submitit.slurm.slurm import SlurmExecutor as RealSlurmExecutor

SOCKET = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"

# What the fake sbatch runs: prints sbatch's stdout and stderr, exits with its code (submitit reads all three).
_SBATCH = 'printf "%s\\n" "$1"; printf "%s\\n" "$2" >&2; exit "$3"'


@dataclass(frozen=True)
class Failure:
    """How one sbatch call fails: its stderr, and whether the controller took the job all the same
    (a busy slurmctld can take it and still leave sbatch with `Socket timed out`)."""

    stderr: str = SOCKET
    taken: bool = False


@dataclass(frozen=True)
class Sbatch:
    """One sbatch call as the controller saw it."""

    parameters: dict[str, Any]
    """The executor's parameters the script was rendered from (`map_count` set for an array)."""
    script: str
    job_id: str | None
    """The id the controller gave the job; None when it did not take it."""
    failure: Failure | None

    @property
    def job_name(self) -> str:
        """`#SBATCH --job-name` (submitit's default when none was set)."""
        return str(self.parameters.get("job_name", "submitit"))

    @property
    def task_ids(self) -> list[str]:
        """The job ids of its tasks: `A` for a lone job, `A_i` for an array's (none when not taken)."""
        count = self.parameters.get("map_count")
        if self.job_id is None:
            return []
        return [self.job_id] if count is None else [f"{self.job_id}_{index}" for index in range(count)]


class FakeSbatch:
    """slurmctld as sbatch reaches it: each call recorded; `failures` says, per call, how it fails
    (None or past the list: the job is taken and its id printed)."""

    def __init__(self, first_id: int = 100) -> None:
        self.next_id = first_id
        self.failures: list[Failure | None] = []
        self.calls: list[Sbatch] = []

    @property
    def taken(self) -> list[Sbatch]:
        """The calls whose job the controller holds, in order."""
        return [call for call in self.calls if call.job_id is not None]

    @property
    def arrays(self) -> list[str]:
        """The ids of the jobs taken, in order."""
        return [str(call.job_id) for call in self.taken]

    @property
    def task_ids(self) -> list[str]:
        """Every task's job id of every job taken (what sacct lists once they ended)."""
        return [task for call in self.taken for task in call.task_ids]

    def queue(self, *, name: str | None = None, array: bool = False) -> str:
        """`squeue -o %i|%T` of the jobs taken, all pending (named `name`, when given): a lone job `A`,
        an array `A_[0-n]` (one line per task `A_i` with --array)."""
        lines = []
        for call in self.taken:
            if name is not None and call.job_name != name:
                continue
            tasks = call.task_ids
            if len(tasks) > 1 and not array:
                tasks = [f"{call.job_id}_[0-{len(tasks) - 1}]"]
            lines += [f"{task}|PENDING\n" for task in tasks]
        return "".join(lines)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make `submitit.SlurmExecutor` (and the copy submitit makes of it for an array) this fake's."""
        executor = self.executor_class()
        monkeypatch.setattr(submitit, "SlurmExecutor", executor)
        monkeypatch.setattr(submitit.slurm.slurm, "SlurmExecutor", executor)

    def executor_class(self) -> type[RealSlurmExecutor]:
        """submitit's SlurmExecutor, its sbatch call answered by this controller."""
        controller = self

        class FakeSlurmExecutor(RealSlurmExecutor):
            @classmethod
            def affinity(cls) -> int:
                return 2  # srun is not on PATH here: the fake sbatch stands in for the cluster

            def _make_submission_command(self, submission_file_path: Path) -> list[str]:
                return controller.sbatch(dict(self.parameters), submission_file_path.read_text())

        return FakeSlurmExecutor

    def sbatch(self, parameters: dict[str, Any], script: str) -> list[str]:
        """Decide this call (record it, give an id to a job taken); the command that prints what sbatch would."""
        failure = self.failures.pop(0) if self.failures else None
        job_id = None
        if failure is None or failure.taken:
            job_id, self.next_id = str(self.next_id), self.next_id + 1
        self.calls.append(Sbatch(parameters, script, job_id, failure))
        if failure is not None:
            return ["sh", "-c", _SBATCH, "sbatch", "", failure.stderr, "1"]
        return ["sh", "-c", _SBATCH, "sbatch", f"Submitted batch job {job_id}", "", "0"]
