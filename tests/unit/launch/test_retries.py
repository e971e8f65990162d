"""Retries that learn and the bad-node quarantine: pure decisions and the sweep's file (unit, no cluster)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.launch import quarantine, retries, slurmcli
from orchestrator.launch.failures import Failure, Verdict
from orchestrator.sweep.retry import RetryPolicy
from orchestrator.sweep.site import SlurmConfig
from trainers.contract import RunStatus

POLICY = RetryPolicy()
BASE = SlurmConfig(mem_gb=8, timeout_min=60, exclude="node9")


def _attempt(failure: str, node: str = "node1", **resources: object) -> dict[str, object]:
    return {"job_id": f"1_{failure}", "failure": failure, "node": node, "resources": resources}


def test_first_attempt_and_completed_runs_go_as_planned() -> None:
    assert retries.decide(POLICY, None, [], BASE, None) == retries.Decision(True)


def test_user_error_is_not_retried() -> None:
    decision = retries.decide(POLICY, Verdict(Failure.USER_ERROR, "node1", "KeyError: 'x'"), [{}], BASE, None)
    assert not decision.retry and decision.why == "user error, not retried: KeyError: 'x'"


def test_host_oom_grows_memory_up_to_the_cap() -> None:
    oom = Verdict(Failure.OOM, "node1", "host memory")
    decision = retries.decide(POLICY, oom, [{"resources": {"mem_gb": 8}}], BASE, None)
    assert decision.retry and decision.mem_gb == 12 and decision.why == "host out of memory: 8 -> 12 GB"
    capped = RetryPolicy(oom_mem_cap_gb=10)
    assert retries.decide(capped, oom, [{"resources": {"mem_gb": 8}}], BASE, None).mem_gb == 10
    at_cap = retries.decide(capped, oom, [{"resources": {"mem_gb": 10}}], BASE, None)
    assert not at_cap.retry and "the cap" in at_cap.why
    unset = retries.decide(POLICY, oom, [{}], SlurmConfig(), None)  # partition default: from oom_start_mem_gb
    assert unset.mem_gb == 24


def test_cuda_oom_halves_the_batch_per_device_and_keeps_memory() -> None:
    verdict = Verdict(Failure.OOM, "node1", "CUDA out of memory", cuda=True)
    first = retries.decide(POLICY, verdict, [{"resources": {"mem_gb": 8}}], BASE, None)
    assert (first.retry, first.grad_accum_factor, first.mem_gb) == (True, 2, 8)
    second = retries.decide(POLICY, verdict, [_attempt("oom", grad_accum_factor=2), {}], BASE, None)
    assert second.grad_accum_factor == 2  # the last attempt's resources ({}): from 1 again
    again = retries.decide(POLICY, verdict, [{"resources": {"grad_accum_factor": 2}}], BASE, None)
    assert again.grad_accum_factor == 4


def test_timeout_grows_time_up_to_the_partitions_max_time() -> None:
    verdict = Verdict(Failure.TIMEOUT, "node2", "TIMEOUT")
    assert retries.decide(POLICY, verdict, [{}], BASE, None).timeout_min == 120
    assert retries.decide(POLICY, verdict, [{}], BASE, 90).timeout_min == 90


def test_never_beyond_max_attempts() -> None:
    verdict = Verdict(Failure.CRASHED, "node1", "FAILED 0:11")
    two = [_attempt("crashed"), {}]
    assert retries.decide(POLICY, verdict, two, BASE, None).retry
    three = [_attempt("crashed"), _attempt("timeout"), {}]
    decision = retries.decide(POLICY, verdict, three, BASE, None)
    assert not decision.retry and decision.why == "3 attempts (retry.max_attempts), the last crashed"


def test_node_failures_exclude_the_node_and_do_not_use_the_runs_attempts() -> None:
    verdict = Verdict(Failure.PREFLIGHT_FAIL, "node2", "injected fault")
    history = [_attempt("crashed"), _attempt("crashed"), _attempt("hang", node="node3"), {}]
    decision = retries.decide(POLICY, verdict, history, BASE, None, job_id=None)
    assert decision.retry and decision.exclude == ("node3", "node2")
    config = retries.resources(BASE, decision, quarantined=["node2", "node4"])
    assert config.exclude == "node9,node3,node2,node4" and config.mem_gb == 8
    many = [_attempt("preflight_fail")] * POLICY.max_node_attempts + [{}]
    assert not retries.decide(POLICY, verdict, many, BASE, None).retry


def test_a_latest_attempt_that_never_started_is_counted() -> None:
    verdict = Verdict(Failure.NODE_FAIL, "node2", "NODE_FAIL")
    decision = retries.decide(POLICY, verdict, [{"job_id": "5_0", "resources": {}}], BASE, None, job_id="6_0")
    assert decision.previous == {"job_id": "6_0", "failure": "node_fail", "node": "node2", "reason": "NODE_FAIL"}


def test_resources_meet_the_allow_lists() -> None:
    hostile = retries.Decision(True, exclude=("node1;rm -rf /",))
    with pytest.raises(ValueError, match="host list"):
        retries.resources(BASE, hostile, [])


def test_quarantine_counts_each_attempt_once_and_clears(tmp_path: Path) -> None:
    events = [quarantine.Event(f"7_{i}", "node2", "preflight_fail", "injected fault", 100.0 + i) for i in range(2)]
    quarantine.record(tmp_path, events[:1])
    quarantine.record(tmp_path, events[:1])  # the same attempt seen at the next poll
    assert quarantine.nodes(tmp_path, threshold=2) == []
    quarantine.record(tmp_path, events)
    [node] = quarantine.nodes(tmp_path, threshold=2)
    assert (node.node, node.failures) == ("node2", 2) and node.reasons[0] == "preflight_fail: injected fault"
    assert quarantine.clear(tmp_path) == 1
    assert quarantine.nodes(tmp_path, threshold=1) == []
    assert len(json.loads((tmp_path / quarantine.FILE).read_text())["events"]) == 2  # history kept


def test_unreadable_quarantine_is_named_and_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / quarantine.FILE).write_text("{broken")
    _, problem = quarantine.load(tmp_path)
    assert problem is not None and problem.startswith("quarantine.json: ")
    quarantine.record(tmp_path, [quarantine.Event("1_0", "node2", "hang", "", 1.0)])
    assert (tmp_path / quarantine.FILE).read_text() == "{broken"
    assert quarantine.nodes(tmp_path, 1) == []


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("UNLIMITED", None),
        ("30", 30),
        ("5:30", 6),
        ("02:00:00", 120),
        ("1-00:00:00", 1440),
        ("2-12", 3600),
        ("x", None),
    ],
)
def test_slurm_time_format(text: str, minutes: int | None) -> None:
    assert slurmcli.parse_minutes(text) == minutes


def test_table_notes_name_the_runs_retried_with_a_smaller_batch_per_device() -> None:
    import pandas as pd

    from orchestrator.results.provenance import retry_notes
    from orchestrator.results.reader import retried_accum
    from trainers.contract import RunStatus

    status = RunStatus.model_validate({"attempts": [{"failure": "oom"}, {"resources": {"grad_accum_factor": 2}}]})
    assert retried_accum(status) == 2 and retried_accum(RunStatus()) is None
    runs = pd.DataFrame(
        {
            "name": ["a/s0", "b/s0", "c/s0"],
            "state": ["completed", "completed", "failed"],
            "retry_grad_accum_factor": [2, None, 4],
        }
    )
    [note] = retry_notes(runs)
    assert note.endswith("(same effective batch): a/s0 (x2).")
    assert retry_notes(runs.drop(columns="retry_grad_accum_factor")) == []


def test_the_sweep_retry_block_wins_over_the_sites(tmp_path: Path) -> None:
    from orchestrator.sweep.errors import SpecError
    from orchestrator.sweep.spec import SweepSpec

    site_file = tmp_path / "cluster.yaml"
    site_file.write_text("retry: {oom_mem_cap_gb: 64, quarantine_after: 3}\n")
    spec = SweepSpec.model_validate({"name": "x", "site": str(site_file), "retry": {"quarantine_after": 1}})
    policy = retries.policy_for(spec)
    assert (policy.oom_mem_cap_gb, policy.quarantine_after, policy.max_attempts) == (64, 1, 3)
    assert retries.policy_for(SweepSpec(name="x")) == RetryPolicy()
    site_file.write_text("retry: {oom_mem_factor: 0.5}\n")
    with pytest.raises(SpecError, match="oom_mem_factor"):
        retries.policy_for(spec)


def test_the_dev_profile_turns_the_gpu_preflight_off_and_the_attempt_carries_it() -> None:
    """The dev cluster's GPUs are fake gres: its profile says so, and each submitted attempt tells
    the job to skip the GPU checks (other profiles keep them on)."""
    from orchestrator.launch.retries import policy_for
    from orchestrator.sweep.spec import load_spec

    repo = Path(__file__).resolve().parents[3]
    spec = load_spec(repo / "sweeps" / "demo.yaml")
    assert policy_for(spec, str(repo / "slurm" / "profiles" / "dev.yaml")).preflight_gpus is False
    assert policy_for(spec).preflight_gpus is True


def test_node_failures_requeued_in_the_same_job_are_quarantine_events(tmp_path: Path) -> None:
    """SLURM requeued job 8_0 after its node died, the watchdog requeued 9_0 after a hang: no launcher saw
    those attempts end, status.json has them; the attempt still running and a run's own errors are not."""
    lost = {
        "job_id": "8_0",
        "host": "node1",
        "at": 50.0,
        "failure": "node_fail",
        "node": "node1",
        "reason": "NODE_FAIL",
    }
    hung = {"job_id": "9_0", "failure": "hang", "node": "node2", "reason": "no progress for 301 s", "at": 60.0}
    statuses = [
        RunStatus(attempts=[lost, {"job_id": "8_0", "host": "node2"}]),
        RunStatus(attempts=[hung, {"job_id": "9_0"}, {"job_id": "9_0", "failure": "hang", "node": "node2"}]),
        RunStatus(attempts=[{"job_id": "7_0", "failure": "oom", "node": "node1"}, {"job_id": "7_0"}]),
        RunStatus(attempts=[{"job_id": "6_0", "failure": "node_fail", "node": "node1"}, {"job_id": "10_0"}]),
    ]
    events = quarantine.restarted(statuses)
    assert [(e.job_id, e.node, e.failure, e.at) for e in events] == [
        ("8_0#0", "node1", "node_fail", 50.0),
        ("9_0#0", "node2", "hang", 60.0),
    ]
    quarantine.record(tmp_path, events)
    quarantine.record(tmp_path, quarantine.restarted(statuses))  # seen again at the next poll: counted once
    assert [(q.node, q.failures) for q in quarantine.nodes(tmp_path, threshold=1)] == [("node1", 1), ("node2", 1)]


