"""The run folder's typed contract (trainers/contract.py): old folders read as version 1, the
writers write what the readers type, a file that does not validate is a named problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.results import run_files
from orchestrator.store import run_states
from trainers import contract, rundir
from trainers.contract import State

LEGACY_RUNS = Path(__file__).resolve().parents[2] / "fixtures" / "legacy_883557d" / "runs"


def test_contract_is_torch_free() -> None:
    code = "import sys, trainers.contract, trainers.rundir\nprint(sorted({'torch', 'timm'} & set(sys.modules)))"
    repo = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("folder", sorted(p.name for p in LEGACY_RUNS.iterdir()))
def test_legacy_run_folders_read_as_version_1(folder: str) -> None:
    """Folders written at 883557d, before the contract: no schema_version, every value typed."""
    path = LEGACY_RUNS / folder
    status, problem = run_states.read_status(path)
    assert problem is None and status.schema_version == contract.LEGACY_VERSION
    if status.known_state is not State.COMPLETED:
        return
    assert status.host and status.started_at is not None and status.finished_at is not None
    values, problems = run_states.read_metrics(path, None)
    assert problems == [] and 0.0 <= values[contract.TEST_TOP1] <= 1.0
    metrics = run_states.metrics_of(path)
    assert metrics.schema_version == contract.LEGACY_VERSION
    assert metrics.test is not None and metrics.test.top1 == values[contract.TEST_TOP1]
    assert metrics.timing is not None and metrics.timing.wall_s is not None
    assert metrics.provenance is not None and metrics.provenance.num_processes == 1
    assert run_files.throughput(path) is not None


def test_status_writes_the_schema_version_and_keeps_room_for_attempts(tmp_path: Path) -> None:
    rundir.update_status(tmp_path, State.RUNNING, host="node1", pid=7, attempts=[{"host": "node1", "failure": None}])
    rundir.update_status(tmp_path, State.FAILED, error="RuntimeError: boom", traceback="...")
    data = rundir.read_json(tmp_path / rundir.STATUS)
    assert data is not None and data["schema_version"] == contract.SCHEMA_VERSION
    status, problem = contract.parse_status(data)
    assert problem is None and status.known_state is State.FAILED and status.error == "RuntimeError: boom"
    assert [a.host for a in status.attempts] == ["node1"] and [h.state for h in status.history] == ["running", "failed"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"state": "done"}, "status.json: unknown state 'done'"),
        ({"state": "running", "pid": 10**30}, "status.json: pid 10000000000000000000000000000"),
        ({"state": "completed", "schema_version": 99}, "status.json: schema_version 99 is not one"),
    ],
)
def test_a_status_that_does_not_validate_is_a_named_problem(data: dict[str, object], expected: str) -> None:
    status, problem = contract.parse_status(data)
    assert problem is not None and problem.startswith(expected)
    assert status.pid is None or isinstance(status.pid, int)


def test_odd_status_values_read_as_absent() -> None:
    """Values of the wrong type that nothing decides on (a hand edit) read as absent, not a crash."""
    status, problem = contract.parse_status(
        {"state": "failed", "host": 5, "error": 3, "started_at": "noon", "history": "x", "attempts": [1, {"host": "n"}]}
    )
    assert problem is None and status.host is None and status.error == "3" and status.started_at is None
    assert status.history == [] and [a.host for a in status.attempts] == ["n"]


def test_metrics_of_another_version_or_run_are_named(tmp_path: Path) -> None:
    rundir.write_json(tmp_path / rundir.METRICS, {"schema_version": 3, "test": {"top1": 0.5}})
    assert run_states.read_metrics(tmp_path, None) == (
        {},
        [f"metrics.json: schema_version 3 is not one this version reads (at most {contract.SCHEMA_VERSION})"],
    )
    rundir.write_json(tmp_path / rundir.METRICS, {"run_id": "other", "test": {"top1": 0.5}})
    assert run_states.read_metrics(tmp_path, None)[1] == ['metrics.json: written by run "other", not by this run']


def test_the_trainer_writes_what_the_reader_types() -> None:
    legacy = json.loads((LEGACY_RUNS / "864c4344ade9" / rundir.METRICS).read_text())
    written = contract.metrics_to_write(legacy)
    assert written["schema_version"] == contract.SCHEMA_VERSION and list(written)[1:] == list(legacy)
    with pytest.raises(ValueError, match="timing"):
        contract.metrics_to_write({**legacy, "timing": {"wall_s": "slow"}})
    values, problems = contract.metric_values(written, (None,))
    assert problems == [] and values[contract.WALL_S] == legacy["timing"]["wall_s"]


def test_history_rows_through_the_contract() -> None:
    assert contract.history_speed({"epoch": "2", "train_images_per_s": "120.5", "val_loss": ""}) == 120.5
    assert contract.history_speed({"epoch": "x", "train_images_per_s": "120.5"}) is None
    assert contract.history_speed({"epoch": "1", "train_images_per_s": "nan"}) is None


def test_a_node_fault_goes_on_the_status_and_its_latest_attempt(tmp_path: Path) -> None:
    """rundir.record_node_fault, for the preflight and the hang watchdog alike: status and the last
    attempt carry the failure, node and reason; a status without attempts gets no empty list."""
    rundir.update_status(tmp_path, State.RUNNING, attempts=[{"job_id": "4_0"}, {"job_id": "5_0", "host": "node1"}])
    status = rundir.record_node_fault(tmp_path, "preflight_fail", "node2", "rank 1 on node2: x")
    assert (status.state, status.failure, status.failure_reason) == ("failed", "preflight_fail", "rank 1 on node2: x")
    first, last = status.attempts
    assert first.failure is None and (last.failure, last.node, last.reason) == (
        "preflight_fail",
        "node2",
        "rank 1 on node2: x",
    )
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / rundir.STATUS).write_text("[not an object]")
    written = rundir.record_node_fault(bare, "hang", None, "no progress")
    assert written.failure == "hang" and "attempts" not in json.loads((bare / rundir.STATUS).read_text())
