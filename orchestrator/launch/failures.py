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
SIGKILL = 9
"""What the kernel's OOM killer sends."""


class Failure(str, enum.Enum):
    """How an attempt ended (`completed` included, so every finished attempt has a class)."""

    COMPLETED = "completed"
    USER_ERROR = "user_error"
    """An exception from the config or the code: retrying gives the same error, so it is not retried."""
    OOM = "oom"
    """Out of memory: the host's (killed by SLURM/the kernel) or the GPU's (torch.OutOfMemoryError)."""
    TIMEOUT = "timeout"
    DEADLINE = "deadline"
    """The job's own `--deadline` passed: a longer time limit cannot help, so it is not retried."""
    PREEMPTED = "preempted"
    NODE_FAIL = "node_fail"
    PREFLIGHT_FAIL = "preflight_fail"
    HANG = "hang"
    CANCELLED = "cancelled"
    """scancel (by the user or an admin): a new `submit` runs it again; the polls of `--follow` never do."""
    CRASHED = "crashed"
    """Ended by a signal or a non-zero exit without a recorded exception (segfault, kill -9...)."""

    @property
    def infrastructure(self) -> bool:
        """A fault of the node rather than of the run: counts towards quarantining the node."""
        return self in (Failure.NODE_FAIL, Failure.PREFLIGHT_FAIL, Failure.HANG)


# sacct States that end a job for good; any other (PENDING, RUNNING, REQUEUED, SUSPENDED, ...) on a job
# squeue no longer lists means accounting has not recorded its end yet (slurmdbd lag, a runaway record).
# Not REVOKED: in a federation the job started on a sibling cluster, whose accounting holds its end;
# taken for an end here, it would be retried while it runs there (two jobs training one run folder).
FINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
SACCT_FIELDS = "JobID,State,ExitCode,NodeList,AllocTRES,ReqMem"
"""What every sacct call asks for (the last two: the memory the job had, for a host-OOM retry)."""


@dataclass(frozen=True)
class SacctRow:
    """One `sacct -X -P -o JobID,State,ExitCode,NodeList[,AllocTRES,ReqMem]` row (the allocation)."""

    job_id: str
    state: str
    """First word of State ("CANCELLED by 0" -> CANCELLED)."""
    exit_code: int
    signal: int
    node_list: str
    by_uid: int | None = None
    """Who cancelled it ("CANCELLED by 1234" -> 1234), None when State names nobody."""
    mem_gb: float | None = None
    """Memory the job had per node (AllocTRES's mem over its nodes, else ReqMem), None when unknown."""

    @property
    def final(self) -> bool:
        """Whether State is an end (sacct's record of a job that left the queue may still lag behind)."""
        return self.state in FINAL_STATES

    @classmethod
    def parse(cls, line: str) -> SacctRow | None:
        """A row from `JobID|State|ExitCode|NodeList[|AllocTRES|ReqMem]`; None for a line not of that shape."""
        parts = line.strip().split("|")
        if len(parts) < 4 or not parts[0] or not parts[1].strip():
            return None
        code, _, signal = parts[2].partition(":")
        if not code.isdigit() or not (signal or "0").isdigit():
            return None
        words = parts[1].split()
        by_uid = int(words[2]) if len(words) == 3 and words[1] == "by" and words[2].isdigit() else None
        nodes = parts[3] if parts[3] != "None assigned" else ""
        alloc_tres, req_mem = [*parts[4:6], "", ""][:2]
        mem_gb = job_mem_gb(alloc_tres, req_mem)
        return cls(parts[0], words[0], int(code), int(signal or 0), nodes, by_uid, mem_gb)


_MEM = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)([nc]?)")
_UNIT_GB = {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0, "": 1 / 1024}  # SLURM: binary, bare = MB


