"""Cost before submit: device-hours per cell from a smoke run's measured throughput, else unknown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import COST_RUNS

from orchestrator import launch, store
from orchestrator.cli.main import main
from orchestrator.results import cost, run_files
from orchestrator.sweep.plan import plan, smoke_plan
from orchestrator.sweep.spec import load_spec


def test_run_hours_scale_with_epochs_images_and_processes(write_spec: Callable[..., Path]) -> None:
    [run, *_] = plan(load_spec(write_spec(), COST_RUNS))
    measured = run_files.Throughput(images_per_s=100.0, device="NVIDIA H100", processes=2, train_images=1000)
    assert cost.run_hours(run, measured) == pytest.approx(3 * 1000 / 100.0 * 2 / 3600.0)
    capped = load_spec(write_spec(), [*COST_RUNS, "grid.dataset=[{name: digits, max_samples: 50}]"])
    assert cost.run_hours(plan(capped)[0], measured) == pytest.approx(3 * 50 / 100.0 * 2 / 3600.0)
    unknown_size = run_files.Throughput(100.0, "cpu", 1, None)
    assert cost.run_hours(run, unknown_size) is None


def test_without_smoke_runs_the_estimate_is_unknown(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(), COST_RUNS)
    costs = cost.estimate(spec, plan(spec))
    assert len(costs) == 3 and all(c.hours is None for c in costs)
    assert cost.summary(costs).startswith("estimated compute: unknown")


@pytest.mark.slow
def test_smoke_runs_give_each_cell_an_estimate(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spec = load_spec(write_spec(), COST_RUNS)
    runs = plan(spec)
    assert len(launch.submit(spec, runs[:4], "local", smoke=True).completed) == 4  # two of three cells
    costs = cost.estimate(spec, runs)
    assert [c.hours is not None for c in costs] == [True, True, False]
    smoke_root = store.sweep_root(spec, smoke=True)
    measured = [run_files.throughput(store.run_path(smoke_root, smoke.run_id)) for smoke in smoke_plan(runs)[:2]]
    for each in measured:
        assert each is not None and each.device.lower() == "cpu"
        assert each.train_images is not None and each.train_images > 1000, "the uncapped digits train split"
    # Two seeds, each priced by its own smoke run's speed (one seed's speed for both was 1.5x off on
    # a loaded machine: smoke runs of 0.4 and 0.7 s).
    expected = sum(cost.run_hours(run, each) or 0 for run, each in zip(runs[:2], measured, strict=True))
    first = costs[0]
    assert first.unit == "CPU-hours" and first.hours is not None
    assert first.hours == pytest.approx(expected, rel=1e-9)
    assert main(["plan", str(spec.source), *COST_RUNS]) == 0
    out = capsys.readouterr().out
    assert "CPU-hours over 2 measured cells; 1 of 3 cells unknown" in out


def test_max_gpu_hours_fails_closed_without_measurements(write_spec: Callable[..., Path]) -> None:
    path = write_spec()
    code = main(["submit", str(path), *COST_RUNS, "budget={max_gpu_hours: 10}", "--dry-run", "--skip-data-check"])
    assert code == 2, "no smoke measurement: the budget cannot be checked, so submit refuses"


@pytest.mark.slow
def test_max_gpu_hours_compares_the_measured_estimate(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec()
    one_cell = [*COST_RUNS, "ablations={Baseline: []}"]
    assert main(["submit", str(path), *one_cell, "--smoke"]) == 0
    capsys.readouterr()
    tight = ["submit", str(path), *one_cell, "budget={max_gpu_hours: 1e-9}", "--dry-run"]
    assert main(tight) == 2
    assert "over max_gpu_hours" in capsys.readouterr().err
    assert main([*tight, "--over-budget"]) == 0
    roomy = ["submit", str(path), *one_cell, "budget={max_gpu_hours: 1000}", "--dry-run"]
    assert main(roomy) == 0
