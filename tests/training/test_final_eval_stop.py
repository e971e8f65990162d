"""USR2 during the final evaluation (after the last epoch): the trainer stops before the next batch
and hands over (submitit requeues the job), writing no metrics.json; the next attempt trains nothing
and scores the saved model (`checkpoint_for_test`: best or last), as the uninterrupted run did.
Before, the signal was only recorded: the test ran on past SLURM's kill, and the run was not requeued."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from config_helpers import tiny_config

from trainers import rundir
from trainers.loop import checkpoint
from trainers.loop.run import run_training
from trainers.runtime.preemption import Preempted, StopRequest


class Recorded(StopRequest):
    """A StopRequest that notes where it was polled; with `signal_at`, sends itself USR2 there (as
    `scancel --signal=USR2` or SLURM's `--signal` would): at a final-evaluation batch (split, batch),
    before it is scored, or just after a training step boundary (epoch, micro-batches done)."""

    def __init__(self, signal_at: tuple[str, int] | tuple[int, int] | None = None) -> None:
        super().__init__()
        self.signal_at = signal_at
        self.steps: list[tuple[int, int]] = []
        self.batches: list[tuple[str, int]] = []

    def poll(self, epoch: int, done: int) -> tuple[bool, bool]:
        self.steps.append((epoch, done))
        decision = super().poll(epoch, done)
        if (epoch, done) == self.signal_at:
            os.kill(os.getpid(), signal.SIGUSR2)  # after this boundary's decision: no training boundary follows
        return decision

    def poll_final(self, split: str, batch: int) -> bool:
        self.batches.append((split, batch))
        if (split, batch) == self.signal_at:
            os.kill(os.getpid(), signal.SIGUSR2)
        return super().poll_final(split, batch)


@contextlib.contextmanager
def _submitit_handler() -> Iterator[list[int]]:
    """A USR2 handler that records the signal, standing where submitit's does, restored after."""
    calls: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda number, frame: calls.append(number))
    try:
        yield calls
    finally:
        signal.signal(signal.SIGUSR2, previous)


def _comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in ("timing", "provenance")}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tested", "signal_at", "stopped_at"),
    [
        ("best", ("test", 1), ("test", 1)),  # in the test: stopped before its next batch
        ("last", ("test", 1), ("test", 1)),
        ("best", (1, 1), ("test", 0)),  # in the last epoch's last step (or its validation, its save): before the test
    ],
    ids=["best-in-test", "last-in-test", "best-after-last-step"],
)
def test_usr2_in_the_final_test_requeues_and_the_next_attempt_only_tests(
    tmp_path: Path, tested: str, signal_at: tuple[Any, int], stopped_at: tuple[str, int]
) -> None:
    cfg = tiny_config(epochs=2, checkpoint_for_test=tested)  # 2 steps per epoch, 2 test batches
    reference = run_training(cfg, tmp_path / "reference")
    run_dir = tmp_path / "run"
    first = Recorded(signal_at=signal_at)
    with _submitit_handler() as handed_over, pytest.raises(Preempted):
        run_training(cfg, run_dir, stop=first)
    assert handed_over == [signal.SIGUSR2], "the job's handler (submitit: checkpoint, requeue) was not called"
    assert first.batches[-1] == stopped_at, "not stopped before the batch after the signal"
    assert not (run_dir / rundir.METRICS).exists(), "metrics.json written by an attempt that stopped in its test"
    last = checkpoint.read_state(run_dir / rundir.CHECKPOINTS / checkpoint.LAST)
    assert (last["epochs_done"], last["step_in_epoch"]) == (2, 0)
    history = (run_dir / rundir.HISTORY).read_text()

    second = Recorded()
    metrics = run_training(cfg, run_dir, stop=second)
    assert second.steps == [], "the resumed attempt trained again"
    assert second.batches[0] == ("test", 0) and metrics["timing"]["train_images"] == 0
    assert (run_dir / rundir.HISTORY).read_text() == history
    assert _comparable(metrics) == _comparable(reference)
    assert metrics["tested"] == reference["tested"] and metrics["epochs_trained"] == 2
