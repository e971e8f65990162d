"""SLURM: cluster profiles, cluster facts, and batched job-state queries.

Status is one `squeue` call (live jobs; accounting lags behind for them) plus one
`sacct` call (how finished jobs ended) per sweep, never one call per job: per-job
polling of thousands of array tasks overloads controllers.
"""

from __future__ import annotations

import getpass
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.launch.failures import SACCT_FIELDS, SacctRow
from orchestrator.sweep import nodeenv
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.site import SlurmConfig

DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default when scontrol cannot be asked
# States in which SLURM still owns the job: resubmitting would run it twice.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "CONFIGURING",
        "COMPLETING",
        "RESIZING",
        "SUSPENDED",
        "STAGE_OUT",
        "SIGNALING",
        "STOPPED",
        "RESV_DEL_HOLD",
        "SPECIAL_EXIT",
    }
)
UNRECORDED = "UNRECORDED"
"""Our state of a job that left the queue while sacct still holds a state that is not an end (PENDING,
RUNNING, REQUEUED...): slurmdbd has not recorded its end yet, or never will (a runaway record)."""
_TASK_RANGE = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")


class SlurmError(RuntimeError):
    """A SLURM command failed in a way the user must see."""


def available() -> bool:
    """Whether SLURM's client commands are on PATH."""
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


