"""`orchestrate cancel` beside a plain `submit` and a `submit --follow`, over our fakes: the submit's check
before each sbatch (and after its last), the exit status of a stopped submit, what `cancel` says about a
submit holding the lock, and the `held back` line once per count. squeue, sacct, scontrol and scancel
answer from a Python fake, sbatch is tests/support/fake_submitit.py's; the dev cluster's test
(tests/cluster/test_cancel_beside_submit_slurm.py) races the real commands."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_submitit import FakeSbatch
from rich.console import Console

from orchestrator import launch
from orchestrator.cli import submit as cli_submit
from orchestrator.cli.main import main
from orchestrator.launch import cancels, limits, lock, slurmcli
from orchestrator.launch import slurm as slurm_launch
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SweepSpec, load_spec


class RacedSbatch(FakeSbatch):
    """The fake controller; `during` runs inside sbatch call number `at` (1-based), once the job is taken:
    a cancel that looked at the queue before the job was there."""

    def __init__(self) -> None:
        super().__init__()
        self.at, self.during = 0, lambda: None

    def sbatch(self, parameters: dict[str, Any], script: str) -> list[str]:
        command = super().sbatch(parameters, script)
        if len(self.calls) == self.at:
            self.during()
        return command


class Queue:
    """squeue/sacct/scontrol/scancel over the jobs sbatch took: a task leaves the queue (cancelled by
    hand, never retried by a follow) after `lifetime` polls; MaxJobCount `max_jobs` caps the queue."""

    def __init__(self, sbatch: RacedSbatch, max_jobs: int | None = None, lifetime: int = 10**6) -> None:
        self.sbatch, self.max_jobs, self.lifetime = sbatch, max_jobs, lifetime
        self.age: dict[str, int] = {}
        self.scancelled: list[list[str]] = []

    def live(self) -> list[str]:
        for task in self.sbatch.task_ids:
            self.age.setdefault(task, 0)
        return [task for task in self.sbatch.task_ids if self.age[task] < self.lifetime]

    def run(self, args: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """slurmcli.run and limits.run."""
        out, code = "", 0
        if args[0] == "squeue":
            live = self.live()
            out = "".join(f"{t}|PENDING\n" for t in live) if "%i|%T" in args else "".join(f"{t}\n" for t in live)
        elif args[0] == "sacct":
            ended = [t for t in self.sbatch.task_ids if t not in self.live()]
            out = "".join(f"{t}|CANCELLED by 0|0:0|node3|billing=1,mem=8G,node=1|8G\n" for t in ended)
        elif args[:3] == ["scontrol", "show", "config"]:
            out = "MaxArraySize = 1001\n" + (f"MaxJobCount = {self.max_jobs}\n" if self.max_jobs else "")
        elif args[0] == "scancel":
            self.scancelled.append(args[1:])
        else:
            code = 1
        return subprocess.CompletedProcess(args, code, out, "" if code == 0 else f"{args[0]}: not here")

    def sleep(self, _: float) -> None:
        """The follow's time.sleep: one poll older; a loop still polling after 30 fails the test."""
        for task in self.live():
            self.age[task] += 1
        if max(self.age.values(), default=0) > 30:
            raise AssertionError("submit --follow is still polling after 30 polls")


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Queue:
    fake = Queue(RacedSbatch())
    monkeypatch.setattr(slurmcli, "run", fake.run)
    monkeypatch.setattr(limits, "run", fake.run)
    monkeypatch.setattr(slurmcli, "available", lambda: True)
    fake.sbatch.install(monkeypatch)
    monkeypatch.setattr(slurm_launch.time, "sleep", fake.sleep)
    return fake


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[Path, list[str], SweepSpec]:
    """The tiny sweep's 6 runs, one array each (max_array_size 1): several sbatch calls in one submit."""
    path, overrides = write_spec(), ["slurm.max_array_size=1"]
    return path, overrides, load_spec(path, overrides)


def _submit(spec: SweepSpec) -> tuple[launch.Outcome, str]:
    console = Console(width=400, record=True)
    outcome = launch.submit(spec, plan(spec), "slurm", console=console)
    return outcome, console.export_text()


