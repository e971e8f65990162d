"""Failure classes of finished attempts: the pure classifier over real sacct rows (unit, no cluster).

Rows marked `dev` were printed by `sacct -X -P -o JobID,State,ExitCode,NodeList` on the dev cluster
(slurm 22.05) for jobs made to end that way (exit 1, exit 77, kill -9, kill -SEGV, --time=1 with
sleep 300, scancel of a pending array); rows marked `doc` have the shape sacct prints for states the
dev cluster cannot produce (no cgroup memory limit, no preemption, no failing node).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.launch import slurmcli
from orchestrator.launch.failures import EXIT_HANG, Evidence, Failure, SacctRow, classify
from orchestrator.launch.status import attempt_verdict
from orchestrator.store.run_states import RunRecord
from orchestrator.sweep.plan import RunSpec
from trainers.config import TrainConfig
from trainers.contract import RunStatus
from trainers.rundir import State

USER_ERROR = Evidence(state="failed", error="ValueError: data.batch_size 0\nmore", traceback='File "x.py", line 3')
CUDA_OOM = Evidence(
    state="failed", error="OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", host="node1"
)
NO_STATUS = Evidence()
RUNNING = Evidence(state="running", host="node2")

CASES = [
    # (sacct row, evidence, class, node, cuda)
    ("345|FAILED|1:0|node1", USER_ERROR, Failure.USER_ERROR, "node1", False),  # dev
    ("346|FAILED|77:0|node1", RUNNING, Failure.PREFLIGHT_FAIL, "node1", False),  # dev
    ("347|FAILED|0:9|node1", RUNNING, Failure.CRASHED, "node1", False),  # dev
    ("348|FAILED|0:11|node2", NO_STATUS, Failure.CRASHED, "node2", False),  # dev
    ("349|TIMEOUT|0:0|node2", RUNNING, Failure.TIMEOUT, "node2", False),  # dev
    ("350|COMPLETED|0:0|node2", Evidence(state="completed"), Failure.COMPLETED, "node2", False),  # dev
    ("350|COMPLETED|0:0|node2", RUNNING, Failure.CRASHED, "node2", False),  # dev: ended, never wrote completed
    ("49|COMPLETED|0:0|node[1-2]", Evidence(state="completed"), Failure.COMPLETED, "node1", False),  # dev, 2 nodes
    ("17_1|CANCELLED by 0|0:15|node2", RUNNING, Failure.CANCELLED, "node2", False),  # doc: scancel of a running task
    ("360_0|FAILED|1:0|node1", CUDA_OOM, Failure.OOM, "node1", True),  # an exception exits 1 (dev); CUDA OOM in status
    ("361|OUT_OF_MEMORY|0:125|node2", RUNNING, Failure.OOM, "node2", False),  # doc (cgroup OOM kill)
    ("362|PREEMPTED|0:0|gpu07", RUNNING, Failure.PREEMPTED, "gpu07", False),  # doc
    ("363|NODE_FAIL|0:0|gpu[07-08]", RUNNING, Failure.NODE_FAIL, "", False),  # doc: which of the two failed is unknown
    ("363|NODE_FAIL|0:0|gpu07", RUNNING, Failure.NODE_FAIL, "gpu07", False),  # doc
    ("364|BOOT_FAIL|0:0|gpu09", NO_STATUS, Failure.NODE_FAIL, "gpu09", False),  # doc
    ("365|DEADLINE|0:0|node1", RUNNING, Failure.DEADLINE, "node1", False),  # doc: its --deadline, not a time limit
    (f"366|FAILED|{EXIT_HANG}:0|node1", RUNNING, Failure.HANG, "node1", False),  # watchdog's exit code
    # The job recorded its own class (preflight with its reason) whatever sacct says.
    (
        "367|FAILED|1:0|node2",
        Evidence(state="failed", failure="preflight_fail", reason="GPU 0: matmul failed"),
        Failure.PREFLIGHT_FAIL,
        "node2",
        False,
    ),
]


@pytest.mark.parametrize(("line", "evidence", "kind", "node", "cuda"), CASES)
def test_classify_real_rows(line: str, evidence: Evidence, kind: Failure, node: str, cuda: bool) -> None:
    row = SacctRow.parse(line)
    assert row is not None
    verdict = classify(row, evidence)
    assert verdict is not None
    assert (verdict.failure, verdict.node, verdict.cuda) == (kind, node, cuda)


def test_user_error_shows_its_first_line_and_preflight_its_reason() -> None:
    verdict = classify(SacctRow.parse("345|FAILED|1:0|node1"), USER_ERROR)
    assert verdict is not None and verdict.reason == "ValueError: data.batch_size 0"
    recorded = Evidence(state="failed", failure="preflight_fail", reason="scratch: 1.0 GB free, 4.0 GB needed")
    verdict = classify(SacctRow.parse("346|FAILED|77:0|node2"), recorded)
    assert verdict is not None and verdict.reason == "scratch: 1.0 GB free, 4.0 GB needed"


def test_host_oom_kill_found_in_the_log_tail() -> None:
    row = SacctRow.parse("347|FAILED|0:9|node1")
    tail = "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=347.batch."
    verdict = classify(row, Evidence(state="running", log_tail=tail))
    assert verdict is not None and verdict.failure is Failure.OOM and not verdict.cuda


def test_unfinished_and_unknown() -> None:
    # No sacct row and no final status: it may still be running (accounting lags).
    assert classify(None, RUNNING) is None
    # No sacct (accounting off): the run's own files still decide.
    verdict = classify(None, Evidence(state="failed", error="KeyError: 'x'", host="node2"))
    assert verdict is not None and (verdict.failure, verdict.node) == (Failure.USER_ERROR, "node2")
    # A class from a newer version is ignored, not a crash.
    verdict = classify(SacctRow.parse("349|TIMEOUT|0:0|node2"), Evidence(state="failed", failure="cosmic_ray"))
    assert verdict is not None and verdict.failure is Failure.TIMEOUT


def test_infrastructure_classes_count_against_the_node() -> None:
    assert {f for f in Failure if f.infrastructure} == {Failure.NODE_FAIL, Failure.PREFLIGHT_FAIL, Failure.HANG}


@pytest.mark.parametrize("line", ["", "x", "1|FAILED|x:0|n", "|FAILED|0:0|n", "1||0:0|n", "1|FAILED|0:0"])
def test_odd_sacct_lines_are_skipped(line: str) -> None:
    assert SacctRow.parse(line) is None


def test_parse_sacct_expands_pending_array_ranges() -> None:
    text = "32_[0-2%2]|CANCELLED|0:0|None assigned\n17_0|COMPLETED|0:0|node1\njunk\n"
    rows = slurmcli.parse_sacct(text)
    assert sorted(rows) == ["17_0", "32_0", "32_1", "32_2"]
    assert rows["32_1"].job_id == "32_1" and rows["32_1"].node_list == ""
    assert rows["17_0"].node_list == "node1"


def _preflight_record(tmp_path: Path, attempts: list[dict[str, object]]) -> RunRecord:
    """A run whose status.json records a multi-node preflight failure with these attempts."""
    status = RunStatus.model_validate(
        {"state": "failed", "failure": "preflight_fail", "failure_reason": "rank 1 on node2: x", "attempts": attempts}
    )
    run = RunSpec(
        run_id="abc", name="n", ablation="a", backbone="b", dataset="d", seed=0, config=TrainConfig(), axes={}
    )
    return RunRecord(run=run, path=tmp_path, state=State.FAILED, status=status)


def test_the_judged_job_s_own_record_names_the_unfit_node(tmp_path: Path) -> None:
    """A multi-node preflight recorded node2 (rank 1) on its attempt: that node is blamed, not rank 0's
    node1 that sacct names first; a record of an earlier job (a retry that never started) is not used."""
    own = {"job_id": "9_0", "failure": "preflight_fail", "node": "node2", "reason": "rank 1 on node2: x"}
    row = SacctRow.parse("9_0|FAILED|77:0|node[1-2]")
    verdict = attempt_verdict(_preflight_record(tmp_path, [own]), row)
    assert verdict is not None and (verdict.failure, verdict.node) == (Failure.PREFLIGHT_FAIL, "node2")
    retry = SacctRow.parse("12_0|FAILED|77:0|node[3-4]")
    verdict = attempt_verdict(_preflight_record(tmp_path, [own]), retry)
    assert verdict is not None and verdict.node == "node3", "another job's record names no node of this one"
    unnamed = {**own, "node": None}  # the ranks could not exchange their verdicts
    verdict = attempt_verdict(_preflight_record(tmp_path, [unnamed]), row)
    assert verdict is not None and verdict.node == "node1"


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "COMPLETING", "SPECIAL_EXIT"])
def test_a_state_that_is_not_an_end_decides_nothing(state: str) -> None:
    """A job gone from squeue whose sacct record still says it runs (slurmdbd lag, a runaway record) has
    not ended as far as anyone knows: not a crash; the run's own files still decide when they can."""
    row = SacctRow.parse(f"40_1|{state}|0:0|node1")
    assert row is not None and not row.final
    assert classify(row, RUNNING) is None and classify(row, NO_STATUS) is None
    verdict = classify(row, USER_ERROR)
    assert verdict is not None and verdict.failure is Failure.USER_ERROR


