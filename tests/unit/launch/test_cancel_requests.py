"""Our logic behind `cancel` beside `submit --follow` (launch/cancels.py, JobStates' array fallback, judge's
wait for a recent job accounting has no row of); the dev cluster's test runs it against real SLURM."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import store
from orchestrator.launch import cancels, judge, slurmcli
from orchestrator.launch.failures import Failure
from orchestrator.store import run_states
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec


def test_a_cancel_made_since_the_follow_started_is_newer_an_earlier_one_is_not(tmp_path: Path) -> None:
    assert cancels.latest(tmp_path) is None and cancels.newer(tmp_path, None) is None
    cancels.request(tmp_path)
    before = cancels.latest(tmp_path)
    assert before is not None and before.by.startswith("pid ")
    assert cancels.newer(tmp_path, before) is None, "the cancel before the follow started does not stop it"
    cancels.request(tmp_path)
    assert cancels.newer(tmp_path, before) not in (None, before)
    cancels.request(tmp_path / "never-submitted")
    assert not (tmp_path / "never-submitted").exists()


def test_an_unreadable_request_file_still_stops_a_follow(tmp_path: Path) -> None:
    cancels.request(tmp_path)
    seen = cancels.latest(tmp_path)
    (tmp_path / cancels.REQUEST_FILE).write_text("{not json")
    asked = cancels.newer(tmp_path, seen)
    assert asked is not None and asked.id == cancels.UNREADABLE and cancels.REQUEST_FILE in asked.by


def test_a_task_reads_its_arrays_row_while_accounting_has_none_of_its_own() -> None:
    """sacct's first rows of an array cancelled while pending: `A|CANCELLED by U`, no `A_[0-1]` yet."""
    rows = slurmcli.parse_sacct("761|CANCELLED by 0|0:0|None assigned||4G\n")
    states = slurmcli.JobStates({"761": "CANCELLED"}, accounting=True, ends=rows)
    end = states.end("761_1")
    assert end is not None and end.state == "CANCELLED" and end.by_uid == 0
    assert states.state("761_1") == "CANCELLED" and states.end("762_0") is None
    own = slurmcli.parse_sacct("761|CANCELLED by 0|0:0|None assigned||4G\n761_1|COMPLETED|0:0|n1||4G\n")
    assert slurmcli.JobStates({}, True, ends=own).end("761_1").state == "COMPLETED"  # type: ignore[union-attr]


@pytest.fixture
def submitted(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], dict[str, judge.Judged]]:
    """One run recorded as task 761_0, judged against the given sacct output (our sacct wrapper faked)."""
    spec = load_spec(write_spec())
    runs, root = plan(spec)[:1], spec.output_path
    root.mkdir(parents=True)
    jobs = {runs[0].run_id: "761_0"}
    store.record_array(root, store.read_manifest(root), "761", jobs, {"runs": list(jobs)})
    monkeypatch.setattr(slurmcli, "available", lambda: True)

    def judged(sacct: str) -> dict[str, judge.Judged]:
        def run(args: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
            out = sacct if args[0] == "sacct" else ""
            return subprocess.CompletedProcess(args, 0, out, "")

        monkeypatch.setattr(slurmcli, "run", run)
        return judge.failed_before(run_states.inspect(runs, root), root)

    return judged


def test_a_pending_array_cancelled_a_moment_ago_is_judged_cancelled_or_waited_for(
    submitted: Callable[[str], dict[str, judge.Judged]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (only,) = submitted("761|CANCELLED by 0|0:0|None assigned||4G\n").values()
    assert only.verdict is not None and only.verdict.failure is Failure.CANCELLED
    (only,) = submitted("").values()  # slurmdbd has not recorded the job at all yet
    assert only.verdict is None and only.unrecorded == judge.NO_ROW
    monkeypatch.setattr(time, "time", lambda: 10**10)  # long after its submission: taken for never run
    (only,) = submitted("").values()
    assert only.verdict is None and only.unrecorded == ""
