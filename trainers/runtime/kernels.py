"""Which GPU kernels a run may use: autotuned and fast, or deterministic (`deterministic: true`).

On a GPU two runs of one config differ in their last digits unless the kernels are forced to be
deterministic: cuDNN's autotuner may pick another convolution algorithm in another process, and
some backward passes add with atomics in whatever order the threads finish. Seen on an H200
(2026-12-04): a run stopped and resumed differed from the uninterrupted run already in its first
epoch's loss (2.2110 against 2.2083); on CPU the same test is bit for bit.
"""

from __future__ import annotations

import os

import torch

CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS's fixed workspace for reproducible results (CUDA's docs: about 24 MiB more GPU memory)."""


def choose_kernels(deterministic: bool, on_gpu: bool) -> None:
    """Set torch's kernel choice for this run, either way: a warm worker trains many runs in one
    process, so a deterministic run must not leave its setting to the next one, nor inherit another's."""
    # cuBLAS reads its workspace setting once per process, at its first use: fixed for every run (not
    # only deterministic ones), so a deterministic run after others in a warm worker still has it
    # and every executor runs cuBLAS alike. A value the user set is kept (torch then says if it is not
    # a deterministic one).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    # Fixed input shapes (square resize, drop_last): autotuned convolution kernels pay off, unless
    # the run must repeat exactly.
    torch.backends.cudnn.benchmark = on_gpu and not deterministic
