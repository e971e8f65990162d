"""The GPU check: trainer vs bare PyTorch loop, per model, variant and data source, as one table.

For each backbone, each variant of bench/train_throughput.py (fp32, bf16, bf16 + channels_last,
torch.compile, DeepSpeed ZeRO-2 and -3) trains on synthetic data (uint8 images already on the
device: the step alone) and the best plain variant also on the real loader (digits resized to
--size px by the trainer's input pipeline). The trainer is trainers.loop (build_parts +
train_one_epoch, Accelerate and all); the bare loop is the same model (same builder, seed,
optimizer, batch, precision, memory layout, compile) stepped by hand. DeepSpeed variants have no
bare twin: their ratio is to the bare bf16 loop. Columns: images/s (median over the epochs after
the first, which pays for compilation and autotuning), trainer/bare, MFU (our FLOP counter's
forward GFLOPs x 3 for forward + backward, against the device's dense bf16 peak) and peak memory.

Every measurement group runs in a fresh process (DeepSpeed and Accelerate keep process-wide
state). bench/gpu_check.sh runs the GPU set; `--reduced` is the same code on a tiny model for CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from train_throughput import VARIANTS, cell, peak_memory_mib

# Dense bf16 tensor-core peak per device (TFLOP/s, from the vendors' data sheets, no sparsity).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}
PLAIN = ["fp32", "bf16", "bf16-channels-last", "compile-bf16-channels-last"]
REAL_VARIANT = "bf16-channels-last"


def synthetic_loader(cfg: Any, accelerator: Any, steps: int) -> Any:
    """`steps` batches of one random uint8 image batch and labels already on the device, as the
    bare loop's: the step alone, no copy (a CPU loader here made the trainer pay a pageable
    host-to-device copy per step that the bare loop did not)."""
    size, batch = cfg.data.image_size_px, cfg.data.batch_size // accelerator.num_processes
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=accelerator.device)
    return [(images, torch.randint(0, 10, (batch,), device=accelerator.device))] * steps


def trainer_rate(cfg: Any, data: str, epochs: int) -> float:
    """Median images/s of trainers.loop.epoch.train_one_epoch over the epochs after the first."""
    from trainers.loop.build import build_parts, release_accelerator
    from trainers.loop.epoch import train_one_epoch
    from trainers.loop.resume import Progress

    with tempfile.TemporaryDirectory() as folder:
        parts = build_parts(cfg, Path(folder))
        try:
            if data == "synthetic":
                parts.data.train = synthetic_loader(cfg, parts.accelerator, cfg.max_steps_per_epoch)
            rates = []
            for epoch in range(epochs):
                trained = train_one_epoch(parts, epoch, Progress())
                rates.append(trained.images / trained.seconds)
        finally:
            release_accelerator(parts.accelerator)
    return statistics.median(rates[1:] or rates)


def bare_rate(cfg: Any, data: str, epochs: int) -> float:
    """Median images/s of a hand-written loop: same model, optimizer, precision, layout, compile."""
    from accelerate.utils import set_seed

    from trainers.data.loaders import build_data
    from trainers.data.transforms import BatchNormalize
    from trainers.loop.optim import build_optimizer
    from trainers.model.build import build_model
    from trainers.model.tasks import task_of

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = device.type == "cuda"  # autotuned, as the trainer's (trainers.runtime.kernels)
    bundle = build_data(cfg.data, cfg.seed)
    set_seed(cfg.seed)
    model = build_model(cfg, task_of(bundle.splits)).to(device)
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    if cfg.compile:
        model.compile()
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    normalize, steps = BatchNormalize(), cfg.max_steps_per_epoch
    if data == "synthetic":
        size, batch = cfg.data.image_size_px, cfg.data.batch_size
        images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
        batches: Any = [(images, torch.randint(0, 10, (batch,), device=device))] * steps
    else:
        batches = bundle.train
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    rates = []
    for _ in range(epochs):
        started, seen = time.perf_counter(), 0
        for index, (x, y) in enumerate(batches):
            if index == steps:
                break
            x = normalize(x.to(device, non_blocking=True)).contiguous(memory_format=layout)
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(x).float(), y.to(device, non_blocking=True))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seen += len(y)
        float(loss.detach())  # waits for the device
        rates.append(seen / (time.perf_counter() - started))
    return statistics.median(rates[1:] or rates)


def child(args: argparse.Namespace, group: dict[str, Any]) -> None:
    """Measure one group in this process; one JSON line per measurement."""
    args.backbone = group["backbone"]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for what, variant, data in group["jobs"]:
        cfg = cell(args, variant)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        measure = trainer_rate if what == "trainer" else bare_rate
        rate = measure(cfg, data, args.epochs)
        row = {"what": what, "variant": variant, "data": data, "images_per_s": rate, "peak_mib": peak_memory_mib()}
        print(json.dumps(row), flush=True)


def groups(backbone: str, deepspeed_variants: list[str]) -> list[dict[str, Any]]:
    """The measurement groups of one backbone, each run in its own process."""
    plain = [("trainer", v, "synthetic") for v in PLAIN] + [("trainer", REAL_VARIANT, "real")]
    bare = [("bare", v, "synthetic") for v in PLAIN] + [("bare", REAL_VARIANT, "real")]
    deepspeed = [[("trainer", v, "synthetic")] for v in deepspeed_variants]
    return [{"backbone": backbone, "jobs": jobs} for jobs in [plain, bare, *deepspeed]]


def run_group(group: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
    """One group in a fresh process; its rows (those finished before a failure or the timeout)."""
    command = [sys.executable, __file__, *sys.argv[1:], "--child", json.dumps(group)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=max(1.0, timeout_s))
        out, failed = done.stdout, done.returncode != 0
        err = done.stderr
    except subprocess.TimeoutExpired as exc:
        out, failed = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), True
        err = "timed out"
    if failed:
        print(f"{group['backbone']} {[j[1] for j in group['jobs']]}: failed: {err[-1500:]}", file=sys.stderr)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [{"backbone": group["backbone"], **row} for row in rows]


def flops_per_image(args: argparse.Namespace, backbone: str) -> float:
    """Training FLOPs per image: our counter's forward FLOPs x 3 (forward + backward)."""
    from trainers.model.complexity import complexity
    from trainers.model.tasks import single

    args.backbone = backbone
    return 3 * complexity(cell(args, "fp32"), single(10))["gflops"] * 1e9


