"""trainers.runtime.kernels: a run's kernel choice is set on every run, so a warm worker's next run
neither inherits a deterministic run's setting nor loses its own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from trainers.runtime.kernels import CUBLAS_WORKSPACE, choose_kernels


@pytest.fixture(autouse=True)
def _restore_torch() -> Iterator[None]:
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)
    benchmark = torch.backends.cudnn.benchmark
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], benchmark


def _state() -> tuple[bool, bool, bool]:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )


def test_each_run_sets_its_own_choice_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    choose_kernels(deterministic=True, on_gpu=True)
    assert _state() == (True, True, False)
    choose_kernels(deterministic=False, on_gpu=True)  # the next run in a warm worker
    assert _state() == (False, False, True)
    choose_kernels(deterministic=False, on_gpu=False)
    assert _state() == (False, False, False)
    # Fixed for every run: cuBLAS reads it once per process, before a later deterministic run.
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE


def test_a_workspace_the_user_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    choose_kernels(deterministic=True, on_gpu=False)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