def test_submissions_that_left_no_status_count_against_max_attempts() -> None:
    """Jobs that failed before the trainer wrote status.json (a setup line, exit 127): status.json has no
    attempt for them, the manifest counts their submissions."""
    crashed = Verdict(Failure.CRASHED, "node3", "FAILED 127:0 without a recorded error")
    assert retries.decide(POLICY, crashed, [], BASE, None, job_id="101_0", submitted=2).retry
    decision = retries.decide(POLICY, crashed, [], BASE, None, job_id="102_0", submitted=3)
    assert not decision.retry
    assert decision.why.startswith("3 attempts (retry.max_attempts), the last crashed; 2 ended before the job")
    # Attempts status.json knows are not counted twice.
    known = [{"job_id": "1_0", "failure": "crashed"}, {"job_id": "2_0"}]
    assert retries.decide(POLICY, crashed, known, BASE, None, job_id="2_0", submitted=2).retry


def test_cancelled_runs_are_not_retried_whoever_cancelled() -> None:
    import os

    mine = Verdict(Failure.CANCELLED, "node1", "CANCELLED by uid 1", by_uid=os.getuid())
    decision = retries.decide(POLICY, mine, [{"job_id": "1_0"}], BASE, None, job_id="1_0")
    assert not decision.retry and decision.why == "cancelled (scancel), not retried"
    admin = Verdict(Failure.CANCELLED, "node1", "CANCELLED by uid 4242", by_uid=os.getuid() + 4242)
    decision = retries.decide(POLICY, admin, [{"job_id": "1_0"}], BASE, None, job_id="1_0")
    assert not decision.retry and "an administrator or SLURM" in decision.why


