"""metrics.json's provenance names the commit of the checkout whose trainer ran (an installed copy
records none: tests/e2e/test_wheel.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from trainers.runtime.provenance import provenance

REPO = Path(__file__).resolve().parents[3]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_a_checkouts_run_records_its_commit_and_dirty_flag() -> None:
    """The suite runs from a checkout of this tool (make test): its HEAD is the code that ran. (The
    module moved one folder down once and recorded null for every run since, unnoticed.)"""
    recorded = provenance(torch.device("cpu"), 1)
    assert recorded["git_commit"] == git("rev-parse", "HEAD")
    assert recorded["git_dirty"] is bool(git("status", "--porcelain", "--untracked-files=no"))
