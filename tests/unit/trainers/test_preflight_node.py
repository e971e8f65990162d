"""On-node preflight (trainers/runtime/preflight_node.py) and how the job records its failure (CPU, no cluster)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import trainers
from orchestrator.launch import failures, job
from orchestrator.launch.failures import Evidence, Failure, SacctRow, classify
from trainers import rundir
from trainers.config import TrainConfig
from trainers.runtime import faults, preflight_node

CPU_RUN = TrainConfig()  # digits, resnet18, no GPU


def test_exit_codes_agree() -> None:
    assert failures.EXIT_PREFLIGHT == preflight_node.EXIT_CODE == job.PREFLIGHT_EXIT


@pytest.mark.slow
def test_a_healthy_cpu_node_passes(tmp_path: Path) -> None:
    """Every check, imports included (about 3 s on a quiet machine: the imports the trainer pays anyway)."""
    assert preflight_node.check(CPU_RUN, tmp_path / "run") is None


def test_each_check_names_what_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight_node, "IMPORTS", ("json",))
    gpu_run = CPU_RUN.model_copy(update={"distributed": CPU_RUN.distributed.model_copy(update={"gpus_per_node": 2})})
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert "2 GPU(s) requested, CUDA sees none" in str(preflight_node.local_reason(gpu_run, tmp_path))
    # a cluster whose GPU gres are fake (the dev cluster's profile: retry.preflight_gpus false)
    assert preflight_node.check(gpu_run, tmp_path, check_gpus=False) is None
    data = CPU_RUN.data.model_copy(
        update={"dataset": CPU_RUN.data.dataset.model_copy(update={"name": "imagefolder", "root": "/nonexistent/x"})}
    )
    unfit = preflight_node.check(CPU_RUN.model_copy(update={"data": data}), tmp_path)
    reason = "dataset imagefolder: /nonexistent/x unreadable (No such file or directory)"
    assert unfit == preflight_node.Unfit(socket.gethostname(), reason)
    monkeypatch.setattr(preflight_node, "_checkpoint_gb", lambda cfg: 1e9)  # more than any disk here
    reason = str(preflight_node.local_reason(CPU_RUN, tmp_path))
    assert reason.startswith("output: ") and "the run's checkpoints need 1000000000.0 GB" in reason


@pytest.mark.slow
def test_checkpoint_estimate_from_the_backbone() -> None:
    """timm's import is most of its 2 s."""
    # resnet18: 11.7 M parameters x (weights + 2 moments) x fp32 x (last + best)
    assert preflight_node._checkpoint_gb(CPU_RUN) == pytest.approx(11.69e6 * 24 / 1e9, rel=0.01)


def test_injected_fault_only_for_the_named_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(faults.ENV, "preflight_fail@some-other-node")
    assert preflight_node.check(CPU_RUN, tmp_path) is None
    monkeypatch.setenv(faults.ENV, f"oom@3,preflight_fail@{socket.gethostname()}")
    assert (
        preflight_node.local_reason(CPU_RUN, tmp_path) == f"injected fault: preflight fails on {socket.gethostname()}"
    )
    assert faults.step_fault("oom", 3, tmp_path) and not faults.step_fault("oom", 3, tmp_path)  # once per run
    assert not faults.step_fault("hang", 3, tmp_path)
    monkeypatch.setenv(faults.ENV, f"user_error@{tmp_path.name}:0,oom@other:1")
    with pytest.raises(ValueError, match="injected user error"):
        faults.before_micro_batch(tmp_path, 0)
    faults.before_micro_batch(tmp_path, 1)  # another run's fault


def test_job_records_preflight_failure_against_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.ENV, f"preflight_fail@{socket.gethostname()}")
    run_dir = tmp_path / "runs" / "abc"
    metadata = {"run_id": "abc", "name": "n", "ablation": "a", "backbone": "b", "dataset": "d", "seed": 0, "axes": {}}
    train = job.TrainJob(run_dir, CPU_RUN.model_dump(mode="json"), metadata, attempt={"resources": {"mem_gb": 4}})
    with pytest.raises(SystemExit) as exited:
        train()
    assert exited.value.code == failures.EXIT_PREFLIGHT
    status = rundir.read_json(run_dir / rundir.STATUS)
    assert status is not None and "error" not in status
    reason = f"injected fault: preflight fails on {socket.gethostname()}"
    assert status["failure"] == job.PREFLIGHT_FAIL == Failure.PREFLIGHT_FAIL.value
    assert status["attempts"] == [
        {
            "job_id": None,
            "host": socket.gethostname(),
            "at": status["attempts"][0]["at"],
            "resources": {"mem_gb": 4},
            "failure": "preflight_fail",
            "node": socket.gethostname(),
            "reason": reason,
        }
    ]
    evidence = Evidence(state=status["state"], failure=status["failure"], reason=status["failure_reason"])
    verdict = classify(SacctRow.parse("346|FAILED|77:0|node2"), evidence)
    assert verdict is not None and verdict.failure is Failure.PREFLIGHT_FAIL and "injected fault" in verdict.reason


