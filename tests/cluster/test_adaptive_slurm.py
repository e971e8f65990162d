"""Adaptive seeds on the real dev cluster: `submit --follow` runs round after round of job arrays."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from adaptive_e2e import E2E_SPEC, check_adaptive_table

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.launch import slurmcli
from orchestrator.results import adaptive
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROFILE = str(Path(__file__).resolve().parents[2] / "slurm" / "profiles" / "dev.yaml")


def test_adaptive_sweep_end_to_end_on_slurm(write_spec: Callable[..., Path]) -> None:
    if not slurmcli.available():
        pytest.fail("SLURM client commands not found: run `make cluster-up`")
    path = write_spec(E2E_SPEC)
    code = main(["submit", str(path), "--executor", "slurm", "--profile", PROFILE, "--follow", "--interval", "1"])
    assert code == 0
    spec = load_spec(path)
    check_adaptive_table(spec)
    manifest = store.read_manifest(spec.output_path)
    # One array per round: each round was submitted after the previous one had run and been decided.
    assert len(manifest["arrays"]) == len(adaptive.read_state(spec.output_path))
    assert set(manifest["runs"]) <= {run.run_id for run in plan(spec)}