def peak_tflops(override: float | None) -> float | None:
    """The device's dense bf16 peak (None on CPU or an unknown GPU without --peak-tflops)."""
    if override is not None:
        return override
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def table(rows: list[dict[str, Any]], flops: dict[str, float], peak: float | None) -> str:
    """The report: one line per measurement, trainer rows with their bare twin's rate and ratio."""
    bare = {(r["backbone"], r["variant"], r["data"]): r["images_per_s"] for r in rows if r["what"] == "bare"}
    lines = [
        f"| {'backbone':18} | {'variant':26} | {'data':9} | {'trainer img/s':>13} | {'bare img/s':>10} | "
        f"{'ratio':>5} | {'MFU':>5} | {'peak MiB':>8} |",
        f"|{'-' * 20}|{'-' * 28}|{'-' * 11}|{'-' * 15}|{'-' * 12}|{'-' * 7}|{'-' * 7}|{'-' * 10}|",
    ]
    for row in (r for r in rows if r["what"] == "trainer"):
        key = (row["backbone"], row["variant"], row["data"])
        same_precision = "fp32" if VARIANTS[row["variant"]].get("precision") == "no" else "bf16"
        twin = bare.get(key) or bare.get((row["backbone"], same_precision, row["data"]))
        rate = row["images_per_s"]
        ratio = f"{rate / twin:5.2f}" if twin else "    -"
        mfu = f"{rate * flops[row['backbone']] / (peak * 1e12):5.1%}" if peak else "    -"
        lines.append(
            f"| {row['backbone']:18} | {row['variant']:26} | {row['data']:9} | {rate:13.1f} | "
            f"{twin or float('nan'):10.1f} | {ratio} | {mfu} | {row['peak_mib']:8.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "convnextv2_large"])
    parser.add_argument("--size", type=int, default=224, help="image size in px")
    parser.add_argument("--batch", type=int, default=128, help="global batch size")
    parser.add_argument("--steps", type=int, default=15, help="optimizer steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement; the first is not timed")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: from CPU count)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="stop starting groups after this long")
    parser.add_argument("--deepspeed", nargs="*", default=["zero2-bf16", "zero3-bf16"], choices=sorted(VARIANTS))
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak, for an unlisted GPU")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args, json.loads(args.child))
        return
    started, rows = time.perf_counter(), []
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = peak_tflops(args.peak_tflops)
    print(
        f"{device}: {args.size}px, batch {args.batch}, {args.steps} steps x {args.epochs} epochs; peak {peak} TFLOP/s"
    )
    for backbone in args.backbones:
        for group in groups(backbone, args.deepspeed):
            left = args.budget_s - (time.perf_counter() - started)
            if left <= 0:
                print(f"budget spent: skipped {backbone} {[j[1] for j in group['jobs']]}", file=sys.stderr)
                continue
            rows += run_group(group, left)
    flops = {backbone: flops_per_image(args, backbone) for backbone in args.backbones}
    print(table(rows, flops, peak))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
