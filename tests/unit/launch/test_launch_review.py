"""Launch logic a busy cluster exposes: fixes found in review, each over faked SLURM answers (unit, no
cluster): squeue, sacct, sinfo and scontrol answer from Python fakes, sbatch is tests/support/fake_submitit.py."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_submitit import FakeSbatch
from rich.console import Console

from orchestrator.launch import limits, retries, slurmcli
from orchestrator.launch import slurm as slurm_launch
from orchestrator.launch.failures import Evidence, Failure, SacctRow, Verdict, classify
from orchestrator.sweep.plan import plan
from orchestrator.sweep.retry import RetryPolicy
from orchestrator.sweep.site import SlurmConfig
from orchestrator.sweep.spec import load_spec

BASE = SlurmConfig.model_validate({"partition": "gpu"})


class OneNodeCluster:
    """A partition of one node, `node3`, on which every job ends NODE_FAIL; sbatch is fake_submitit's."""

    def __init__(self, nodes: str = "node3|gpu*\n") -> None:
        self.sinfo = nodes
        self.sbatch = FakeSbatch()
        self.polls = 0

    def run(self, args: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """slurmcli.run and limits.run."""
        if args[0] == "sacct":
            jobs = self.sbatch.task_ids
            rows = "".join(f"{job}|NODE_FAIL|0:0|node3|billing=1,mem=8G,node=1|8G\n" for job in jobs)
            return subprocess.CompletedProcess(args, 0, rows, "")
        if args[0] == "sinfo":
            return subprocess.CompletedProcess(args, 0, self.sinfo, "")
        if args[:3] == ["scontrol", "show", "config"]:
            return subprocess.CompletedProcess(args, 0, "MaxArraySize = 1001\n", "")
        if args[0] == "squeue":  # every job has left the queue by the next poll
            return subprocess.CompletedProcess(args, 0, "", "")
        return subprocess.CompletedProcess(args, 1, "", f"{args[0]}: not here")

    def sleep(self, _: float) -> None:
        """time.sleep of the follow loop: ends a loop that would never end."""
        self.polls += 1
        if self.polls > 20:
            raise AssertionError(f"submit --follow is still polling after 20 polls ({len(self.sbatch.calls)} arrays)")


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> OneNodeCluster:
    fake = OneNodeCluster()
    monkeypatch.setattr(slurmcli, "run", fake.run)
    monkeypatch.setattr(limits, "run", fake.run)
    monkeypatch.setattr(slurmcli, "available", lambda: True)
    fake.sbatch.install(monkeypatch)
    monkeypatch.setattr(slurm_launch, "time", SimpleNamespace(sleep=fake.sleep, monotonic=time.monotonic))
    return fake


def test_a_retry_never_excludes_every_node_of_the_partition() -> None:
    """One node: its failure cannot be left out (the job would pend forever); three nodes: the last one
    left is kept, whichever list (the run's own failures, the quarantine) would have named it."""
    one = frozenset({"node3"})
    own = retries.Decision(True, exclude=("node3",))
    assert retries.resources(BASE, own, ["node3"], one).exclude is None
    assert retries.excluded(BASE, own, ["node3"], one) == ([], ["node3"])
    three = frozenset({"node1", "node2", "node3"})
    config = retries.resources(BASE, retries.Decision(True, exclude=("node3",)), ["node1", "node2"], three)
    assert config.exclude == "node3,node1"
    # The user's own exclude always stands, and nodes outside the partition never count as its last.
    user = BASE.model_copy(update={"exclude": "node1"})
    assert retries.resources(user, retries.Decision(True, exclude=("node2", "other9")), [], three).exclude == (
        "node1,node2,other9"
    )
    # Unknown partition (sinfo could not say): as before, every failed node is excluded.
    assert retries.resources(BASE, own, ["node3"]).exclude == "node3"


def test_partition_nodes_from_sinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sinfo -N -o %N|%P`: the named partition's nodes, or the default partition's (marked `*`)."""
    answers = {"": "node1|debug*\nnode2|debug*\ngpu1|gpu\n", "gpu": "gpu1|gpu\ngpu2|gpu\n"}

    def fake(args: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        partition = args[args.index("-p") + 1] if "-p" in args else ""
        return subprocess.CompletedProcess(args, 0, answers[partition], "")

    monkeypatch.setattr(slurmcli, "run", fake)
    monkeypatch.setattr(slurmcli, "available", lambda: True)
    assert slurmcli.partition_nodes(None) == frozenset({"node1", "node2"})
    assert slurmcli.partition_nodes("gpu") == frozenset({"gpu1", "gpu2"})
    monkeypatch.setattr(slurmcli, "run", lambda args, timeout_s=60.0: subprocess.CompletedProcess(args, 1, "", "x"))
    assert slurmcli.partition_nodes("gpu") is None


def test_follow_on_a_one_node_partition_retries_there_and_ends(
    cluster: OneNodeCluster, write_spec: Callable[..., Path]
) -> None:
    """Node failures on the only node: every retry used to carry `--exclude=node3`, a job that can never
    start. It is retried on that node until retry.max_node_attempts, then left with one line."""
    spec = load_spec(write_spec())
    runs = plan(spec)[:1]
    console = Console(width=400, record=True)
    slurm_launch.SlurmLauncher(spec, console).follow(runs, 0.0)
    out = console.export_text()
    excludes = [call.parameters.get("exclude") for call in cluster.sbatch.calls]  # what each sbatch was given
    assert len(excludes) > 1, out
    assert all(exclude is None or "node3" not in exclude for exclude in excludes), excludes
    assert "node3: not excluded after all (no other node of the partition is left): retried there" in out
    assert "4 attempts (retry.max_attempts), the last node_fail; 3 ended before the job wrote status.json" in out
    assert len(cluster.sbatch.arrays) == 4


def test_the_retry_line_says_a_node_kept_is_retried_there(
    cluster: OneNodeCluster, write_spec: Callable[..., Path]
) -> None:
    """The `retry:` line said "retried without it" of the one node the retry was sent back to."""
    spec = load_spec(write_spec())
    console = Console(width=400, record=True)
    slurm_launch.SlurmLauncher(spec, console).follow(plan(spec)[:1], 0.0)
    out = console.export_text()
    assert "retried without it" not in out, out
    assert ": node_fail on node3: retried there (no other node of the partition is left)" in out, out


def test_node_failures_before_the_job_wrote_anything_use_up_the_attempts() -> None:
    """BOOT_FAIL (or a node lost before the job started) leaves no status.json: those submissions count as
    the run's (docs: every submission is an attempt), so the run stops after retry.max_attempts instead of
    being one node failure again at every submission."""
    policy = RetryPolicy()
    verdict = Verdict(Failure.NODE_FAIL, "node3", "BOOT_FAIL")
    assert retries.decide(policy, verdict, [], BASE, None, job_id="102_0", submitted=3).retry
    decision = retries.decide(policy, verdict, [], BASE, None, job_id="103_0", submitted=4)
    assert not decision.retry
    assert (
        decision.why == "4 attempts (retry.max_attempts), the last node_fail; 3 ended before the job wrote status.json"
    )
    # Node failures the job recorded itself still use retry.max_node_attempts alone, not the run's attempts.
    seen = [{"job_id": f"{i}_0", "failure": "node_fail", "node": "node3"} for i in range(4)] + [{"job_id": "9_0"}]
    assert retries.decide(policy, verdict, seen, BASE, None, job_id="9_0", submitted=5).retry


def test_a_host_oom_kill_of_the_srun_step_is_oom_not_a_crash() -> None:
    """submitit's script runs the trainer under srun, which exits 128 + 9 when the kernel's OOM killer ends
    its task: the allocation's row is `FAILED 137:0`, not `0:9`. With the oom-kill line in the log that is
    a host OOM (retried with more memory), not a crash retried as it was until max_attempts."""
    tail = (
        "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=348.0. Some of the step tasks have been OOM Killed."
    )
    row = SacctRow.parse("348_0|FAILED|137:0|node1|billing=1,mem=8G,node=1|8G")
    verdict = classify(row, Evidence(state="running", log_tail=tail))
    assert verdict is not None and verdict.failure is Failure.OOM and not verdict.cuda and verdict.mem_gb == 8
    # Without that line, exit 137 stays a crash (a kill -9 by hand is not a memory problem).
    verdict = classify(row, Evidence(state="running", log_tail="srun: error: node1: task 0: Killed"))
    assert verdict is not None and verdict.failure is Failure.CRASHED
