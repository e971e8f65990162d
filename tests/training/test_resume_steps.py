"""Mid-epoch exact resume: a run stopped at optimizer-step boundaries (and at epoch ends),
restarted each time, ends bit for bit like the uninterrupted run, with 0 or 2 loader workers.

The stops are chained in one run folder: each restart resumes from the previous stop and
stops again at the next point, so every point is a real save + restart, and a resume that
is off anywhere shows in the final numbers. Reference and chains share one config but
`data.num_workers`, which also proves that neither the data order nor the augmentation
depends on the number of workers.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from config_helpers import config_with

from trainers import rundir
from trainers.config import TrainConfig
from trainers.data.loaders import EpochShuffleSampler
from trainers.loop import checkpoint
from trainers.loop.run import run_training
from trainers.runtime import preemption
from trainers.runtime.preemption import Preempted, StopRequest

STEPS_PER_EPOCH = 8  # 256 training images / batch 32
EPOCHS = 3
TIMING = {"epoch_s", "train_images_per_s"}


def _config(workers: int, accum: int = 1, **overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "model": {"backbone": "test_resnet", "head_dropout": 0.3},  # dropout: the RNG must resume too
        "data": {
            "dataset": {"name": "digits", "max_samples": 256},
            "image_size_px": 16,
            "batch_size": 32,
            "num_workers": workers,
            "augment": {"hflip_p": 0.5, "rotate_deg": 15, "rotate_p": 0.5, "translate_frac": 0.1},
        },
        "optim": {"name": "adamw", "lr": 3e-3},
        "schedule": {"name": "cosine"},
        "epochs": EPOCHS,
        "torch_threads": 1,
        "distributed": {"grad_accum_steps": accum},
    }
    return config_with(base, {key.replace(".", "__"): value for key, value in overrides.items()})


class StopAt(preemption.StopAt):
    """preemption.StopAt that also records each boundary it was polled at."""

    def __init__(self, epoch: int, done: int) -> None:
        super().__init__(epoch, done)
        self.polled: list[tuple[int, int]] = []

    def poll(self, epoch: int, done: int) -> tuple[bool, bool]:
        self.polled.append((epoch, done))
        return super().poll(epoch, done)


def _history(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / rundir.HISTORY).open() as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


def _comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in ("timing", "provenance")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, str]]]:
    run_dir = tmp_path_factory.mktemp("reference")
    metrics = run_training(_config(workers=0), run_dir)
    return metrics, _history(run_dir)


def _stopped_chain(cfg: TrainConfig, run_dir: Path, points: list[tuple[int, int]]) -> dict[str, Any]:
    for epoch, done in points:
        stop = StopAt(epoch, done)
        with pytest.raises(Preempted):
            run_training(cfg, run_dir, stop=stop)
        assert stop.polled[-1] == (epoch, done), "the run went past its stop point"
        state = checkpoint.read_state(run_dir / rundir.CHECKPOINTS / checkpoint.LAST)
        assert (state["epochs_done"], state["step_in_epoch"]) == (epoch, done), "saved elsewhere than asked"
    return run_training(cfg, run_dir)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workers", "points"),
    [
        # 12 points: the first and last boundary of an epoch, its end, and steps in between.
        (0, [(0, 1), (0, 2), (0, 5), (0, 7), (1, 0), (1, 1), (1, 4), (1, 6), (2, 0), (2, 3), (2, 5), (2, 7)]),
        # 8 points with 2 worker processes (fresh ones after every restart).
        (2, [(0, 3), (0, 4), (0, 6), (1, 2), (1, 3), (1, 7), (2, 1), (2, 6)]),
    ],
)
def test_run_stopped_at_many_steps_ends_bit_identical(
    tmp_path: Path, reference: tuple[dict[str, Any], list[dict[str, str]]], workers: int, points: list[tuple[int, int]]
) -> None:
    ref_metrics, ref_history = reference
    metrics = _stopped_chain(_config(workers=workers), tmp_path, points)
    assert _history(tmp_path) == ref_history
    assert _comparable(metrics) == _comparable(ref_metrics)


@pytest.mark.slow
@pytest.mark.parametrize("augment", [None, {"hflip_p": 0.5, "rotate_deg": 15}])
def test_living_loader_workers_give_the_numbers_of_fresh_ones_across_resumes(
    tmp_path: Path, augment: dict[str, Any] | None
) -> None:
    """Train images decoded by 2 loader workers that live on between epochs (the default), with
    and without augmentation, stopped and resumed at an epoch end and mid-epoch: the same history
    as a run without workers. A living loader's iterator is reset, not made again, so it skipped
    the draw from torch's RNG that each fresh one makes: the dropout of a process's second epoch
    and later differed (DataBundle.start_train_pass)."""
    uncached = {"data.augment": augment, "data.cache_max_mib": 0}  # decoded by the workers, every epoch
    ref_metrics = run_training(_config(workers=0, **uncached), tmp_path / "reference")
    metrics = _stopped_chain(_config(workers=2, **uncached), tmp_path / "run", [(1, 0), (1, 3)])
    assert _history(tmp_path / "run") == _history(tmp_path / "reference")
    assert _comparable(metrics) == _comparable(ref_metrics)


@pytest.mark.slow
def test_accumulating_run_stops_only_at_optimizer_steps_and_resumes_exactly(tmp_path: Path) -> None:
    """With 2 micro-batches per optimizer step, boundaries are every 2 micro-batches (16 per epoch)."""
    cfg = _config(workers=0, accum=2)
    never = StopAt(1, 5)  # not a boundary: the reference runs uninterrupted to the end
    ref_metrics = run_training(cfg, tmp_path / "reference", stop=never)
    assert (1, 5) not in never.polled and (1, 4) in never.polled and (1, 6) in never.polled
    assert len(never.polled) == EPOCHS * (STEPS_PER_EPOCH - 1) + EPOCHS - 1  # mid-epoch ones, epoch ends
    metrics = _stopped_chain(cfg, tmp_path / "run", [(0, 2), (0, 14), (1, 0), (1, 8), (2, 4)])
    assert _history(tmp_path / "run") == _history(tmp_path / "reference")
    assert _comparable(metrics) == _comparable(ref_metrics)


@contextlib.contextmanager
def _handled(signum: int) -> Iterator[list[int]]:
    """A handler that records `signum` (as submitit's stands before the trainer's), restored after."""
    calls: list[int] = []
    previous = signal.signal(signum, lambda number, frame: calls.append(number))
    try:
        yield calls
    finally:
        signal.signal(signum, previous)


def _last_saved_at(run_dir: Path) -> tuple[int, int]:
    """(epochs done, micro-batches into the next) of checkpoints/last."""
    state = checkpoint.read_state(run_dir / rundir.CHECKPOINTS / checkpoint.LAST)
    return state["epochs_done"], state["step_in_epoch"]


@pytest.mark.slow
def test_usr2_saves_at_the_next_step_boundary_then_hands_over(
    tmp_path: Path, reference: tuple[dict[str, Any], list[dict[str, str]]]
) -> None:
    """The real signal, mid-step: the trainer saves at the boundary, then calls the handler it
    replaced (submitit's, in a job: checkpoint and requeue) and stops."""

    class SignalAt(StopRequest):
        def poll(self, epoch: int, done: int) -> tuple[bool, bool]:
            if (epoch, done) == (1, 2):
                os.kill(os.getpid(), signal.SIGUSR2)  # as from `scancel --signal=USR2`
            return super().poll(epoch, done)

    with _handled(signal.SIGUSR2) as handed_over:
        with pytest.raises(Preempted):
            run_training(_config(workers=0), tmp_path, stop=SignalAt())
        assert handed_over == [signal.SIGUSR2], "the previous handler was not called after the save"
        assert _last_saved_at(tmp_path) == (1, 2)
        assert signal.getsignal(signal.SIGUSR2) is not None
        metrics = run_training(_config(workers=0), tmp_path)
    assert _history(tmp_path) == reference[1]
    assert _comparable(metrics) == _comparable(reference[0])


class _Killed(BaseException):
    """SIGKILL, as far as the run can tell: it ends wherever it is, nothing saved."""


@pytest.mark.slow
def test_sigterm_under_a_handler_saves_at_the_next_step_and_trains_on(
    tmp_path: Path, reference: tuple[dict[str, Any], list[dict[str, str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    """SLURM's SIGTERM before a kill (scancel, requeue, preemption with GraceTime), in a job whose
    handler keeps the process alive (submitit's logs and ignores it): the trainer saves at the next
    step boundary, calls that handler, and trains on; killed later, the run resumes from that save
    and ends bit for bit like the reference (no periodic saves here: only the signal saves mid-epoch)."""

    class TermThenKill(StopRequest):
        def poll(self, epoch: int, done: int) -> tuple[bool, bool]:
            if (epoch, done) == (1, 2):
                os.kill(os.getpid(), signal.SIGTERM)  # as from `scontrol requeue`
            if (epoch, done) == (1, 5):
                raise _Killed  # KillWait later
            return super().poll(epoch, done)

    with _handled(signal.SIGTERM) as handed_over:
        with pytest.raises(_Killed):
            run_training(_config(workers=0), tmp_path, stop=TermThenKill())
        assert handed_over == [signal.SIGTERM], "the handler that was there was not called"
        assert capsys.readouterr().out.count("saved the state at epoch 2 micro-batch 2 (on SIGTERM") == 1
        assert _last_saved_at(tmp_path) == (1, 2), "trained on past the save, not stopped"
        metrics = run_training(_config(workers=0), tmp_path)
    assert _history(tmp_path) == reference[1]
    assert _comparable(metrics) == _comparable(reference[0])


@pytest.mark.slow
def test_periodic_checkpoints_do_not_change_the_run(
    tmp_path: Path, reference: tuple[dict[str, Any], list[dict[str, str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    # A tiny interval: a save at every step boundary.
    metrics = run_training(_config(workers=0, checkpoint_every_min=1e-9), tmp_path)
    saves = capsys.readouterr().out.count("saved the state at epoch")
    assert saves == EPOCHS * (STEPS_PER_EPOCH - 1)  # every boundary but the epoch ends (saved anyway)
    assert _history(tmp_path) == reference[1]
    assert _comparable(metrics) == _comparable(reference[0])


def test_sampler_skip_is_the_tail_of_the_epoch_permutation() -> None:
    sampler = EpochShuffleSampler(40, seed=5)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_epoch(2, skip=12)
    assert list(sampler) == whole[12:] and len(sampler) == 28
    sampler.set_epoch(2)  # what Accelerate's loader calls on every pass: the skip stays
    assert list(sampler) == whole[12:]
    sampler.set_epoch(3)  # a new epoch starts at its beginning
    assert len(list(sampler)) == 40 and list(sampler) != whole


@pytest.mark.slow
def test_sigterm_after_an_epochs_last_step_is_answered_by_its_own_save_and_said(
    tmp_path: Path, reference: tuple[dict[str, Any], list[dict[str, str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM after an epoch's last step boundary (in its last micro-batch, validation or save):
    the epoch's own save is the signal's answer, and the log says so, as a step boundary's save
    does (the dev cluster's requeue test found no line when the signal landed there)."""

    class TermAfterLastStep(StopRequest):
        last_done = 0

        def poll(self, epoch: int, done: int) -> tuple[bool, bool]:
            decision = super().poll(epoch, done)
            if epoch == 0:
                self.last_done = max(self.last_done, done)
            elif (epoch, done) == (1, self.last_done):
                os.kill(os.getpid(), signal.SIGTERM)  # after this boundary's decision: none follows
            elif (epoch, done) == (2, 3):
                raise _Killed
            return decision

    with _handled(signal.SIGTERM):
        with pytest.raises(_Killed):
            run_training(_config(workers=0), tmp_path, stop=TermAfterLastStep())
        out = capsys.readouterr().out
        assert out.count("saved the state at the end of epoch 2 (on SIGTERM") == 1, out
        assert "micro-batch" not in out, out
        assert _last_saved_at(tmp_path) == (2, 0)
        metrics = run_training(_config(workers=0), tmp_path)
    assert _history(tmp_path) == reference[1]
    assert _comparable(metrics) == _comparable(reference[0])
