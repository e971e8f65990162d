"""Why an attempt ended: one pure function over SLURM's accounting row and the run's own files.

Evidence, strongest first: the run's status.json (completed; a failure class the job itself
recorded: preflight, hang), sacct's State and ExitCode (OUT_OF_MEMORY, TIMEOUT, PREEMPTED,
NODE_FAIL, the documented exit codes below), then the text of the error, its traceback and the log
tail (a CUDA out-of-memory error, the kernel's oom-kill line). Nothing here runs a command or
opens a file: `status` gathers the evidence (one batched sacct call per sweep) and asks
`classify`, so every rule is tested against real sacct rows without a cluster.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

EXIT_PREFLIGHT = 77
"""Exit status of a job whose on-node preflight failed (the node, not the run, is at fault)."""
EXIT_HANG = 75
"""Exit status of a job whose watchdog ended a trainer that stopped making progress."""


class Failure(str, enum.Enum):
    """How an attempt ended (`completed` included, so every finished attempt has a class)."""

    COMPLETED = "completed"
    USER_ERROR = "user_error"
    """An exception from the config or the code: retrying gives the same error, so it is not retried."""
    OOM = "oom"
    """Out of memory: the host's (killed by SLURM/the kernel) or the GPU's (torch.OutOfMemoryError)."""
    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    NODE_FAIL = "node_fail"
    PREFLIGHT_FAIL = "preflight_fail"
    HANG = "hang"
    CANCELLED = "cancelled"
    """scancel (by the user or an admin): not retried unless resubmitted."""
    CRASHED = "crashed"
    """Ended by a signal or a non-zero exit without a recorded exception (segfault, kill -9...)."""

    @property
    def infrastructure(self) -> bool:
        """A fault of the node rather than of the run: counts towards quarantining the node."""
        return self in (Failure.NODE_FAIL, Failure.PREFLIGHT_FAIL, Failure.HANG)


@dataclass(frozen=True)
class SacctRow:
    """One `sacct -X -P -o JobID,State,ExitCode,NodeList` row (the allocation, not its steps)."""

    job_id: str
    state: str
    """First word of State ("CANCELLED by 0" -> CANCELLED)."""
    exit_code: int
    signal: int
    node_list: str

    @classmethod
    def parse(cls, line: str) -> SacctRow | None:
        """A row from `JobID|State|ExitCode|NodeList`; None for a line not of that shape."""
        parts = line.strip().split("|")
        if len(parts) < 4 or not parts[0] or not parts[1]:
            return None
        code, _, signal = parts[2].partition(":")
        if not code.isdigit() or not (signal or "0").isdigit():
            return None
        state = parts[1].split()[0]
        return cls(parts[0], state, int(code), int(signal or 0), parts[3] if parts[3] != "None assigned" else "")


@dataclass(frozen=True)
class Evidence:
    """What the run folder says about the attempt (status.json's fields and its log's last lines)."""

    state: str | None = None
    """status.json's state (completed, failed, running...), None without a readable status."""
    failure: str | None = None
    """A class the job recorded itself (preflight_fail, hang), with `reason`."""
    reason: str = ""
    error: str = ""
    """`Type: message` of the exception the trainer raised."""
    traceback: str = ""
    log_tail: str = ""
    host: str = ""
    node: str = ""
    """The node the job blamed for a failure it recorded (a multi-node preflight names the unfit
    rank's host, which need not be the first of the job's nodes)."""


@dataclass(frozen=True)
class Verdict:
    """The class of one finished attempt, the node it ran on, and the line that says why."""

    failure: Failure
    node: str
    reason: str
    cuda: bool = False
    """For OOM: the GPU ran out (halve the batch per device), not the host (ask for more memory)."""


_CUDA_OOM = re.compile(r"OutOfMemoryError|CUDA out of memory|CUBLAS_STATUS_ALLOC_FAILED")
_HOST_OOM = re.compile(r"oom[-_ ]kill|Out Of Memory|MemoryError")
_SACCT_CLASSES = {
    "OUT_OF_MEMORY": Failure.OOM,
    "TIMEOUT": Failure.TIMEOUT,
    "DEADLINE": Failure.TIMEOUT,
    "PREEMPTED": Failure.PREEMPTED,
    "NODE_FAIL": Failure.NODE_FAIL,
    "BOOT_FAIL": Failure.NODE_FAIL,
    "CANCELLED": Failure.CANCELLED,
}
_EXIT_CLASSES = {EXIT_PREFLIGHT: Failure.PREFLIGHT_FAIL, EXIT_HANG: Failure.HANG}


def classify(row: SacctRow | None, evidence: Evidence) -> Verdict | None:
    """The class of a finished attempt; None while it may still be running (no end in sacct and no
    final state in status.json)."""
    node = _first_node(row.node_list) if row and row.node_list else evidence.host
    if evidence.state == "completed":
        return Verdict(Failure.COMPLETED, node, "")
    recorded = _recorded(evidence)
    if recorded is not None:
        return Verdict(recorded, evidence.node or node, evidence.reason or recorded.value)
    text = "\n".join((evidence.error, evidence.traceback, evidence.log_tail))
    if _CUDA_OOM.search(text):
        return Verdict(Failure.OOM, node, _line(evidence) or "CUDA out of memory", cuda=True)
    if row is not None:
        verdict = _from_sacct(row, node, evidence)
        if verdict is not None:
            return verdict
    if evidence.state == "failed" and evidence.error:
        return Verdict(Failure.USER_ERROR, node, _line(evidence))
    if row is None:
        return None  # no accounting row and no final status: not known to have ended
    return Verdict(Failure.CRASHED, node, f"{row.state} {row.exit_code}:{row.signal} without a recorded error")


def _recorded(evidence: Evidence) -> Failure | None:
    try:
        return Failure(evidence.failure) if evidence.failure else None
    except ValueError:
        return None  # a class this version does not know: decide from the other evidence


def _from_sacct(row: SacctRow, node: str, evidence: Evidence) -> Verdict | None:
    """What sacct's State and ExitCode alone decide."""
    by_state = _SACCT_CLASSES.get(row.state)
    if by_state is Failure.OOM:
        return Verdict(Failure.OOM, node, "host memory: killed by SLURM (OUT_OF_MEMORY)")
    if by_state is not None:
        return Verdict(by_state, node, row.state)
    by_exit = _EXIT_CLASSES.get(row.exit_code)
    if by_exit is not None:
        return Verdict(by_exit, node, evidence.reason or f"exit {row.exit_code} ({by_exit.value})")
    if row.signal == 9 and _HOST_OOM.search(evidence.log_tail):
        return Verdict(Failure.OOM, node, "host memory: the kernel's OOM killer ended the job")
    return None


def _line(evidence: Evidence) -> str:
    return evidence.error.splitlines()[0] if evidence.error else ""


def _first_node(node_list: str) -> str:
    """The first host of a SLURM host list (`node[1-2]` -> node1): where rank 0 ran."""
    match = re.fullmatch(r"([^\[,]*)\[(\d+)[^\]]*\].*", node_list)
    if match:
        return match.group(1) + match.group(2)
    return node_list.split(",")[0]
