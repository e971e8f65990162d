"""sbatch failing although the controller took the array (`Socket timed out on send/recv operation`):
the array is found by its job name and adopted, never submitted a second time. squeue answers from a
Python fake that knows the job names sbatch was given; nothing here needs a cluster."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_submitit import SOCKET, Failure, FakeSbatch
from rich.console import Console
from submitit.core.utils import FailedJobError

from orchestrator import store
from orchestrator.launch import limits, slurmcli, unconfirmed
from orchestrator.launch import slurm as slurm_launch
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec

TAKEN = Failure(taken=True)


class Controller:
    """slurmctld as sbatch and squeue see it: the jobs sbatch gave it (fake_submitit), and the squeue calls
    that fail."""

    def __init__(self) -> None:
        self.sbatch = FakeSbatch(first_id=101)
        self.squeue_down = 0
        """How many of the next `squeue --name` calls fail (the controller still busy)."""

    def run(self, args: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """slurmcli.run and limits.run."""
        if args[0] == "squeue" and "--name" in args:
            if self.squeue_down:
                self.squeue_down -= 1
                return subprocess.CompletedProcess(args, 1, "", "squeue: error: Socket timed out")
            name = args[args.index("--name") + 1]
            return subprocess.CompletedProcess(args, 0, self.sbatch.queue(name=name, array="--array" in args), "")
        if args[0] == "squeue":
            return subprocess.CompletedProcess(args, 0, self.sbatch.queue(array="--array" in args), "")
        if args[:3] == ["scontrol", "show", "config"]:
            return subprocess.CompletedProcess(args, 0, "MaxArraySize = 1001\n", "")
        return subprocess.CompletedProcess(args, 1, "", f"{args[0]}: not here")


@pytest.fixture
def controller(monkeypatch: pytest.MonkeyPatch) -> Controller:
    fake = Controller()
    monkeypatch.setattr(slurmcli, "run", fake.run)
    monkeypatch.setattr(limits, "run", fake.run)
    monkeypatch.setattr(slurmcli, "available", lambda: True)
    fake.sbatch.install(monkeypatch)
    return fake


@pytest.fixture
def one_run(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    spec = load_spec(write_spec())
    return spec, plan(spec)[:1]


def _submit(spec: SweepSpec, runs: list[RunSpec]) -> str:
    console = Console(width=400, record=True)
    slurm_launch.SlurmLauncher(spec, console).launch(runs)
    return console.export_text()


def _jobs(spec: SweepSpec) -> dict[str, str]:
    return {run_id: entry["job_id"] for run_id, entry in store.read_manifest(spec.output_path)["runs"].items()}


def test_an_array_taken_despite_sbatch_s_error_is_adopted_and_never_submitted_again(
    controller: Controller, one_run: tuple[SweepSpec, list[RunSpec]]
) -> None:
    """sbatch times out, yet the controller holds the job: submit records its id (found by its job name),
    writes the pickle its task waits for, and the next submit sees the run queued."""
    spec, runs = one_run
    controller.sbatch.failures = [TAKEN]
    out = _submit(spec, runs)
    assert "sbatch failed, but the controller had taken array 101" in out, out
    assert _jobs(spec) == {runs[0].run_id: "101"}
    assert (spec.output_path / store.SUBMITIT_DIR / "101_submitted.pkl").is_file()
    assert not unconfirmed.pending(store.read_manifest(spec.output_path))
    _submit(spec, runs)
    assert len(controller.sbatch.calls) == 1


def test_follow_adopts_the_array_instead_of_submitting_it_a_second_time(
    controller: Controller, one_run: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: sbatch's error was a warning, and the next --follow poll, finding no job for the run,
    submitted it again (two jobs training one run folder). Three polls while the job is queued: one sbatch."""
    spec, runs = one_run
    controller.sbatch.failures = [TAKEN]
    polls: list[int] = []
    monkeypatch.setattr("orchestrator.launch.slurm.time.sleep", lambda _: polls.append(1))
    monkeypatch.setattr(slurm_launch.SlurmLauncher, "_poll", _poll_until(polls, 3))
    console = Console(width=400, record=True)
    slurm_launch.SlurmLauncher(spec, console).follow(runs, 0.0)
    assert len(controller.sbatch.calls) == 1 and len(polls) == 3, console.export_text()
    assert _jobs(spec) == {runs[0].run_id: "101"}


def _poll_until(polls: list[int], limit: int) -> Any:
    """SlurmLauncher._poll, ending the loop after `limit` sleeps (the fake job never leaves the queue)."""
    real = slurm_launch.SlurmLauncher._poll

    def poll(self: slurm_launch.SlurmLauncher, *args: Any) -> bool:
        return real(self, *args) and len(polls) < limit

    return poll


