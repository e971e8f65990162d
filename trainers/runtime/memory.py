"""Peak memory of one run: host RSS of the training processes and, on CUDA, the GPU allocator's peaks.

A run may execute in a long-lived warm worker (orchestrator/launch/worker.py), where the
lifetime peak (`ru_maxrss`) would include every earlier run of that process. On Linux, writing
"5" to /proc/self/clear_refs resets the process's high-water mark (VmHWM in /proc/self/status),
so `reset_host_peak` at the start of a run and `local_peaks` at its end measure that run alone. Where that
file is missing or not writable the host peak is None, never a lifetime number taken for the run's.
DataLoader worker processes are separate processes and are not included.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

_PROC = Path("/proc/self")
_KIB_PER_MIB = 1024.0
_BYTES_PER_MIB = 1024.0**2
RSS_SCOPE = "training processes (each its peak resident set); DataLoader worker processes not included"


def reset_host_peak() -> bool:
    """Start a run's host measurement (before anything of the run is built): reset this process's
    high-water mark. Returns whether that worked (False: `local_peaks` reports no host peak)."""
    try:
        (_PROC / "clear_refs").write_text("5")
    except OSError as exc:  # not Linux, or a kernel without clear_refs: no trustworthy per-run peak
        log.debug("cannot reset the peak RSS: %s", exc)
        return False
    return _status_kib("VmHWM") is not None


def reset_gpu_peak(device: torch.device) -> None:
    """Start a run's GPU measurement on its device (the allocator's peaks drop to what is held now)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _status_kib(field: str) -> int | None:
    """A `field:  N kB` line of /proc/self/status, in KiB (None when absent or unreadable)."""
    try:
        lines = (_PROC / "status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == field:
            parts = value.split()
            return int(parts[0]) if parts and parts[0].isdigit() else None
    return None


def host_total_mib() -> float | None:
    """The machine's memory (MemTotal of /proc/meminfo) in MiB, or None where unavailable."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / _KIB_PER_MIB, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def local_peaks(device: torch.device, host_reset: bool) -> list[float]:
    """This process's [peak RSS, GPU peak allocated, GPU peak reserved, GPU total] in MiB; -1 = unknown
    (a tensor-friendly form, so the ranks' values can be gathered)."""
    hwm = _status_kib("VmHWM") if host_reset else None
    values = [hwm / _KIB_PER_MIB if hwm is not None else -1.0, -1.0, -1.0, -1.0]
    if device.type == "cuda":
        values[1] = torch.cuda.max_memory_allocated(device) / _BYTES_PER_MIB
        values[2] = torch.cuda.max_memory_reserved(device) / _BYTES_PER_MIB
        values[3] = torch.cuda.get_device_properties(device).total_memory / _BYTES_PER_MIB
    return values


def summarize(per_process: list[list[float]]) -> dict[str, Any]:
    """The memory fields of metrics.json `timing` from every process's `local_peaks`: maxima over processes
    (and the host RSS summed over them: what one node's memory request must hold for one process per
    device). A value no process could measure is None."""

    def column(index: int) -> list[float]:
        return [row[index] for row in per_process if row[index] >= 0]

    def peak(index: int) -> float | None:
        known = column(index)
        return round(max(known), 1) if known and len(known) == len(per_process) else None

    rss = column(0)
    return {
        "peak_rss_mib": peak(0),
        "peak_rss_sum_mib": round(sum(rss), 1) if rss and len(rss) == len(per_process) else None,
        "host_total_mib": host_total_mib(),
        "rss_scope": RSS_SCOPE,
        "gpu_peak_allocated_mib": peak(1),
        "gpu_peak_reserved_mib": peak(2),
        "gpu_total_mib": round(min(column(3)), 1) if column(3) else None,
    }


# glibc mallopt parameters (malloc.h) and the values the trainer sets, see `tune_host_allocator`.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's ceiling for it on 64-bit
_TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024
_USER_ALLOCATOR_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "LD_PRELOAD")
_tuned: bool | None = None


def tune_host_allocator() -> bool:
    """Keep freed host memory for reuse instead of handing it back to the OS after every step.

    With glibc's defaults a CPU training step frees and re-maps tens of MB of activations and
    gradients (blocks above the dynamic mmap threshold, or a trimmed heap top), and each re-use
    page-faults: bench/train_overhead.py (resnet10t at 32 px, 19 steps an epoch) counts ~100,000
    minor faults per epoch with the defaults and a few hundred tuned, and its bare loop runs ~1.1x
    faster tuned; glibc's dynamic thresholds also make it vary from run to run
    (tests/unit/trainers/test_memory.py). Blocks up to 32 MiB then come from the heap, and up
    to 256 MiB of free heap stays mapped. Only on glibc, once per process, and never when the
    user chose an allocator or its settings (MALLOC_*_ variables, LD_PRELOAD). Returns whether
    the settings are in effect."""
    global _tuned
    if _tuned is None:
        _tuned = _set_mallopt()
    return _tuned


def _set_mallopt() -> bool:
    if any(name in os.environ for name in _USER_ALLOCATOR_ENV):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        return False
    if mallopt is None:  # not glibc (musl, macOS)
        return False
    # Both, or the settings make it worse: a trim threshold alone turns the dynamic mmap threshold
    # off and leaves every block over 128 KiB to mmap (half the speed, measured).
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    )