def test_a_fresh_submit_runs_a_cancelled_run_again_as_it_was() -> None:
    """The submit the user just asked for outranks the cancel before it, whoever cancelled; resources as
    planned (a cancel says nothing about them), the verdict recorded on the attempt as for any retry."""
    for uid in (None, 4242):
        cancelled = Verdict(Failure.CANCELLED, "node1", "CANCELLED", by_uid=uid)
        decision = retries.decide(POLICY, cancelled, [{"job_id": "1_0"}], BASE, None, job_id="1_0", fresh=True)
        previous = {"job_id": "1_0", "failure": "cancelled", "node": "node1", "reason": "CANCELLED"}
        assert decision == retries.Decision(True, "cancelled: submitted again", previous=previous)


def test_preemptions_do_not_use_max_attempts_but_have_a_cap_of_their_own() -> None:
    preempted = Verdict(Failure.PREEMPTED, "gpu07", "PREEMPTED")
    history = [{"job_id": f"{i}_0", "failure": "preempted"} for i in range(4)] + [{"job_id": "9_0"}]
    decision = retries.decide(POLICY, preempted, history, BASE, None, job_id="9_0")
    assert decision.retry and "not counted in retry.max_attempts" in decision.why
    crashed = Verdict(Failure.CRASHED, "node1", "FAILED 0:11")
    assert retries.decide(POLICY, crashed, history, BASE, None, job_id="9_0").retry  # 1 of the run's own
    endless = [{"job_id": f"{i}_0", "failure": "preempted"} for i in range(retries.MAX_PREEMPTIONS)] + [{}]
    decision = retries.decide(POLICY, preempted, endless, BASE, None)
    assert not decision.retry and decision.why == f"preempted 21 times (at most {retries.MAX_PREEMPTIONS})"