def job_mem_gb(alloc_tres: str, req_mem: str) -> float | None:
    """Memory per node in GB (SLURM's G, what `--mem=NGB` asks for) from AllocTRES (`mem=32G,node=2`: the
    job's total over its nodes), else from ReqMem when it is per node (`16G`, `16Gn`; `4000Mc` is per CPU:
    unknown); None when neither says."""
    tres = dict(item.partition("=")[::2] for item in alloc_tres.split(",") if "=" in item)
    mem = _MEM.fullmatch(tres.get("mem", ""))
    nodes = int(tres["node"]) if tres.get("node", "").isdigit() and int(tres["node"]) > 0 else 1
    req = _MEM.fullmatch(req_mem.strip())
    if mem is not None and not mem.group(3):
        gb = float(mem.group(1)) * _UNIT_GB[mem.group(2)] / nodes
    elif req is not None and req.group(3) != "c":
        gb = float(req.group(1)) * _UNIT_GB[req.group(2)]
    else:
        return None
    return gb if gb > 0 else None  # `0n`: the job asked for no memory limit


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
    """SLURM's name of the node the attempt ran on, as the job recorded it (SLURMD_NODENAME; never a
    bare hostname, which `--exclude` may not take); "" when unknown."""
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
    by_uid: int | None = None
    """For CANCELLED: the uid that cancelled the job, when sacct names one."""
    mem_gb: float | None = None
    """Memory per node the job had, from accounting (a host-OOM retry asks for more than this)."""


_CUDA_OOM = re.compile(r"OutOfMemoryError|CUDA out of memory|CUBLAS_STATUS_ALLOC_FAILED")
_HOST_OOM = re.compile(r"oom[-_ ]kill|Out Of Memory|MemoryError")
_SACCT_CLASSES = {
    "OUT_OF_MEMORY": Failure.OOM,
    "TIMEOUT": Failure.TIMEOUT,
    "DEADLINE": Failure.DEADLINE,
    "PREEMPTED": Failure.PREEMPTED,
    "NODE_FAIL": Failure.NODE_FAIL,
    "BOOT_FAIL": Failure.NODE_FAIL,
    "CANCELLED": Failure.CANCELLED,
}
_EXIT_CLASSES = {EXIT_PREFLIGHT: Failure.PREFLIGHT_FAIL, EXIT_HANG: Failure.HANG}


def classify(row: SacctRow | None, evidence: Evidence) -> Verdict | None:
    """The class of a finished attempt; None while it may still be running (no end in sacct and no
    final state in status.json). A row whose State is not final (sacct lags behind the queue) decides
    nothing: the run's own files may, else the end is not known yet."""
    node = _first_node(row.node_list) if row and row.node_list else evidence.host
    if row is not None and not row.final:
        row = None
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
        return Verdict(Failure.OOM, node, "host memory: killed by SLURM (OUT_OF_MEMORY)", mem_gb=row.mem_gb)
    if by_state is Failure.CANCELLED:
        by = f" by uid {row.by_uid}" if row.by_uid is not None else ""
        return Verdict(Failure.CANCELLED, node, f"CANCELLED{by}", by_uid=row.by_uid)
    if by_state is Failure.DEADLINE:
        return Verdict(Failure.DEADLINE, node, "DEADLINE: the job's --deadline passed before it finished")
    if by_state is Failure.NODE_FAIL and _several(row.node_list):
        # SLURM does not say which node of the allocation failed: none is charged.
        return Verdict(Failure.NODE_FAIL, "", f"{row.state} on {row.node_list}: which node failed is not known")
    if by_state is not None:
        return Verdict(by_state, node, row.state)
    by_exit = _EXIT_CLASSES.get(row.exit_code)
    if by_exit is not None:
        return Verdict(by_exit, node, evidence.reason or f"exit {row.exit_code} ({by_exit.value})")
    # SIGKILL shows as `0:9` when it ended the batch script itself, as `137:0` (128 + 9) when it ended the
    # srun step submitit's script runs the trainer in (srun exits 128 + the signal of a killed task).
    if SIGKILL in (row.signal, row.exit_code - 128) and _HOST_OOM.search(evidence.log_tail):
        return Verdict(Failure.OOM, node, "host memory: the kernel's OOM killer ended the job", mem_gb=row.mem_gb)
    return None


def _line(evidence: Evidence) -> str:
    return evidence.error.splitlines()[0] if evidence.error else ""


def _several(node_list: str) -> bool:
    """Whether a SLURM host list names more than one node (`gpu[07-08]`, `a,b`; not `gpu07`, `gpu[07]`)."""
    return "," in node_list or re.search(r"\[\d+-", node_list) is not None


def _first_node(node_list: str) -> str:
    """The first host of a SLURM host list (`node[1-2]` -> node1): where rank 0 ran."""
    match = re.fullmatch(r"([^\[,]*)\[(\d+)[^\]]*\].*", node_list)
    if match:
        return match.group(1) + match.group(2)
    return node_list.split(",")[0]
