"""On-node preflight: a few seconds of checks on the compute node before the trainer builds anything.

What a broken node gets wrong, not what a broken config gets wrong (the login node's preflight
checks those before submission): the environment imports, the requested GPUs are visible and
compute (a small matmul on each), the driver is new enough for torch's CUDA, the datasets are
readable from this node, the output and scratch filesystems have room for the run's checkpoints.
In a job of several processes every rank then sends its verdict to every other (a gloo all-gather,
which is also the check that the ranks can talk): the job fails on any rank's reason, at once and
on every rank, and names that rank's host, not rank 0's. A failure is one line; the job records it
as `preflight_fail` against that host and exits with EXIT_CODE, so the run is retried elsewhere
(orchestrator/launch/failures.py reads both).
"""

from __future__ import annotations

import datetime
import importlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainers import rundir
from trainers.config import DatasetConfig, TrainConfig
from trainers.runtime import faults

EXIT_CODE = 77
"""Exit status of a job whose preflight failed (orchestrator.launch.failures.EXIT_PREFLIGHT)."""
IMPORTS = ("torch", "torchvision", "timm", "accelerate", "sklearn")
SCRATCH_MIN_GB = 1.0
"""Free space the node's scratch ($TMPDIR) must have: loaders and compilers write there."""
CHECKPOINT_FLOOR_GB = 1.0
"""Free space the output folder must have when the model's size cannot be estimated."""
_BYTES_PER_PARAM = 4 * 3 * 2
"""fp32 weights and two optimizer moments, in checkpoints/last and checkpoints/best."""


RENDEZVOUS_S = 300
"""How long the ranks wait for each other in the verdict exchange. Ranks start apart (imports from a
loaded node or a slow shared filesystem), and an unfit rank still sends its verdict, so this wait is
spent only when a rank cannot be reached at all."""


class PreflightFailed(RuntimeError):
    """One line: what this node cannot do for the run."""


@dataclass(frozen=True)
class Unfit:
    """A failed preflight: the host whose check failed (in a job of several ranks, maybe not this
    one; "" when no rank can be blamed: the ranks could not exchange their verdicts), the rank that
    failed (None in a job of one process) and why, in one line."""

    host: str
    reason: str
    rank: int | None = None

    @property
    def line(self) -> str:
        """The reason as status.json records it: `rank 1 on node2: <reason>` in a job of several ranks."""
        return self.reason if self.rank is None else f"rank {self.rank} on {self.host}: {self.reason}"


def check(
    cfg: TrainConfig, run_dir: Path, check_gpus: bool = True, resume_precision: str | None = None
) -> Unfit | None:
    """Run every check on this node, then (several ranks) exchange the verdicts: the first unfit
    rank's host and reason, or None when every node is fit. `check_gpus` False (the retry policy's
    preflight_gpus): GPU gres that are not real GPUs. `resume_precision`: the precision a resumed
    `precision: auto` run goes on in (its checkpoint's; None: not such a run)."""
    local = local_reason(cfg, run_dir, check_gpus, resume_precision)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "MASTER_ADDR" in os.environ:
        return exchange(local, rundir.node_name())
    return None if local is None else Unfit(rundir.node_name(), local)


def local_reason(
    cfg: TrainConfig, run_dir: Path, check_gpus: bool = True, resume_precision: str | None = None
) -> str | None:
    """This node's checks: the first failure's one-line reason, or None."""
    steps: list[Callable[[], None]] = [
        _injected,
        _imports,
        lambda: _gpus(cfg.distributed.gpus_per_node if check_gpus else 0),
        lambda: _precision(resume_precision),
        lambda: _datasets(cfg.data.dataset),
        lambda: _space(cfg, run_dir),
    ]
    try:
        for step in steps:
            step()
    except PreflightFailed as exc:
        return str(exc)
    return None


def _precision(resume_precision: str | None) -> None:
    """A run that resumes under `precision: auto` goes on in the precision its first attempt resolved:
    a node that cannot train in it (fp16 without a GPU, bf16 on a GPU without it) is unfit for this
    run, and the job is retried on another (the trainer would refuse it too, as a run error)."""
    if resume_precision is None:
        return
    from trainers.runtime.distributed import runs_here  # after the imports check: it imports torch

    if not runs_here(resume_precision):
        raise PreflightFailed(
            f"the run trained in {resume_precision} (precision: auto) and this node cannot resume in it"
        )


def _injected() -> None:
    reason = faults.preflight_fault()
    if reason:
        raise PreflightFailed(reason)


def _imports() -> None:
    for name in IMPORTS:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an environment that cannot import is the node's (or its image's) fault
            raise PreflightFailed(f"import {name}: {type(exc).__name__}: {exc}") from None


def _gpus(requested: int) -> None:
    """The GPUs this process will use are visible, the driver is new enough, and each computes."""
    if requested == 0:
        return
    import torch

    _driver_new_enough()
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise PreflightFailed(f"{requested} GPU(s) requested, CUDA sees none (CUDA_VISIBLE_DEVICES={visible})")
    count = torch.cuda.device_count()
    if count < requested:
        raise PreflightFailed(f"{requested} GPU(s) requested per node, {count} visible")
    local = os.environ.get("LOCAL_RANK")
    devices = [int(local)] if local is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1 else range(requested)
    for index in devices:
        _matmul(index)


