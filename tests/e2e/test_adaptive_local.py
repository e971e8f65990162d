"""Adaptive seeds end to end on this machine: rounds through `submit --follow --executor local`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adaptive_e2e import E2E_SPEC, check_adaptive_table

from orchestrator.sweep.spec import load_spec


def test_adaptive_sweep_end_to_end_locally(write_spec: Callable[..., Path]) -> None:
    from orchestrator.cli.main import main

    path = write_spec(E2E_SPEC)
    assert main(["submit", str(path), "--follow", "--executor", "local", "--interval", "1"]) == 0
    check_adaptive_table(load_spec(path))
    assert main(["submit", str(path), "--executor", "local"]) == 0  # finished rounds: nothing more runs
