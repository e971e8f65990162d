"""DeepSpeed ZeRO on CPU, 2 processes (torchrun, gloo): under ZeRO-3 the best checkpoint of an
earlier epoch is saved whole and reloaded into partitioned parameters for the final evaluation;
at ZeRO-1 with accumulation a run stopped after its first epoch resumes to the same numbers, and
at ZeRO-3 and under DDP one stopped in the middle of an epoch does (ZeRO-3's sharded state is
reloaded there). ZeRO-2 is resumed through SLURM preemption in test_distributed.py. The ZeRO-3
run's `last` holds its final weights whole for eval/predict, also once the cleanup trimmed it.

Each case costs 2-process launches that import DeepSpeed (seconds each on 2 cores), so the cases
are chosen to cover each code path once: the module is marked slow."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from trainers import rundir
from trainers.loop import checkpoint, modes
from trainers.runtime.votes import LAG_BOUNDARIES

pytestmark = pytest.mark.slow

WORKER = Path(__file__).resolve().parents[1] / "support" / "deepspeed_worker.py"
EPOCHS = 2  # the first epoch is the best (the worker's early stopping), so the final one must reload it


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def train(
    run_dir: Path,
    epochs: int,
    zero_stage: int,
    precision: str = "no",
    accum: int = 1,
    backbone: str = "test_convnext",
    stop: str = "-",
    strategy: str = "deepspeed",
) -> None:
    """Train (or resume) the worker's ZeRO (or DDP) cell in `run_dir` with 2 processes; `stop`
    (EPOCH:MICRO_BATCHES) stops it there on request."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc-per-node=2",
        f"--master-port={free_port()}",
        str(WORKER),
        str(run_dir),
        str(epochs),
        str(zero_stage),
        precision,
        str(accum),
        backbone,
        stop,
        strategy,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def history(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / rundir.HISTORY).open() as handle:
        return list(csv.DictReader(handle))


def engine_steps(run_dir: Path) -> int:
    """Optimizer steps the DeepSpeed engine took, from its checkpoint in checkpoints/last."""
    # Rank 0's model states: mp_rank_00_... below ZeRO-3, zero_pp_rank_0_mp_rank_00_... at ZeRO-3.
    states = sorted((run_dir / "checkpoints" / "last" / "pytorch_model").glob("*mp_rank_00_model_states.pt"))[0]
    return int(torch.load(states, map_location="cpu", weights_only=False)["global_steps"])


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """The run folder of EPOCHS uninterrupted epochs at (ZeRO stage, accumulation), trained once each."""
    done: dict[tuple[int, int, str], Path] = {}

    def run_dir(zero_stage: int, accum: int = 1, strategy: str = "deepspeed") -> Path:
        key = (zero_stage, accum, strategy)
        if key not in done:
            done[key] = tmp_path_factory.mktemp(f"{strategy}{zero_stage}_accum{accum}")
            train(done[key], EPOCHS, zero_stage, accum=accum, strategy=strategy)
        return done[key]

    return run_dir


def test_zero3_reloads_an_earlier_best_epoch_into_partitioned_parameters(straight: Callable[..., Path]) -> None:
    run_dir = straight(3)
    partitioning = json.loads((run_dir / "partitioning.json").read_text())
    assert partitioning["local_numel"] == 0 < partitioning["full_numel"], partitioning
    metrics = rundir.read_json(run_dir / rundir.METRICS) or {}
    val_top1 = [float(row["val_top1"]) for row in history(run_dir)]
    assert metrics["provenance"]["num_processes"] == 2 and len(val_top1) == EPOCHS
    expected = {
        "distributed_type": "DEEPSPEED",
        "processes": 2,
        "global_batch": 32,
        "per_device_batch": 16,
        "grad_accum_steps": 1,
        "zero_stage": 3,
    }
    assert {key: metrics["parallel"].get(key) for key in expected} == expected
    engine = rundir.read_json(run_dir / rundir.DEEPSPEED_CONFIG) or {}
    assert engine["train_batch_size"] == 32 and engine["train_micro_batch_size_per_gpu"] == 16
    assert engine["zero_optimization"]["stage"] == 3
    assert engine["zero_optimization"]["stage3_param_persistence_threshold"] == 0  # the spec's extra key
    best = metrics["best_epoch"]
    assert val_top1[best - 1] != val_top1[-1], "the test needs a best epoch whose weights differ from the last"
    # The final evaluation ran on the reloaded best weights, not on whatever the model last held.
    assert metrics["val"]["top1"] == pytest.approx(val_top1[best - 1], abs=1e-9)