def test_a_multi_node_preflight_blames_the_unfit_rank_s_node() -> None:
    """SLURM's accounting names rank 0's node first; the node the job recorded as unfit is the one blamed."""
    row = SacctRow.parse("347|FAILED|77:0|node[1-2]")
    evidence = Evidence(state="failed", failure="preflight_fail", reason="rank 1 on node2: scratch full", node="node2")
    verdict = classify(row, evidence)
    assert verdict is not None and (verdict.failure, verdict.node) == (Failure.PREFLIGHT_FAIL, "node2")
    unblamed = classify(row, Evidence(state="failed", failure="preflight_fail", reason="x"))
    assert unblamed is not None and unblamed.node == "node1"


_RANK = """
import os, sys
os.environ.update(RANK=sys.argv[1], WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2])
from trainers.runtime import preflight_node
print(repr(preflight_node.exchange(sys.argv[3] or None, f"host{sys.argv[1]}")))
"""


def _two_ranks(reasons: tuple[str, str]) -> list[str]:
    """Two CPU processes exchanging their verdicts over gloo (each imports torch: a few seconds)."""
    port = str(29600 + os.getpid() % 1000)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", _RANK, str(r), port, reasons[r]], stdout=subprocess.PIPE, text=True, env=env
        )
        for r in (0, 1)
    ]
    outputs = [rank.communicate(timeout=240)[0].strip() for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], outputs
    return outputs


@pytest.mark.slow
def test_every_rank_learns_the_unfit_rank_s_verdict() -> None:
    """Fit ranks pass; an unfit rank still sends its verdict, so every rank fails at once with its host
    and reason (before, rank 0 waited out the all-reduce's timeout and blamed its own node)."""
    assert _two_ranks(("", "")) == ["None", "None"]
    unfit = preflight_node.Unfit("host1", "scratch ($TMPDIR): 0.2 GB free", 1)
    assert _two_ranks(("", "scratch ($TMPDIR): 0.2 GB free")) == [repr(unfit), repr(unfit)]
    assert unfit.line == "rank 1 on host1: scratch ($TMPDIR): 0.2 GB free"


def test_a_rank_without_torch_still_fails_as_the_node_s_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    """The imports check's reason stands when torch.distributed cannot be imported for the exchange
    (it was an exception, which the job recorded as the run's error)."""
    monkeypatch.setitem(sys.modules, "torch.distributed", None)  # `import` raises ImportError
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(key, value)
    unfit = preflight_node.exchange("import torch: OSError: libcudart.so.12", "node2")
    assert unfit == preflight_node.Unfit("node2", "import torch: OSError: libcudart.so.12", 1)


def test_no_spec_reaches_fault_injection() -> None:
    from orchestrator.sweep.site import SlurmConfig

    with pytest.raises(ValueError, match="test-only"):
        SlurmConfig(setup=[f"export {faults.ENV}=preflight_fail@node2"])


def test_a_node_that_cannot_resume_the_run_s_precision_is_unfit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """precision: auto, first trained in fp16 on a GPU, requeued onto a node without one: a node fault
    (preflight_fail: retried elsewhere, this node left out), not the run's error (a user error, never
    retried), which the trainer's own refusal would be recorded as."""
    from trainers.loop import checkpoint

    monkeypatch.setattr(preflight_node, "IMPORTS", ("json",))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    reason = preflight_node.local_reason(CPU_RUN, tmp_path, resume_precision="fp16")
    assert reason == "the run trained in fp16 (precision: auto) and this node cannot resume in it"
    assert preflight_node.local_reason(CPU_RUN, tmp_path, resume_precision="bf16") is None  # the CPU runs bf16
    # The job's entry point reads the precision from the run's last checkpoint, for `auto` only.
    monkeypatch.setattr(checkpoint, "recorded_precision", lambda ckpt_dir: "fp16")
    auto = CPU_RUN.model_copy(update={"precision": "auto"})
    assert trainers._resume_precision(auto, tmp_path) == "fp16"
    assert trainers._resume_precision(auto.model_copy(update={"precision": "no"}), tmp_path) is None