def _driver_new_enough() -> None:
    """The driver supports the CUDA version torch was built with (a same-major driver is enough)."""
    import torch

    built = torch.version.cuda
    reader = getattr(torch._C, "_cuda_getDriverVersion", None)
    if not built or reader is None:
        return  # a CPU build of torch: the is_available check reports the missing GPU
    try:
        driver = int(reader())  # e.g. 12040 for CUDA 12.4
    except Exception as exc:
        raise PreflightFailed(f"CUDA driver unusable: {type(exc).__name__}: {exc}") from None
    major = int(str(built).split(".")[0])
    if driver < major * 1000:
        raise PreflightFailed(f"CUDA driver supports {driver // 1000}.{driver % 1000 // 10}, torch needs {built}")


def _matmul(index: int) -> None:
    import torch

    try:
        a = torch.randn(256, 256, device=f"cuda:{index}")
        value = float((a @ a).sum().item())
        torch.cuda.synchronize(index)
    except Exception as exc:
        raise PreflightFailed(f"GPU {index}: matmul failed: {type(exc).__name__}: {exc}") from None
    if value != value:  # NaN from a broken device
        raise PreflightFailed(f"GPU {index}: matmul gave NaN")


def _datasets(dataset: DatasetConfig) -> None:
    """Every dataset root the run reads can be listed from this node (an unmounted filesystem cannot)."""
    for part in (dataset, *dataset.parts):
        if part.root is None:
            continue
        root = Path(part.root).expanduser()
        try:
            with os.scandir(root) as entries:
                next(entries, None)
        except OSError as exc:
            raise PreflightFailed(f"dataset {part.name}: {root} unreadable ({exc.strerror or exc})") from None


def _space(cfg: TrainConfig, run_dir: Path) -> None:
    """Room for the run's checkpoints in the output folder, and some on the node's scratch."""
    needed_gb = _checkpoint_gb(cfg)
    _free_at_least(run_dir if run_dir.exists() else run_dir.parent, needed_gb, "output")
    scratch = os.environ.get("TMPDIR")
    if scratch and Path(scratch).is_dir():
        _free_at_least(Path(scratch), SCRATCH_MIN_GB, "scratch ($TMPDIR)")


def _checkpoint_gb(cfg: TrainConfig) -> float:
    """Size of the run's checkpoints, from the backbone's parameter count (meta device: no memory)."""
    try:
        import timm
        import torch

        with torch.device("meta"):
            model = timm.create_model(cfg.model.backbone, pretrained=False)
        params = sum(p.numel() for p in model.parameters())
    except Exception:  # a backbone timm cannot build here is the trainer's error to report, not the node's
        return CHECKPOINT_FLOOR_GB
    return max(CHECKPOINT_FLOOR_GB / 10, params * _BYTES_PER_PARAM / 1e9)


def _free_at_least(path: Path, needed_gb: float, what: str) -> None:
    try:
        free_gb = shutil.disk_usage(path).free / 1e9
    except OSError as exc:
        raise PreflightFailed(f"{what}: cannot stat {path} ({exc.strerror or exc})") from None
    if free_gb < needed_gb:
        raise PreflightFailed(f"{what}: {free_gb:.1f} GB free at {path}, the run's checkpoints need {needed_gb:.1f} GB")


def exchange(local: str | None, host: str) -> Unfit | None:
    """Every rank's (host, reason) to every rank over gloo, on a port beside the trainer's (its own
    rendezvous later starts clean): the lowest unfit rank's verdict, the same on every rank, or None.
    When the ranks cannot form the group or finish the all-gather, no rank can be blamed (host "")."""
    world = int(os.environ["WORLD_SIZE"])
    try:
        import torch.distributed as dist
    except Exception as exc:  # the imports check has this rank's reason; without torch there is no exchange
        return Unfit(host, local or f"import torch.distributed: {type(exc).__name__}: {exc}", int(os.environ["RANK"]))
    address = f"tcp://{os.environ['MASTER_ADDR']}:{int(os.environ.get('MASTER_PORT', '29500')) + 1}"
    verdicts: list[tuple[str, str | None] | None] = [None] * world
    try:
        dist.init_process_group(
            "gloo",
            init_method=address,
            rank=int(os.environ["RANK"]),
            world_size=world,
            timeout=datetime.timedelta(seconds=RENDEZVOUS_S),
        )
        dist.all_gather_object(verdicts, (host, local))
    except Exception as exc:
        return Unfit("", f"verdict exchange across {world} ranks failed on {host}: {type(exc).__name__}: {exc}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    for rank, verdict in enumerate(verdicts):
        if verdict is None:
            return Unfit("", f"verdict exchange across {world} ranks: rank {rank} sent none")
        if verdict[1] is not None:
            return Unfit(verdict[0], verdict[1], rank)
    return None
