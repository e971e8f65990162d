"""`submit --follow` over a faked SLURM: the loop's own logic (retry limits, accounting that lags, a
controller that fails for a poll). squeue, sacct, scontrol and sacctmgr answer from Python fakes, and
submitit's executor submits to the fake sbatch of tests/support/fake_submitit.py; nothing here needs a
cluster (the dev cluster's tests run the real commands)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_submitit import SOCKET, Failure, FakeSbatch
from rich.console import Console
from submitit.core.utils import FailedJobError

from orchestrator import store
from orchestrator.launch import limits, sbatch_failures, slurmcli, status
from orchestrator.launch import slurm as slurm_launch
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec

Answer = Callable[[list[str]], subprocess.CompletedProcess[str]]


class FakeSlurm:
    """squeue/sacct/scontrol/sacctmgr answers, and the jobs sbatch was given (fake_submitit: ids from 100)."""

    def __init__(self, sacct_state: str = "FAILED|127:0") -> None:
        self.sacct_state = sacct_state
        """State|ExitCode every submitted task has in sacct once it left the queue."""
        self.squeue: list[Answer | None] = []
        """Per call of the sweep's squeue (slurmcli's), a special answer (None or past the list: an empty queue)."""
        self.sbatch = FakeSbatch()
        self.earlier: list[str] = []
        """Jobs submitted before the test's submit (`_submitted_before`), in sacct too."""
        self.polls = 0

    @property
    def arrays(self) -> list[str]:
        """Every job the controller holds: the earlier ones, then those sbatch took."""
        return self.earlier + self.sbatch.arrays

    def run(self, args: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """slurmcli.run and limits.run."""
        if args[0] == "squeue":
            special = self.squeue.pop(0) if self.squeue and "--array" in args else None
            return special(args) if special else subprocess.CompletedProcess(args, 0, "", "")
        if args[0] == "sacct":
            jobs = self.earlier + self.sbatch.task_ids
            rows = "".join(f"{job}|{self.sacct_state}|node3|billing=1,mem=8G,node=1|8G\n" for job in jobs)
            return subprocess.CompletedProcess(args, 0, rows, "")
        if args[:3] == ["scontrol", "show", "config"]:
            return subprocess.CompletedProcess(args, 0, "MaxArraySize = 1001\n", "")
        return subprocess.CompletedProcess(args, 1, "", f"{args[0]}: not here")

    def sleep(self, _: float) -> None:
        """time.sleep of the loop: counts polls, and ends a loop that would never end."""
        self.polls += 1
        if self.polls > 20:
            raise AssertionError("submit --follow is still polling after 20 polls")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    slurm = FakeSlurm()
    monkeypatch.setattr(slurmcli, "run", slurm.run)
    monkeypatch.setattr(limits, "run", slurm.run)
    monkeypatch.setattr(slurmcli, "available", lambda: True)
    slurm.sbatch.install(monkeypatch)
    monkeypatch.setattr(slurm_launch.time, "sleep", slurm.sleep)
    return slurm


@pytest.fixture
def one_run(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    spec = load_spec(write_spec())
    return spec, plan(spec)[:1]


def _follow(spec: SweepSpec, runs: list[RunSpec]) -> str:
    console = Console(width=400, record=True)
    slurm_launch.SlurmLauncher(spec, console).follow(runs, 0.0)
    return console.export_text()


def _submitted_before(fake: FakeSlurm, spec: SweepSpec, run: RunSpec) -> None:
    """The run submitted alone as job 99 before this submit (in the manifest and in the fake)."""
    fake.earlier.append("99")
    jobs = {run.run_id: "99"}
    store.record_array(spec.output_path, store.read_manifest(spec.output_path), "99", jobs, {"runs": list(jobs)})


def test_attempts_that_never_wrote_a_status_count_and_the_loop_ends(
    fake: FakeSlurm, one_run: tuple[SweepSpec, list[RunSpec]]
) -> None:
    """A failing setup line: every job exits 127 before TrainJob writes status.json. Each submission is
    an attempt (the manifest's arrays hold their runs), so the run stops after retry.max_attempts."""
    spec, runs = one_run
    out = _follow(spec, runs)
    assert len(fake.arrays) == 3, out
    assert "3 attempts (retry.max_attempts), the last crashed; 2 ended before the job wrote status.json" in out
    manifest = store.read_manifest(spec.output_path)
    assert all(entry["runs"] == [runs[0].run_id] for entry in manifest["arrays"].values())
    # `status` counts the tries as the policy does: no status.json, three submissions.
    assert status.sweep_status(runs, spec.output_path).runs[0].attempts == 3


def test_an_end_accounting_has_not_recorded_is_waited_for_not_retried(
    fake: FakeSlurm, one_run: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job left squeue, sacct still says RUNNING (slurmdbd lag, a runaway record): not a crash, not
    resubmitted; --follow polls on for a while, then says what is left."""
    spec, runs = one_run
    _submitted_before(fake, spec, runs[0])
    fake.sacct_state = "RUNNING|0:0"
    monkeypatch.setattr(slurm_launch, "UNRECORDED_WAIT_S", 0.0)
    out = _follow(spec, runs)
    assert fake.arrays == ["99"], "no second copy of the run was submitted"
    assert "accounting still says RUNNING (its end is not recorded yet)" in out
    assert "1 run(s) left the queue, but accounting has not recorded how they ended" in out


def test_a_cancelled_run_stays_cancelled(fake: FakeSlurm, one_run: tuple[SweepSpec, list[RunSpec]]) -> None:
    """`orchestrate cancel` while --follow runs: the next poll must not undo it."""
    spec, runs = one_run
    _submitted_before(fake, spec, runs[0])
    pending = lambda args: subprocess.CompletedProcess(args, 0, "99|PENDING\n", "")  # noqa: E731
    fake.squeue = [pending, pending]  # the up-front check and the first poll see it queued; then it is cancelled
    fake.sacct_state = "CANCELLED by 0|0:15"
    out = _follow(spec, runs)
    assert fake.arrays == ["99"] and "not retried" in out and "cancelled" in out


def test_a_new_submit_runs_a_cancelled_run_again(fake: FakeSlurm, one_run: tuple[SweepSpec, list[RunSpec]]) -> None:
    """`orchestrate cancel`, then a new `submit` (the user's own request): the run goes again."""
    spec, runs = one_run
    _submitted_before(fake, spec, runs[0])
    fake.sacct_state = "CANCELLED by 0|0:15"
    console = Console(width=400, record=True)
    slurm_launch.SlurmLauncher(spec, console).launch(runs)
    assert len(fake.arrays) == 2, console.export_text()


def test_a_controller_error_is_a_warning_and_the_next_poll_goes_on(
    fake: FakeSlurm, one_run: tuple[SweepSpec, list[RunSpec]]
) -> None:
    """squeue failing (Socket timed out) or hanging during --follow: one warning line each, then polling on;
    the first poll (not on a login node at all) is not retried."""
    spec, runs = one_run

    def fails(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 1, "", "squeue: error: Socket timed out on send/recv operation")

    def hangs(args: list[str]) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(args, 60)

    fake.squeue = [None, fails, hangs]  # the up-front check answers, then two polls fail
    out = _follow(spec, runs)
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, out
    assert "Socket timed out" in warnings[0] and "timed out after 60 seconds" in warnings[1]
    assert all(line.endswith("polling again in 0 s") for line in warnings)
    assert fake.arrays and "every run submitted and out of the queue" in out


def test_force_starts_the_attempt_count_afresh(fake: FakeSlurm, one_run: tuple[SweepSpec, list[RunSpec]]) -> None:
    """--force moves the run folder aside and redoes the run: its earlier submissions no longer count
    as attempts (they did, through the manifest's arrays, so a forced run was refused at once)."""
    spec, runs = one_run
    _follow(spec, runs)
    assert len(fake.arrays) == 3
    console = Console(width=400, record=True)
    slurm_launch.SlurmLauncher(spec, console).launch(runs, force=True)
    assert len(fake.arrays) == 4, console.export_text()
    manifest = store.read_manifest(spec.output_path)
    assert [entry["runs"] for entry in manifest["arrays"].values()] == [[], [], [], [runs[0].run_id]]
    assert manifest["runs"][runs[0].run_id]["job_id"] == fake.arrays[-1]  # a lone job: submitit submits no array


def test_retry_all_overrides_the_policy_once_then_follow_keeps_to_it(
    fake: FakeSlurm, one_run: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--follow --retry-all resubmits what the policy left (here a run whose end accounting never
    records), once: it resubmitted such a run at every poll, without end."""
    spec, runs = one_run
    _submitted_before(fake, spec, runs[0])
    fake.sacct_state = "RUNNING|0:0"
    monkeypatch.setattr(slurm_launch, "UNRECORDED_WAIT_S", 0.0)
    console = Console(width=400, record=True)
    launcher = slurm_launch.SlurmLauncher(spec, console)
    launcher.retry_all = True
    launcher.follow(runs, 0.0)
    assert len(fake.arrays) == 2, console.export_text()  # 99, then one resubmission


PARTITION = "sbatch: error: Batch job submission failed: Invalid partition name specified"


def test_sbatch_failing_for_a_poll_is_a_warning_and_the_next_poll_submits(
    fake: FakeSlurm, one_run: tuple[SweepSpec, list[RunSpec]]
) -> None:
    """sbatch timing out once during a --follow of hours: one warning line, then the run goes in."""
    spec, runs = one_run
    fake.sbatch.failures = [Failure(SOCKET + "\nsecond line")]
    out = _follow(spec, runs)
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {SOCKET}; polling again in 0 s"], out
    assert "second line" not in out and len(fake.arrays) == 3, out
    assert "every run submitted and out of the queue (1 submitted)" in out


def test_sbatch_failing_at_a_few_polls_in_a_row_ends_follow_with_its_message(
    fake: FakeSlurm, one_run: tuple[SweepSpec, list[RunSpec]]
) -> None:
    """A refusal no retry fixes (a wrong partition): MAX_FAILED_SUBMISSIONS polls, then the error a plain
    submit raises at once, in one line naming sbatch's message."""
    spec, runs = one_run
    fake.sbatch.failures = [Failure(PARTITION)] * 10
    console = Console(width=400, record=True)
    with pytest.raises(FailedJobError) as raised:
        slurm_launch.SlurmLauncher(spec, console).follow(runs, 0.0)
    assert str(raised.value).startswith(f"sbatch failed at 3 polls in a row, the last time: {PARTITION} (")
    assert "\n" not in str(raised.value) and not fake.arrays
    assert len(fake.sbatch.failures) == 10 - sbatch_failures.MAX_FAILED_SUBMISSIONS
    assert console.export_text().count("warning: ") == sbatch_failures.MAX_FAILED_SUBMISSIONS - 1


def test_an_accepted_array_ends_a_streak_of_sbatch_failures(
    fake: FakeSlurm, one_run: tuple[SweepSpec, list[RunSpec]]
) -> None:
    """Failures count in a row: fail, accept, fail, fail, accept goes on (each failed attempt retried)."""
    spec, runs = one_run
    fake.sbatch.failures = [Failure(), None, Failure(), Failure()]
    out = _follow(spec, runs)
    assert len(fake.arrays) == 3 and out.count("warning: ") == 3, out


def test_arrays_sbatch_took_before_a_failure_are_recorded_and_not_submitted_again(
    fake: FakeSlurm, write_spec: Callable[..., Path]
) -> None:
    """Two arrays in one poll, sbatch failing at the second: the first's run is in the manifest, the
    next poll sees it queued and submits only the other run."""
    spec = load_spec(write_spec())
    runs = plan(spec)[:2]
    fake.sbatch.failures = [None, Failure()]
    fake.sacct_state = "CANCELLED by 0|0:15"  # once out of the queue, neither is submitted again
    queued = lambda args: subprocess.CompletedProcess(args, 0, "100|PENDING\n", "")  # noqa: E731
    fake.squeue = [queued]  # the poll after the failure
    console = Console(width=400, record=True)
    launcher = slurm_launch.SlurmLauncher(spec, console)
    launcher.config = launcher.config.model_copy(update={"max_array_size": 1})  # one array per run
    launcher.follow(runs, 0.0)
    out = console.export_text()
    assert fake.arrays == ["100", "101"], out
    manifest = store.read_manifest(spec.output_path)
    assert {run_id: entry["job_id"] for run_id, entry in manifest["runs"].items()} == {
        runs[0].run_id: "100",  # one run per array: lone jobs
        runs[1].run_id: "101",
    }
    assert "(2 submitted)" in out


def test_a_plain_submit_still_fails_at_sbatch_s_first_failure(
    fake: FakeSlurm, one_run: tuple[SweepSpec, list[RunSpec]]
) -> None:
    """Without --follow nothing polls again: sbatch's error ends the submit at once, as it is."""
    spec, runs = one_run
    fake.sbatch.failures = [Failure()]
    with pytest.raises(FailedJobError, match=f"^{SOCKET}$"):
        slurm_launch.SlurmLauncher(spec, Console(width=400, record=True)).launch(runs)
    assert not fake.arrays