def test_zero3_last_holds_the_final_weights_for_eval_also_after_the_cleanup(
    straight: Callable[..., Path], tmp_path: Path
) -> None:
    # accelerate.save_state writes a DeepSpeed engine in DeepSpeed's format (no model.safetensors), and
    # ZeRO-3's model_states.pt holds placeholders: the whole weights were only in the optimizer shards.
    run_dir = Path(shutil.copytree(straight(3), tmp_path / "run"))  # a copy: the cleanup trims it
    last = run_dir / "checkpoints" / "last"
    assert list(last.rglob("*optim_states.pt")) and (last / checkpoint.WEIGHTS_FILE).is_file()
    rows = history(run_dir)
    _, before = modes.evaluate_run(run_dir, split="val", name="last-val", which="last")
    assert before["checkpoint_epoch"] == EPOCHS
    # The final epoch's model (the best is the first epoch, whose val_top1 differs; see the ZeRO-3 test above).
    assert before["test"]["top1"] == pytest.approx(float(rows[-1]["val_top1"]), abs=1e-9)
    assert before["test"]["loss"] == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-5)
    assert checkpoint.drop_resume_state(run_dir / "checkpoints") > 0
    assert not list(last.rglob("*optim_states.pt")) and checkpoint.is_weights_only(last)
    _, after = modes.evaluate_run(run_dir, split="val", name="trimmed-val", which="last")
    assert after["test"] == before["test"]


def test_cleanup_keeps_a_deepspeed_last_without_whole_weights(straight: Callable[..., Path], tmp_path: Path) -> None:
    # A `last` saved before the trainer added model.safetensors (or killed before it did): its ZeRO-3
    # optimizer shards are the only whole weights (zero_to_fp32.py rebuilds them), so none is deleted.
    run_dir = Path(shutil.copytree(straight(3), tmp_path / "run"))
    last = run_dir / "checkpoints" / "last"
    (last / checkpoint.WEIGHTS_FILE).unlink(missing_ok=True)
    files = sorted(p.relative_to(last) for p in last.rglob("*") if p.is_file())
    assert checkpoint.drop_resume_state(run_dir / "checkpoints") == 0
    assert sorted(p.relative_to(last) for p in last.rglob("*") if p.is_file()) == files
    assert not checkpoint.is_weights_only(last), "still resumable"


# ZeRO-1 with 2 accumulation steps: 15 micro-batches per rank and epoch make 8 optimizer steps
# (the last one of a single micro-batch, as without DeepSpeed), none carried over an epoch end.
@pytest.mark.parametrize(("zero_stage", "accum"), [(1, 2)])
def test_zero_run_resumes_its_sharded_state_exactly(
    zero_stage: int, accum: int, straight: Callable[..., Path], tmp_path: Path
) -> None:
    train(tmp_path, 1, zero_stage, accum=accum)  # stops after epoch 1 with checkpoints/last, as a preempted job would
    assert len(history(tmp_path)) == 1
    train(tmp_path, EPOCHS, zero_stage, accum=accum)  # resumes at epoch 2 from the engine's (sharded) state
    columns = ("epoch", "train_loss", "val_loss", "val_top1")
    reference = straight(zero_stage, accum)
    resumed = [[row[c] for c in columns] for row in history(tmp_path)]
    assert resumed == [[row[c] for c in columns] for row in history(reference)]
    metrics = rundir.read_json(tmp_path / rundir.METRICS) or {}
    assert metrics["parallel"]["zero_stage"] == zero_stage
    # 240 images in per-device batches of 32 / (2 ranks x accum), whole batches split over 2 ranks.
    micro_batches_per_rank = 240 // (32 // (2 * accum)) // 2
    assert engine_steps(tmp_path) == EPOCHS * math.ceil(micro_batches_per_rank / accum)
    assert metrics["test"] == (rundir.read_json(reference / rundir.METRICS) or {})["test"]