def test_squeue_lists_hidden_partitions_and_an_unrecorded_end_is_neither_running_nor_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import subprocess

    from orchestrator.launch import status

    calls: list[list[str]] = []

    def fake(args: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        out = "40_1|RUNNING|0:0|node1\n40_2|COMPLETED|0:0|node1\n" if args[0] == "sacct" else "40_3|PENDING\n"
        return subprocess.CompletedProcess(args, 0, out, "")

    monkeypatch.setattr(slurmcli, "run", fake)
    states = slurmcli.query_states(["40"])
    assert states.states == {"40_1": slurmcli.UNRECORDED, "40_2": "COMPLETED", "40_3": "PENDING"}
    assert "-a" in calls[0] and calls[0][0] == "squeue"
    record = _preflight_record(tmp_path, [])
    running = RunRecord(run=record.run, path=tmp_path, state=State.RUNNING, status=RunStatus())
    shown = status._state(running, "40_1", states.states["40_1"])
    assert shown == "unrecorded" and shown in status.TERMINAL


def test_cancels_name_who_cancelled() -> None:
    verdict = classify(SacctRow.parse("17_1|CANCELLED by 1234|0:15|node2"), RUNNING)
    assert verdict is not None and (verdict.failure, verdict.by_uid) == (Failure.CANCELLED, 1234)
    assert verdict.reason == "CANCELLED by uid 1234"
    pending = classify(SacctRow.parse("32_[0-2]|CANCELLED by 0|0:0|None assigned"), NO_STATUS)
    assert pending is not None and pending.by_uid == 0 and pending.node == ""


@pytest.mark.parametrize(
    ("tres", "req", "mem_gb"),
    [
        ("billing=8,cpu=8,mem=64G,node=1", "64G", 64.0),
        ("billing=8,cpu=8,mem=64G,node=2", "32G", 32.0),  # AllocTRES is the job's total: per node
        ("cpu=1,mem=3000M,node=1", "", 3000 / 1024),
        ("", "16Gn", 16.0),  # not allocated (AllocTRES empty): ReqMem per node
        ("", "4000Mc", None),  # per CPU: unknown per node
        ("", "", None),
    ],
)
def test_the_memory_the_job_had_comes_from_accounting(tres: str, req: str, mem_gb: float | None) -> None:
    row = SacctRow.parse(f"361|OUT_OF_MEMORY|0:125|node2|{tres}|{req}")
    assert row is not None and row.mem_gb == mem_gb
    verdict = classify(row, RUNNING)
    assert verdict is not None and verdict.failure is Failure.OOM and verdict.mem_gb == mem_gb


def test_sacct_is_asked_for_the_memory_in_the_same_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    asked: list[list[str]] = []

    def fake(args: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        asked.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(slurmcli, "run", fake)
    slurmcli.query_states(["40"])
    [sacct] = [args for args in asked if args[0] == "sacct"]
    assert sacct[sacct.index("-o") + 1] == "JobID,State,ExitCode,NodeList,AllocTRES,ReqMem"


def test_without_accounting_the_node_is_slurms_name_never_the_hostname(tmp_path: Path) -> None:
    """No sacct row: the node blamed is the one the attempt recorded from SLURMD_NODENAME; status.json's
    host (socket.gethostname(), maybe a name --exclude does not take) is never used."""
    status = RunStatus.model_validate(
        {"state": "failed", "error": "x", "host": "gpu07.cluster.example.org", "attempts": [{"job_id": "9_0"}]}
    )
    record = RunRecord(run=_preflight_record(tmp_path, []).run, path=tmp_path, state=State.FAILED, status=status)
    crashed = Evidence(state="running")
    assert classify(None, crashed) is None
    verdict = attempt_verdict(record, SacctRow.parse("9_0|FAILED|0:9|None assigned"))
    assert verdict is not None and verdict.node == ""
    named = RunStatus.model_validate(
        {**status.model_dump(mode="json"), "attempts": [{"job_id": "9_0", "slurm_node": "gpu07"}]}
    )
    record = RunRecord(run=record.run, path=tmp_path, state=State.FAILED, status=named)
    verdict = attempt_verdict(record, SacctRow.parse("9_0|FAILED|0:9|None assigned"))
    assert verdict is not None and verdict.node == "gpu07"
    verdict = attempt_verdict(record, None)
    assert verdict is not None and verdict.node == "gpu07"


def test_a_job_records_slurms_name_of_its_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.launch import job

    monkeypatch.setenv("SLURMD_NODENAME", "gpu07")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    [entry] = job.TrainJob(tmp_path, {}, {})._attempts({"host": "gpu07.cluster.example.org", "slurm_job_id": "5"})
    assert entry["slurm_node"] == "gpu07" and entry["host"] == "gpu07.cluster.example.org"


def test_a_job_revoked_here_ran_on_a_sibling_cluster_and_is_not_taken_for_an_end(tmp_path: Path) -> None:
    """Federation: REVOKED is this cluster's record of a job a sibling cluster started. Taken for an end,
    the run was classified crashed and submitted again while it trained there."""
    from orchestrator.launch import status

    row = SacctRow.parse("41_0|REVOKED|0:0|None assigned")
    assert row is not None and not row.final
    assert classify(row, Evidence()) is None  # no end known: neither retried nor charged
    record = _preflight_record(tmp_path, [])
    record = RunRecord(run=record.run, path=tmp_path, state=State.PENDING, status=RunStatus())
    assert status._state(record, "41_0", "REVOKED") == "unrecorded"