def test_a_cancel_while_an_array_goes_in_stops_a_plain_submit_before_its_next_sbatch(
    queue: Queue, sweep: tuple[Path, list[str], SweepSpec]
) -> None:
    """The cancel looked at the queue while sbatch 1 was in flight: the submit scancels that array and
    calls sbatch no more (it submitted all six arrays, the first surviving the cancel)."""
    spec = sweep[2]
    queue.sbatch.at, queue.sbatch.during = 1, lambda: cancels.request(spec.output_path)
    outcome, out = _submit(spec)
    assert len(queue.sbatch.calls) == 1, out
    assert queue.scancelled == [["100"]], out
    assert outcome.cancelled and "stopped this submit: it submits nothing more" in out
    assert "cancelled 1 pending/running jobs in array(s) 100" in out


def test_a_cancel_while_the_last_array_goes_in_is_obeyed_after_it(
    queue: Queue, write_spec: Callable[..., Path]
) -> None:
    """One array: no sbatch comes after it, so the submit reads the request once more when it is done."""
    spec = load_spec(write_spec())
    queue.sbatch.at, queue.sbatch.during = 1, lambda: cancels.request(spec.output_path)
    outcome, out = _submit(spec)
    assert len(queue.sbatch.calls) == 1 and queue.scancelled == [["100"]], out
    assert outcome.cancelled and "logs:" not in out


def test_a_cancel_made_before_the_submit_started_does_not_stop_it(
    queue: Queue, sweep: tuple[Path, list[str], SweepSpec]
) -> None:
    spec = sweep[2]
    spec.output_path.mkdir(parents=True)
    cancels.request(spec.output_path)
    outcome, out = _submit(spec)
    assert len(queue.sbatch.calls) == 6 and not queue.scancelled and not outcome.cancelled, out


def test_a_submit_stopped_by_cancel_exits_with_its_own_status(
    queue: Queue, sweep: tuple[Path, list[str], SweepSpec], capsys: pytest.CaptureFixture[str]
) -> None:
    """3, not 0: a script's `submit --follow && collect` must not take a cancelled sweep for a finished one."""
    path, overrides, spec = sweep
    queue.sbatch.at, queue.sbatch.during = 2, lambda: cancels.request(spec.output_path)
    assert main(["submit", str(path), *overrides, "--executor", "slurm"]) == cli_submit.CANCELLED == 3
    assert "stopped this submit" in capsys.readouterr().out
    assert len(queue.sbatch.calls) == 2


def test_a_follow_stopped_by_cancel_exits_with_the_same_status(
    queue: Queue, sweep: tuple[Path, list[str], SweepSpec], capsys: pytest.CaptureFixture[str]
) -> None:
    path, overrides, spec = sweep
    queue.sbatch.at, queue.sbatch.during = 3, lambda: cancels.request(spec.output_path)
    command = ["submit", str(path), *overrides, "--executor", "slurm", "--follow", "--interval", "1"]  # sleep is faked
    assert main(command) == cli_submit.CANCELLED
    assert "stopped this submit --follow: it submits nothing more" in capsys.readouterr().out
    assert len(queue.sbatch.calls) == 3


def test_cancel_says_a_submit_holds_the_sweep_and_when_it_stops(
    queue: Queue, sweep: tuple[Path, list[str], SweepSpec], capsys: pytest.CaptureFixture[str]
) -> None:
    path, overrides, spec = sweep
    assert main(["cancel", str(path), *overrides]) == 0
    assert "tiny: no submit of the sweep is running" in capsys.readouterr().out
    with lock.hold(spec.output_path):  # this process stands for the submit
        assert main(["cancel", str(path), *overrides]) == 0
    said = capsys.readouterr().out
    assert f"a submit of the sweep holds its lock (pid {os.getpid()} on " in said, said
    assert "with --follow it stops at its next poll (within its --interval), otherwise before its next sbatch" in said


def test_a_follow_says_held_back_once_per_count(queue: Queue, write_spec: Callable[..., Path]) -> None:
    """MaxJobCount 2, six runs, each job in the queue for 3 polls: 4 held back, then 2 as the first two
    leave; polls at which the count stays the same print nothing more."""
    queue.max_jobs, queue.lifetime = 2, 3
    spec = load_spec(write_spec())
    console = Console(width=400, record=True)
    outcome = slurm_launch.SlurmLauncher(spec, console).follow(plan(spec), 0.0)
    out = console.export_text()
    held = [line.split(",")[0] for line in out.splitlines() if line.startswith("held back")]
    assert held == ["held back: 4 runs", "held back: 2 runs"], out
    assert len(outcome.submitted) == 6 and not outcome.cancelled