def test_deadline_is_not_a_time_limit_and_is_not_retried() -> None:
    verdict = Verdict(Failure.DEADLINE, "node1", "DEADLINE: the job's --deadline passed before it finished")
    decision = retries.decide(POLICY, verdict, [{}], BASE, None)
    assert not decision.retry and decision.timeout_min is None and "--deadline" in decision.why


def test_host_oom_asks_more_than_the_job_had_when_mem_was_the_partition_default() -> None:
    oom = Verdict(Failure.OOM, "node1", "host memory", mem_gb=64.0)  # sacct: the partition gave 64 GB
    decision = retries.decide(POLICY, oom, [{"resources": {"mem_gb": None}}], SlurmConfig(), None)
    assert decision.retry and decision.mem_gb == 96 and decision.why == "host out of memory: 64 -> 96 GB"
    asked = retries.decide(POLICY, oom, [{"resources": {"mem_gb": 8}}], BASE, None)
    assert asked.mem_gb == 96  # never less than what the job had, whatever it asked for


def test_a_node_failure_of_a_multi_node_job_charges_no_node(tmp_path: Path) -> None:
    from orchestrator.launch import judge
    from orchestrator.launch.failures import Evidence, SacctRow, classify

    verdict = classify(SacctRow.parse("5_0|NODE_FAIL|0:0|gpu[07-08]"), Evidence(state="running"))
    assert verdict is not None and verdict.node == ""
    decision = retries.decide(POLICY, verdict, [{"job_id": "5_0"}], BASE, None, job_id="5_0")
    assert decision.retry and decision.exclude == () and "no node can be named" in decision.why
    assert judge.event(judge.Judged(None, verdict, "5_0")) is None  # type: ignore[arg-type]