def test_when_squeue_cannot_say_the_next_submit_adopts_the_array(
    controller: Controller, one_run: tuple[SweepSpec, list[RunSpec]]
) -> None:
    """sbatch and squeue both time out: submit fails, keeping the array as unconfirmed with its task's
    pickle set aside; the next submit finds the job and adopts it instead of submitting the run."""
    spec, runs = one_run
    controller.sbatch.failures, controller.squeue_down = [TAKEN], 1
    with pytest.raises(FailedJobError, match="squeue cannot say whether the controller took array orch-"):
        _submit(spec, runs)
    manifest = store.read_manifest(spec.output_path)
    assert len(unconfirmed.pending(manifest)) == 1 and not manifest["runs"]
    out = _submit(spec, runs)
    assert "array 101 (1 runs): sbatch failed, but the controller had taken it" in out, out
    assert len(controller.sbatch.calls) == 1 and _jobs(spec) == {runs[0].run_id: "101"}
    folder = spec.output_path / store.SUBMITIT_DIR
    assert (folder / "101_submitted.pkl").is_file() and not list((folder / unconfirmed.PICKLES).iterdir())
    assert not unconfirmed.pending(store.read_manifest(spec.output_path))


def test_an_array_the_controller_never_took_is_submitted_again_once(
    controller: Controller, one_run: tuple[SweepSpec, list[RunSpec]]
) -> None:
    """sbatch and squeue time out, and the controller had not taken it: the next submit forgets the
    entry (and the pickles set aside: a job that appeared later would train nothing) and submits once."""
    spec, runs = one_run
    controller.sbatch.failures, controller.squeue_down = [Failure()], 1
    with pytest.raises(FailedJobError):
        _submit(spec, runs)
    _submit(spec, runs)
    assert len(controller.sbatch.calls) == 2 and _jobs(spec) == {runs[0].run_id: "101"}  # a refused sbatch used no id
    assert not list((spec.output_path / store.SUBMITIT_DIR / unconfirmed.PICKLES).iterdir())
    assert not unconfirmed.pending(store.read_manifest(spec.output_path))


def test_a_refusal_raises_sbatch_s_error_as_it_is_and_leaves_no_entry(
    controller: Controller, one_run: tuple[SweepSpec, list[RunSpec]]
) -> None:
    spec, runs = one_run
    controller.sbatch.failures = [Failure()]
    with pytest.raises(FailedJobError, match=f"^{SOCKET}$"):
        _submit(spec, runs)
    manifest = store.read_manifest(spec.output_path)
    assert not unconfirmed.pending(manifest) and not manifest["runs"]


def test_each_array_gets_its_own_job_name(controller: Controller, write_spec: Callable[..., Path]) -> None:
    """Tokens tell arrays apart: two arrays of one sweep, two names, both `orch-<sweep>-...`."""
    spec = load_spec(write_spec())
    runs = plan(spec)[:2]
    launcher = slurm_launch.SlurmLauncher(spec, Console(width=400, record=True))
    launcher.config = launcher.config.model_copy(update={"max_array_size": 1})  # one array per run
    launcher.launch(runs)
    names = [call.job_name for call in controller.sbatch.taken]
    assert len(set(names)) == 2 and all(name.startswith(f"orch-{spec.name}-") for name in names)


def test_an_array_of_several_tasks_is_adopted_with_each_task_s_id(
    controller: Controller, write_spec: Callable[..., Path]
) -> None:
    """Two runs in one array, taken despite sbatch's error: squeue lists it as `101_[0-1]`, each run gets
    its task's id (`101_0`, `101_1`, as submitit gives an array's jobs) and its task's pickle."""
    spec = load_spec(write_spec())
    runs = plan(spec)[:2]
    controller.sbatch.failures = [TAKEN]
    out = _submit(spec, runs)
    assert controller.sbatch.calls[0].parameters["map_count"] == 2, out  # one sbatch, an array of two
    assert _jobs(spec) == {runs[0].run_id: "101_0", runs[1].run_id: "101_1"}
    folder = spec.output_path / store.SUBMITIT_DIR
    assert all((folder / f"101_{task}_submitted.pkl").is_file() for task in (0, 1))


def test_the_fake_keeps_submitit_s_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the launcher's tests rely on is submitit's own behaviour, not the fake's: no job id inside
    `batch()`, unknown parameters and parameters changed inside `batch()` refused, `A` for a lone job and
    `A_i` for an array, sbatch's stderr as the error, ids only for jobs the controller took."""
    import submitit

    sbatch = FakeSbatch()
    sbatch.install(monkeypatch)
    executor = submitit.SlurmExecutor(folder=tmp_path)
    with pytest.raises(ValueError, match=r"Unavailable parameter\(s\): \['job_nam'\]"):
        executor.update_parameters(job_nam="x")
    executor.update_parameters(job_name="x", time=5)
    with executor.batch():
        with pytest.raises(RuntimeError, match="not allowed"):
            executor.update_parameters(time=6)
        lone = executor.submit(print)
        with pytest.raises(AttributeError, match=r"forbidden within 'with executor.batch\(\)'"):
            _ = lone.job_id
    sbatch.failures = [Failure()]
    with pytest.raises(FailedJobError, match=f"^{SOCKET}$"), executor.batch():
        executor.submit(print)
    with executor.batch():
        array = [executor.submit(print) for _ in range(3)]
    assert lone.job_id == "100" and [job.job_id for job in array] == ["101_0", "101_1", "101_2"]
    assert sbatch.task_ids == ["100", "101_0", "101_1", "101_2"] and sbatch.calls[2].job_name == "x"
    assert all((tmp_path / f"{job}_submitted.pkl").is_file() for job in sbatch.task_ids)
