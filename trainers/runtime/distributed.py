"""The Accelerator of one run: single process, DDP, or DeepSpeed ZeRO, on GPU or CPU.

The job side (orchestrator.job) exports RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT
from SLURM before this runs; Accelerate reads them. What Accelerate does not work out by
itself, and is established on CPU-only machines:

- DDP without CUDA needs `cpu=True`, else Accelerate sees several processes but runs them
  as independent single-process trainings (DistributedType.NO: no gradient sync).
- DeepSpeed without CUDA needs DS_ACCELERATOR=cpu and a gloo process group, and must NOT
  get `cpu=True`, which silently drops the DeepSpeed plugin.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DeepSpeedPlugin, InitProcessGroupKwargs

from trainers.config import DistributedConfig, TrainConfig


def world_size() -> int:
    """Processes of this run, from the env:// variables (1 when not distributed)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def precision_of(cfg: TrainConfig) -> str:
    """Mixed precision to use: `auto` is bf16 on a GPU that has it (Ampere and newer), fp16 with
    loss scaling on older GPUs (V100, T4), none on CPU."""
    if cfg.precision != "auto":
        return cfg.precision
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def run_precision(cfg: TrainConfig, recorded: str | None) -> str:
    """This attempt's mixed precision: under `precision: auto`, the one the run's first attempt
    resolved (`recorded`, from its checkpoint; None before any), else the config's, resolved here.
    `auto` depends on the node, so a run requeued onto another GPU type would otherwise go on in
    another precision (bf16 -> fp16 would even look for a loss scaler its checkpoint lacks)."""
    if cfg.precision != "auto" or recorded is None:
        return precision_of(cfg)
    if not runs_here(recorded):
        where = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
        raise RuntimeError(
            f"this run trained in {recorded} (precision: auto, resolved on its first attempt) and cannot "
            f"resume in it on this node ({where}): requeue it where {recorded} runs, or start it afresh"
        )
    return recorded


def runs_here(precision: str) -> bool:
    """Whether this node trains in `precision`: fp16 (loss-scaled) needs a GPU, bf16 a GPU that
    has it or the CPU."""
    if precision == "no":
        return True
    if not torch.cuda.is_available():
        return precision == "bf16"
    return precision == "fp16" or torch.cuda.is_bf16_supported(including_emulation=False)


def deepspeed_plugin(dist: DistributedConfig, grad_clip_norm: float | None) -> DeepSpeedPlugin:
    """ZeRO config generated from the spec; batch sizes are filled by Accelerate at prepare().

    DeepSpeed owns the optimizer step, so clipping goes into its config.
    """
    plugin = DeepSpeedPlugin(
        gradient_clipping=deepspeed_clipping(grad_clip_norm),
        zero_stage=dist.zero_stage,
        gradient_accumulation_steps=dist.grad_accum_steps,
        offload_optimizer_device="cpu" if dist.offload_optimizer else "none",
        offload_param_device="cpu" if dist.offload_params else "none",
        zero3_init_flag=False,
        zero3_save_16bit_model=True,  # ZeRO-3: gather full weights when the best model is saved
    )
    merge_into(plugin.deepspeed_config, dist.deepspeed)  # the spec's extra keys (owned ones refused by config)
    return plugin


def deepspeed_clipping(grad_clip_norm: float | None) -> float:
    """DeepSpeed's `gradient_clipping` for the config's norm: 0.0 (DeepSpeed's "off") when none is
    set. The plugin turns None into "auto", which Accelerate fills with 1.0 at prepare(): every
    DeepSpeed run would clip at 1.0 where the same run under DDP does not clip at all."""
    return 0.0 if grad_clip_norm is None else grad_clip_norm


def merge_into(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Deep-merge `extra` into `base`: nested mappings are merged, other values replaced."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def build_accelerator(cfg: TrainConfig, log_with: list[Any] | None = None, precision: str | None = None) -> Accelerator:
    """Accelerator for the run's strategy on whatever devices are there, in mixed `precision`
    (None: the config's, resolved here; see run_precision), logging to `log_with` (Accelerate
    tracker objects, see trainers.runtime.tracking)."""
    dist = cfg.distributed
    # The schedule is per epoch: stepping it with every optimizer step (Accelerate's
    # default for prepared schedulers) would be wrong.
    mixed = precision or precision_of(cfg)
    kwargs: dict[str, Any] = {"mixed_precision": mixed, "step_scheduler_with_optimizer": False}
    if log_with:
        kwargs["log_with"] = log_with
    on_gpu = torch.cuda.is_available()
    kwargs["dataloader_config"] = loader_config(on_gpu)
    if dist.strategy == "deepspeed":
        single_process_env()
        if not on_gpu:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
            kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]
        return Accelerator(deepspeed_plugin=deepspeed_plugin(dist, cfg.optim.grad_clip_norm), **kwargs)
    if not on_gpu and world_size() > 1:
        return Accelerator(cpu=True, **kwargs)
    return Accelerator(**kwargs)