def run(args: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a SLURM command; a command missing on this node (sacctmgr often is) is a failed call
    (exit 127, the reason on stderr) for the caller to report, never a traceback."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    except OSError as exc:
        return subprocess.CompletedProcess(args, 127, "", f"{args[0]}: {exc.strerror or exc}")


def max_array_size(config: SlurmConfig) -> int:
    """Largest array a submission may use: the config's override, else the cluster's MaxArraySize."""
    if config.max_array_size is not None:
        return config.max_array_size
    result = run(["scontrol", "show", "config"])
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", result.stdout, re.M)
    # Task ids run 0..MaxArraySize-1, so that many tasks fit in one array.
    return int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """Consecutive slices of at most `size` items."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def node_command(config: SlurmConfig) -> nodeenv.NodeCommand:
    """The job's environment (`slurm.env`) rendered for submitit: python command, setup lines, srun args."""
    try:
        return nodeenv.render(config.env, config.gpus_per_node)
    except ValueError as exc:  # an image path the login node cannot see
        raise SpecError(f"slurm.env: {exc}") from None


def executor_parameters(config: SlurmConfig, job_name: str) -> dict[str, Any]:
    """submitit SlurmExecutor parameters for a SlurmConfig (the env's setup lines before the block's own)."""
    command = node_command(config)
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": config.timeout_min,
        "nodes": config.nodes,
        "ntasks_per_node": config.tasks_per_node,
        "cpus_per_task": config.cpus_per_task,
        "array_parallelism": config.array_parallelism,
        "setup": [*command.setup, *config.setup],
        "additional_parameters": dict(config.additional_parameters),
    }
    if command.srun_args:
        params["srun_args"] = list(command.srun_args)
    if config.gpus_per_node:
        params["gpus_per_node"] = config.gpus_per_node
    if config.mem_gb is not None:
        params["mem"] = _mem(config.mem_gb)
    optional = {
        "partition": config.partition,
        "account": config.account,
        "qos": config.qos,
        "constraint": config.constraint,
        "exclude": config.exclude,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


def _mem(mem_gb: float) -> str:
    return f"{int(mem_gb)}GB" if mem_gb == int(mem_gb) else f"{int(mem_gb * 1024)}MB"


def task_command(folder: Path, python: str | None = None) -> str:
    """The command each task runs (SlurmExecutor._submitit_command_str): `python` is the env's
    interpreter command, None the login node's interpreter (submitit's default)."""
    python = shlex.quote(sys.executable) if python is None else python
    return " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])


def sbatch_header(folder: Path, params: dict[str, Any], array_size: int, python: str | None = None) -> str:
    """The sbatch script submitit would write for an array of `array_size` tasks (for --dry-run),
    with the command submitit runs, so it is the whole script."""
    from submitit.slurm.slurm import _make_sbatch_string  # submitit's own renderer: what it would send

    command = task_command(folder, python)
    return str(_make_sbatch_string(command=command, folder=folder, map_count=array_size, **params))


@dataclass(frozen=True)
class JobStates:
    """SLURM's view of a set of jobs: job id (`A_i`) -> state name, plus how it was obtained."""

    states: dict[str, str]
    accounting: bool
    """False when sacct was unavailable and only squeue answered."""
    warning: str | None = None
    ends: dict[str, SacctRow] = field(default_factory=dict)
    """job id -> sacct's row (State, ExitCode, NodeList): how each finished job ended, and where."""

    def end(self, job_id: str) -> SacctRow | None:
        """sacct's row of a job (`A_i`), or of its array `A` while accounting has no row per task yet: an
        array cancelled while pending reads `A|CANCELLED by U` for its first seconds, not `A_[0-1]`."""
        return self.ends.get(job_id) or self.ends.get(_array_of(job_id) or job_id)

    def state(self, job_id: str) -> str | None:
        """The state of a job (`A_i`): squeue's or sacct's, falling back to its array's as `end` does."""
        return self.states.get(job_id) or self.states.get(_array_of(job_id) or job_id)


def _array_of(job_id: str) -> str | None:
    """`A` of an array task id `A_i` (None for a lone job's id)."""
    array, sep, task = job_id.partition("_")
    return array if sep and task.isdigit() else None


def query_states(array_ids: Iterable[str]) -> JobStates:
    """States of every task of the given arrays: one squeue call, then one sacct call."""
    ids = sorted(set(array_ids))
    if not ids:
        return JobStates({}, accounting=True)
    live = _squeue_states(ids)
    rows, warning = _sacct_rows(ids)
    # squeue is authoritative for live jobs; sacct knows how the others ended, once it has recorded it.
    finished = {job_id: row.state if row.final else UNRECORDED for job_id, row in rows.items()}
    return JobStates({**finished, **live}, accounting=warning is None, warning=warning, ends=rows)


def active_ids(array_ids: Iterable[str]) -> dict[str, str]:
    """Live tasks (pending, running, requeued...) of the given arrays, from one squeue call."""
    ids = sorted(set(array_ids))
    return _squeue_states(ids) if ids else {}


def _squeue_states(array_ids: list[str]) -> dict[str, str]:
    wanted = set(array_ids)
    # -a: jobs in partitions hidden from the user (Hidden=YES) are listed too, not taken for ended ones.
    result = run(["squeue", "-h", "-a", "--array", "-u", getpass.getuser(), "-o", "%i|%T"])
    if result.returncode != 0:
        raise SlurmError(f"squeue failed: {result.stderr.strip() or result.stdout.strip()}")
    states: dict[str, str] = {}
    for job_id, state in _parse_pairs(result.stdout):
        if job_id.split("_", 1)[0] in wanted:
            states.update(dict.fromkeys(expand_job_id(job_id), state))
    return states


def _sacct_rows(array_ids: list[str]) -> tuple[dict[str, SacctRow], str | None]:
    """One sacct call: how each task of the arrays ended (State, ExitCode), on which nodes, with what memory."""
    result = run(["sacct", "-n", "-P", "-X", "-o", SACCT_FIELDS, "-j", ",".join(array_ids)])
    if result.returncode != 0 or "accounting storage is disabled" in (result.stderr + result.stdout):
        reason = (result.stderr or result.stdout).strip().splitlines()
        return {}, f"sacct unavailable ({reason[0] if reason else 'no output'}); states from squeue and run folders"
    return parse_sacct(result.stdout), None


def earlier_ends(job_id: str) -> list[SacctRow]:
    """How the earlier starts of a requeued job ended, oldest first (`sacct --duplicates` keeps one row
    per start; the latest, the current one, is left out); [] when sacct cannot say. Asked by a job that
    SLURM started again, never per job by a launcher."""
    try:
        result = run(["sacct", "-n", "-P", "-X", "--duplicates", "-o", SACCT_FIELDS, "-j", job_id], timeout_s=30)
    except subprocess.TimeoutExpired:
        return []
    if result.returncode != 0:
        return []
    rows = [row for line in result.stdout.splitlines() if (row := SacctRow.parse(line)) is not None]
    return rows[:-1]


def parse_sacct(text: str) -> dict[str, SacctRow]:
    """`JobID|State|ExitCode|NodeList[|AllocTRES|ReqMem]` lines -> job id -> row (array ranges expanded;
    odd lines skipped)."""
    rows: dict[str, SacctRow] = {}
    for line in text.splitlines():
        row = SacctRow.parse(line)
        if row is not None:
            rows.update({job_id: replace(row, job_id=job_id) for job_id in expand_job_id(row.job_id)})
    return rows


def _parse_pairs(text: str) -> Iterable[tuple[str, str]]:
    for line in text.splitlines():
        job_id, sep, state = line.strip().partition("|")
        if sep:
            yield job_id, state.split("|")[0]


def expand_job_id(job_id: str) -> list[str]:
    """`123_[0-2,5%4]` -> [123_0, 123_1, 123_2, 123_5]; other ids unchanged."""
    match = _TASK_RANGE.fullmatch(job_id)
    if not match:
        return [job_id]
    array, ranges = match.groups()
    tasks: list[int] = []
    for part in ranges.split(","):
        start, _, end = part.partition("-")
        tasks.extend(range(int(start), int(end or start) + 1))
    return [f"{array}_{task}" for task in tasks]


def cancel(array_ids: Iterable[str]) -> list[str]:
    """scancel the given arrays in one call; returns the ids cancelled."""
    ids = sorted(set(array_ids))
    if ids:
        result = run(["scancel", *ids])
        if result.returncode != 0:
            raise SlurmError(f"scancel failed: {result.stderr.strip()}")
    return ids


def job_state(job_id: str) -> str | None:
    """The job's state as slurmctld holds it now (`scontrol show job`: RUNNING, REQUEUED, COMPLETING...);
    None when scontrol cannot say. Asked by a job about itself, never per job by a launcher."""
    try:
        result = run(["scontrol", "show", "job", "-o", job_id], timeout_s=30)
    except subprocess.TimeoutExpired:
        return None
    match = re.search(r"\bJobState=(\S+)", result.stdout) if result.returncode == 0 else None
    return match.group(1) if match else None


def partition_max_time_min(partition: str | None) -> int | None:
    """The partition's MaxTime in minutes (`scontrol show partition`; the default partition when None);
    None when unlimited or unknown (retries then grow the time limit by the policy's factor alone)."""
    result = run(["scontrol", "show", "partition", *([partition] if partition else [])])
    if result.returncode != 0:
        return None
    blocks = [b for b in result.stdout.split("PartitionName=") if b.strip()]
    chosen = blocks[0] if partition else next((b for b in blocks if "Default=YES" in b), None)
    match = re.search(r"\bMaxTime=(\S+)", chosen or "")
    return parse_minutes(match.group(1)) if match else None


def partition_nodes(partition: str | None) -> frozenset[str] | None:
    """SLURM's names of the nodes a job of `partition` (a comma-separated list; the default partition
    when None) may run on, from one `sinfo -N` call; None when sinfo cannot say. Asked only when a
    submission would exclude nodes, so that an --exclude never leaves the job no node at all."""
    if not available():
        return None
    result = run(["sinfo", "-h", "-N", "-o", "%N|%P", *(["-p", partition] if partition else [])])
    nodes = set()
    for line in result.stdout.splitlines() if result.returncode == 0 else []:
        node, sep, name = line.strip().partition("|")
        if sep and node and (partition or name.endswith("*")):  # sinfo marks the default partition `*`
            nodes.add(node)
    return frozenset(nodes) or None


def parse_minutes(text: str) -> int | None:
    """SLURM's time format (`UNLIMITED`, `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`) in whole minutes."""
    if text in ("UNLIMITED", "INFINITE", "NONE"):
        return None
    days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
    parts = rest.split(":")
    if not days.isdigit() or not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        return None
    numbers = [int(p) for p in parts]
    if "-" in text:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = [*numbers, 0, 0][:3]
    elif len(numbers) == 3:
        hours, minutes, seconds = numbers
    else:  # M or M:S
        hours, minutes, seconds = 0, numbers[0], numbers[1] if len(numbers) > 1 else 0
    return int(days) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