def test_zero3_bf16_trains_a_batchnorm_model_and_reloads_the_best_in_bf16(tmp_path: Path) -> None:
    # DeepSpeed runs a bf16 model without autocast and converts only its parameters: float32
    # images and BatchNorm's float32 running statistics must be brought to bf16 too.
    train(tmp_path, 2, 3, precision="bf16", backbone="test_resnet")
    metrics = rundir.read_json(tmp_path / rundir.METRICS) or {}
    assert metrics["parallel"]["mixed_precision"] == "bf16"
    assert (rundir.read_json(tmp_path / rundir.DEEPSPEED_CONFIG) or {})["bf16"]["enabled"] is True
    rows = history(tmp_path)
    assert all(math.isfinite(float(row["train_loss"])) for row in rows) and len(rows) == 2
    assert metrics["val"]["top1"] == pytest.approx(float(rows[metrics["best_epoch"] - 1]["val_top1"]), abs=1e-9)


# Asked to stop in epoch 2 after 3 of its 7 micro-batches per rank: the ranks' vote there is read
# one step boundary later (trainers/runtime/votes.py), where the state is saved. (Accumulation is
# covered in process by tests/training/test_resume_steps.py; each case here costs a 2-process run.)
MID_EPOCH_CASES = [("deepspeed", 3, 1, "1:3"), ("ddp", 0, 1, "1:3")]


@pytest.mark.parametrize(("strategy", "zero_stage", "accum", "stop"), MID_EPOCH_CASES)
def test_run_stopped_mid_epoch_resumes_exactly(
    strategy: str, zero_stage: int, accum: int, stop: str, straight: Callable[..., Path], tmp_path: Path
) -> None:
    train(tmp_path, EPOCHS, zero_stage, accum=accum, stop=stop, strategy=strategy)
    state = rundir.read_json(tmp_path / "checkpoints" / "last" / "trainer_state.json") or {}
    epoch, asked = (int(part) for part in stop.split(":"))
    assert (state["epochs_done"], state["step_in_epoch"]) == (epoch, asked + LAG_BOUNDARIES * accum)
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "last").glob("rank_state_*.pt")) == [
        "rank_state_0.pt",
        "rank_state_1.pt",
    ]
    train(tmp_path, EPOCHS, zero_stage, accum=accum, strategy=strategy)
    reference = straight(zero_stage, accum, strategy)
    columns = ("epoch", "train_loss", "val_loss", "val_top1")
    resumed = [[row[c] for c in columns] for row in history(tmp_path)]
    assert resumed == [[row[c] for c in columns] for row in history(reference)]
    metrics = rundir.read_json(tmp_path / rundir.METRICS) or {}
    assert metrics["test"] == (rundir.read_json(reference / rundir.METRICS) or {})["test"]
    if strategy == "deepspeed":
        assert engine_steps(tmp_path) == engine_steps(reference)


# ---- one optimizer step, single process: what DeepSpeed does to the gradient ------------------

ONE_STEP = Path(__file__).resolve().parent / "one_step_worker.py"


def one_step(
    run_dir: Path, strategy: str, accum: int, batch: int, clip: float | None = None
) -> dict[str, torch.Tensor]:
    """Each parameter's change after one SGD(lr=1) step over 16 digits (one_step_worker.py)."""
    clip_arg = "-" if clip is None else str(clip)
    command = [sys.executable, str(ONE_STEP), str(run_dir), strategy, str(accum), str(batch), "16", clip_arg]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    update: dict[str, torch.Tensor] = torch.load(run_dir / "update.pt")
    return update


def norm(update: dict[str, torch.Tensor]) -> float:
    return float(torch.sqrt(sum((change.double() ** 2).sum() for change in update.values())))


@pytest.fixture(scope="module")
def plain_step(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The DDP path's step (one process): 16 images, one micro-batch, no clipping."""
    return one_step(tmp_path_factory.mktemp("plain_step"), "ddp", accum=1, batch=16)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5) for k in a)


def test_deepspeed_does_not_clip_when_the_config_does_not(plain_step: dict[str, torch.Tensor], tmp_path: Path) -> None:
    # Accelerate fills DeepSpeed's gradient_clipping "auto" with 1.0: a gradient of norm > 1 was clipped.
    assert norm(plain_step) > 2.0
    update = one_step(tmp_path, "deepspeed", accum=1, batch=16)
    assert (rundir.read_json(tmp_path / rundir.DEEPSPEED_CONFIG) or {})["gradient_clipping"] == 0.0
    assert same(update, plain_step)


def test_deepspeed_steps_a_short_accumulation_window_as_a_full_one(
    plain_step: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    # Batch 32 in 2 micro-batches of 16 over 16 images: the epoch's only window holds one micro-batch,
    # whose gradient DeepSpeed divided by 2 (its gradient_accumulation_steps).
    update = one_step(tmp_path, "deepspeed", accum=2, batch=32)
    assert same(update, plain_step)