def loader_config(on_gpu: bool) -> DataLoaderConfiguration:
    """How prepared loaders move batches: on a GPU without blocking the host. Batches come from pinned
    memory there (trainers.data.loaders), so the host queues the next step while the device still
    runs this one; Accelerate's default blocks on every copy, and on an H200 the trainer then ran
    resnet50 at 0.78-0.90 of a bare loop's rate. Elsewhere as Accelerate does (MPS has had wrong
    results from non-blocking copies; on CPU there is nothing to copy)."""
    return DataLoaderConfiguration(non_blocking=on_gpu)


def single_process_env() -> None:
    """DeepSpeed always initialises torch.distributed: give a lone process a world of one."""
    if "WORLD_SIZE" in os.environ:
        return
    import socket

    with socket.socket() as probe:  # a free port, so concurrent single-process runs do not collide
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    defaults = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
    defaults |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def uses_deepspeed(accelerator: Accelerator) -> bool:
    """Whether the engine handles loss scaling by accumulation steps and the optimizer step."""
    return accelerator.state.deepspeed_plugin is not None


def unwrap(accelerator: Accelerator, model: torch.nn.Module) -> Any:
    """`accelerator.unwrap_model(model)`, without importing DeepSpeed in a run that does not use it:
    accelerate's unwrap imports deepspeed whenever it is installed (2.8 s of every DDP or
    single-process run's start-up here). Such a run's model is wrapped at most in DDP (or
    DataParallel, FSDP); a compiled model goes to accelerate, which also unwraps torch.compile."""
    from accelerate.utils.other import has_compiled_regions, is_compiled_module

    if uses_deepspeed(accelerator) or is_compiled_module(model) or has_compiled_regions(model):
        return accelerator.unwrap_model(model)
    wrappers: tuple[type[torch.nn.Module], ...] = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    if torch.distributed.is_available():
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrappers += (FullyShardedDataParallel,)
    inner: Any = model
    while isinstance(inner, wrappers):
        inner = inner.module
    return inner


def state_dict(accelerator: Accelerator, model: torch.nn.Module) -> Any:
    """`accelerator.get_state_dict(model)`: DeepSpeed's gathers the weights (a collective under
    ZeRO-3); any other run's is accelerate's own branch, its unwrapped model's, without the
    DeepSpeed import of accelerate's unwrap (see unwrap)."""
    if uses_deepspeed(accelerator):
        return accelerator.get_state_dict(model)
    return unwrap(accelerator, model).state_dict()


def share_buffers(accelerator: Accelerator, model: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics) before an evaluation.

    DDP broadcasts buffers from rank 0 at each forward; a DeepSpeed engine does not, so each rank's
    BatchNorm statistics drift apart on its own shard of the data. The `best` checkpoint holds rank
    0's, so without this the validation scored during training (each rank with its own statistics)
    and the same model reloaded from `best` disagreed by a few images."""
    if not uses_deepspeed(accelerator) or accelerator.num_processes < 2:
        return
    for buffer in unwrap(accelerator, model).buffers():
        torch.distributed.broadcast(buffer.data, src=0)


def model_input_dtype(accelerator: Accelerator) -> torch.dtype | None:
    """The dtype inputs need, when the model itself runs in half precision: DeepSpeed converts
    the model to bf16/fp16 and does not autocast, so float32 images would not match its weights."""
    if not uses_deepspeed(accelerator):
        return None  # autocast (or fp32) takes float32 inputs
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision)


def match_buffers(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast floating-point buffers to the model's half precision. DeepSpeed converts only the
    parameters, which leaves BatchNorm's running statistics in fp32: no batch_norm kernel
    takes bf16 weights with fp32 statistics."""
    for module in model.modules():
        for name, buffer in module.named_buffers(recurse=False):
            if buffer.is_floating_point() and buffer.dtype != dtype:
                setattr(module, name, buffer.to(dtype))


def layout(accelerator: Accelerator, cfg: TrainConfig) -> dict[str, Any]:
    """How the global batch was split and run: the `parallel` block of metrics.json."""
    accum = cfg.distributed.grad_accum_steps
    processes = accelerator.num_processes
    found: dict[str, Any] = {
        "distributed_type": accelerator.distributed_type.value,
        "processes": processes,
        "global_batch": cfg.data.batch_size,
        "per_device_batch": cfg.data.batch_size // (processes * accum),
        "grad_accum_steps": accum,
        "mixed_precision": accelerator.mixed_precision,
    }
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:
        engine = plugin.deepspeed_config
        found["zero_stage"] = plugin.zero_stage
        found["deepspeed_train_batch"] = engine.get("train_batch_size")
        found["deepspeed_micro_batch"] = engine.get("train_micro_batch_size_per_gpu")
    return found


def deepspeed_config(accelerator: Accelerator) -> dict[str, Any] | None:
    """The DeepSpeed config in effect after prepare() (batch sizes filled in), if any."""
    plugin = accelerator.state.deepspeed_plugin
    return None if plugin is None else dict(plugin.deepspeed_config)
