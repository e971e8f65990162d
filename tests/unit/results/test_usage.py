"""collect's requested vs used: SLURM requests from manifest.json against the runs' wall time and memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.launch.slurm import requested
from orchestrator.results import collect
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.site import SlurmConfig
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir

SPEC = """
name: usage
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [resnet10t], dataset: [digits], seed: [0, 1, 2]}}
modifiers: {{aug: {{data.augment: {{rotate_deg: 10}}}}}}
ablations: {{Baseline: [], + Aug: [aug]}}
tables: [{{complexity: false, formats: [md]}}]
"""
# Six runs: four in one SLURM array (60 min, 4 GB), one local, one with a broken memory record.
WALLS_S = [600.0, 900.0, 3400.0, 1200.0, 300.0, 500.0]
RSS_MIB = [1000.0, 1500.0, 2048.0, 1200.0, 800.0, 900.0]


def _memory(path: Path, **memory: Any) -> None:
    metrics = json.loads((path / rundir.METRICS).read_text())
    metrics["timing"].update(memory)
    rundir.write_json(path / rundir.METRICS, metrics)


def _record(root: Path, runs: list[RunSpec], array_id: str, config: SlurmConfig, tasks: list[int]) -> None:
    manifest = store.read_manifest(root)
    jobs = {run.run_id: f"{array_id}_{task}" for run, task in zip(runs, tasks, strict=True)}
    store.record_array(root, manifest, array_id, jobs, {"requested": requested(config)})


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    spec = load_spec(write_spec(SPEC))
    runs = plan(spec)
    root = spec.output_path
    store.write_snapshot(spec, root)
    for index, run in enumerate(runs):
        path = fake_run(spec, run, 0.9, wall_s=WALLS_S[index])
        rss = RSS_MIB[index] if index != 5 else "lots"
        _memory(path, peak_rss_mib=rss, peak_rss_sum_mib=rss, host_total_mib=24000.0, gpu_total_mib=None)
    _record(root, runs[:4], "100", SlurmConfig(timeout_min=60, mem_gb=4), [0, 1, 2, 3])
    return spec, runs


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as handle:
        return {row["run_id"]: row for row in csv.DictReader(handle)}


def test_requested_vs_used_per_run_and_summary(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    written = collect.write_tables(spec, spec.output_path)
    assert written.usage_path == spec.output_path / "tables" / "usage.csv"
    rows = _rows(written.usage_path)
    first, risky, local, broken = (rows[runs[i].run_id] for i in (0, 2, 4, 5))
    assert first["executor"] == "slurm" and float(first["time_limit_s"]) == 3600.0
    assert float(first["time_fraction"]) == pytest.approx(600 / 3600, abs=1e-4)
    assert float(first["mem_requested_mib"]) == 4096.0
    assert float(first["mem_fraction"]) == pytest.approx(1000 / 4096, abs=1e-4)
    assert float(risky["time_fraction"]) == pytest.approx(3400 / 3600, abs=1e-4)
    assert local["executor"] == "local" and local["time_limit_s"] == "" and float(local["peak_rss_mib"]) == 800.0
    assert 'timing.peak_rss_mib = "lots" is not a number' in broken["problem"]
    text = "\n".join(written.usage_lines)
    assert "slurm, 4 runs, time limit 60.0 min: wall median 17.5 min, max 56.7 min (94% of the limit)" in text
    assert f"at risk (> 90% of the limit): {runs[2].run_id}" in text
    assert "memory: requested 4.0 GiB per node, peak RSS median 1.3 GiB, max 2.0 GiB (50% of the request)" in text
    assert "local, 1 runs (no request): wall median 5.0 min, max 5.0 min" in text
    assert "memory: peak RSS median 800 MiB, max 800 MiB of 23.4 GiB on the host" in text
    assert f"not counted: {runs[5].run_id} {runs[5].name}: metrics.json: timing.peak_rss_mib" in text


def test_a_generous_limit_is_flagged_and_packed_runs_share_their_task(
    sweep: tuple[SweepSpec, list[RunSpec]],
) -> None:
    spec, runs = sweep
    root = spec.output_path
    (root / store.MANIFEST_FILE).unlink()
    # Runs 0 and 1 packed into one task (runs_per_task 2): their use is the task's span.
    _record(root, runs[:2], "200", SlurmConfig(timeout_min=600, runs_per_task=2), [0, 0])
    written = collect.write_tables(spec, root)
    rows = _rows(written.usage_path)
    spans = {float(rows[run.run_id]["used_s"]) for run in runs[:2]}
    assert spans == {900.0}, "fake runs all start at T0: the task ends with its longer run"
    assert rows[runs[0].run_id]["mem_requested_mib"] == "", "no --mem: the partition default, not a number"
    assert "the limit could be lowered: the longest run used 2% of it" in "\n".join(written.usage_lines)


def test_old_runs_and_a_broken_manifest_are_named_not_a_traceback(
    sweep: tuple[SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    spec, runs = sweep
    root = spec.output_path
    old = store.run_path(root, runs[1].run_id)
    metrics = json.loads((old / rundir.METRICS).read_text())
    metrics["timing"] = {"wall_s": 60.0}
    rundir.write_json(old / rundir.METRICS, metrics)
    (root / store.MANIFEST_FILE).write_text('{"runs": {')
    assert main(["collect", str(root), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert f"{runs[1].run_id} {runs[1].name}: metrics.json has no timing.peak_rss_mib" in out
    assert "manifest.json: truncated or invalid JSON" in out
    assert "usage:" in out
    assert all(row["executor"] == "unknown" for row in _rows(root / "tables" / "usage.csv").values())


def test_a_run_whose_metrics_json_is_unreadable_is_named_once_not_as_unrecorded(
    sweep: tuple[SweepSpec, list[RunSpec]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Garbage bytes as metrics.json: collect names the file; usage said "no timing.wall_s ... (trained
    before they were recorded?)" of it besides, which was wrong. It is left out of usage instead."""
    spec, runs = sweep
    root = spec.output_path
    broken = runs[1]
    (store.run_path(root, broken.run_id) / rundir.METRICS).write_bytes(bytes(range(256)))
    assert main(["collect", str(root), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "trained before they were recorded" not in out
    summary = out.split("requested vs used")[1].split("usage:")[0]
    assert broken.run_id not in summary, summary
    assert f"{broken.run_id} {broken.name}: metrics.json: not UTF-8 text (byte 128)" in out
    rows = _rows(root / "tables" / "usage.csv")
    assert broken.run_id not in rows and len(rows) == len(runs) - 1
    assert "requested vs used (5 completed runs):" in out