def test_a_preflight_failure_on_every_node_is_the_sweeps_and_charges_none(tmp_path: Path) -> None:
    """An unmounted dataset root fails the preflight alike on node1 and node2 (rank prefix and sizes
    aside): no node is quarantined for it, and the sweep names the problem; a node's own fault counts."""
    from orchestrator.launch import judge, status

    reasons = {
        "node1": "dataset root /data/cub: not mounted",
        "node2": "rank 1 on node2: dataset root /data/cub: not mounted",
    }
    events = [
        quarantine.Event(f"{i}_0", node, "preflight_fail", why, 10.0 + i)
        for i, (node, why) in enumerate(reasons.items())
    ]
    events += [quarantine.Event(f"{i}_0", "node3", "preflight_fail", "GPU 0: matmul failed", 20.0 + i) for i in (5, 6)]
    quarantine.record(tmp_path, events)
    assert [q.node for q in quarantine.nodes(tmp_path, threshold=1)] == ["node3"]
    assert quarantine.sweep_wide(tmp_path) == {"dataset root /data/cub: not mounted": ["node1", "node2"]}
    [problem] = status._sweep_wide_preflight(tmp_path)
    assert "preflight fails alike on 2 nodes (node1, node2)" in problem.reason
    verdict = Verdict(Failure.PREFLIGHT_FAIL, "node4", "dataset root /data/cub: not mounted")
    record = SimpleNamespace(status=RunStatus(), run=None)
    judged = judge.Judged(record, verdict, "9_0")  # type: ignore[arg-type]
    decision = judge.decide(POLICY, judged, record, BASE, None, quarantine.sweep_wide_keys(tmp_path))  # type: ignore[arg-type]
    assert not decision.retry and "a problem of the sweep" in decision.why


def test_an_exclude_list_over_slurms_limit_is_one_clear_line() -> None:
    from orchestrator.sweep.errors import SpecError

    quarantined = [f"gpu-node{i:03d}" for i in range(90)]
    with pytest.raises(SpecError, match=r"^--exclude would name 91 nodes \(1085 characters, SLURM takes 1024\)"):
        retries.resources(BASE, retries.Decision(True), quarantined)
    with pytest.raises(SpecError) as caught:  # any other value the allow-lists refuse: one line, not pydantic's
        retries.resources(BASE, retries.Decision(True, mem_gb=-1.0), [])
    assert str(caught.value).startswith("retry resources: mem_gb") and "\n" not in str(caught.value)


def test_status_shows_the_tries_the_policy_counts() -> None:
    """A job requeued once (two attempt entries, one job id) and a second submission that ended before
    writing status.json: the policy counts 3 tries, and `orchestrate status` must say 3, not 2."""
    from orchestrator.launch import status

    requeued = RunStatus.model_validate({"state": "failed", "attempts": [{"job_id": "1_0"}, {"job_id": "1_0"}]})
    shown = status.tries_of(requeued, submitted=2, job_id="2_0")
    crashed = Verdict(Failure.CRASHED, "node3", "FAILED 127:0 without a recorded error")
    attempts = [a.model_dump(mode="json") for a in requeued.attempts]
    decision = retries.decide(POLICY, crashed, attempts, BASE, None, job_id="2_0", submitted=2)
    assert shown == 3
    assert not decision.retry and decision.why.startswith(f"{shown} attempts (retry.max_attempts)")
    # A run started before status.json listed attempts: its one start is the manifest's job.
    legacy = RunStatus.model_validate({"state": "running", "started_at": 1.0})
    assert status.tries_of(legacy, submitted=1, job_id="7_0") == 1
    assert status.tries_of(RunStatus.model_validate({"state": "pending"}), submitted=0, job_id=None) == 0
