"""A multi-task job's torch.distributed variables (orchestrator/launch/job.py): the rendezvous port
drawn from the job id below the ephemeral ports, the same on every rank; the ranks from SLURM even
where the submitting shell exported others."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.launch import job

EPHEMERAL_LOW = 32_768
"""Linux's default ip_local_port_range starts here."""


@given(st.text(alphabet="0123456789_", min_size=1, max_size=20))
def test_the_port_and_the_preflight_port_above_it_stay_below_the_ephemeral_ones(job_id: str) -> None:
    port = job.rendezvous_port(job_id)
    assert job.RENDEZVOUS_PORTS[0] <= port < port + 1 < min(job.RENDEZVOUS_PORTS[1], EPHEMERAL_LOW)
    assert job.rendezvous_port(job_id) == port, "every rank and restart of a job draws the same"


def test_different_jobs_mostly_draw_different_ports() -> None:
    ports = {job.rendezvous_port(str(n)) for n in range(1000, 1200)}
    assert len(ports) > 190


def _slurm_task(monkeypatch: pytest.MonkeyPatch, folder: Path, rank: int) -> None:
    """The environment srun gives task `rank` of a 2-node, 2-task job 4242 launched by submitit."""
    for key in [k for k in os.environ if k.startswith(("SLURM_", "SUBMITIT_"))]:
        monkeypatch.delenv(key)
    for key in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.setenv(key, "")  # recorded, so what the job exports is undone after the test
        monkeypatch.delenv(key)
    monkeypatch.setenv("RANK", "7")  # exported by the shell that submitted: must not stop the job
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "2",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": str(rank),
        "SLURM_JOB_NODELIST": "node[1-2]",
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": "0",
        "SUBMITIT_EXECUTOR": "slurm",
        "SUBMITIT_FOLDER": str(folder),
    }
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("rank", [0, 1])
def test_each_task_exports_its_rank_and_the_job_s_port(
    rank: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _slurm_task(monkeypatch, tmp_path, rank)
    assert job._export_distributed_env() == rank
    assert os.environ["RANK"] == str(rank) and os.environ["WORLD_SIZE"] == "2"
    assert os.environ["MASTER_ADDR"] == "node1"
    assert os.environ["MASTER_PORT"] == str(job.rendezvous_port("4242"))


def test_a_port_the_submitting_shell_exported_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch passes the submitting shell's environment: a leftover MASTER_PORT would be every job's."""
    _slurm_task(monkeypatch, tmp_path, 1)
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert job._export_distributed_env() == 1
    assert os.environ["MASTER_PORT"] == str(job.rendezvous_port("4242"))


def test_the_job_s_variables_do_not_outlive_a_test(tmp_path: Path) -> None:
    """The tests above leave no rank variable behind (a later preflight would see a 2-rank job)."""
    before = {key: os.environ.get(key) for key in ("WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "RANK")}
    with pytest.MonkeyPatch.context() as patch:
        _slurm_task(patch, tmp_path, 1)
        job._export_distributed_env()
        assert os.environ["WORLD_SIZE"] == "2"
    assert {key: os.environ.get(key) for key in before} == before
