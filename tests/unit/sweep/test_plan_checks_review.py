"""Review of what `plan` and `profile` show before submission: budget deltas against the right
baseline row, and the cost estimate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tables_fixture import write_csv

from orchestrator import store
from orchestrator.checks import complexity
from orchestrator.cli.main import main
from orchestrator.results import cost
from orchestrator.sweep.plan import RunSpec, plan, smoke_plan, smoke_seeds
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir
from trainers.config import TrainConfig
from trainers.datasets.known import LabelShape

SWAP_SPEC = """
name: swap
output_dir: {out}
defaults:
  data: {{image_size_px: 32, batch_size: 32, num_workers: 0}}
  optim: {{name: adam, lr: 1e-3}}
  epochs: 1
grid:
  backbone: [test_resnet]
  dataset: [digits]
  seed: [0, 1]
modifiers:
  big: {{model.backbone: resnet50}}
  px: {{data.image_size_px: 64}}
ablations:
  Baseline: []
  + Big: [big]
  + Px: [px]
budget: {{max_gflops_increase_pct: 5}}
"""

FAKE_GFLOPS = {"test_resnet": 1.0, "resnet50": 10.0}


def _fake_counter(cfg: TrainConfig, shape: LabelShape | None) -> dict[str, float]:
    """GFLOPs by backbone, x4 at 64 px: no torch, numbers easy to check."""
    scale = (cfg.data.image_size_px / 32) ** 2
    return {"gflops": FAKE_GFLOPS[cfg.model.backbone] * scale, "params_m": FAKE_GFLOPS[cfg.model.backbone]}


def test_row_that_swaps_the_backbone_is_compared_with_its_grid_cells_baseline(
    write_spec: Callable[..., Path],
) -> None:
    """A modifier `model.backbone: resnet50` makes a row whose resolved backbone has no baseline row of
    its own: it was left with no delta, so its budget verdict was "ok" at +900% GFLOPs."""
    spec = load_spec(write_spec(SWAP_SPEC))
    runs = plan(spec)
    frame = complexity.to_frame(runs, complexity.profile_runs(runs, _fake_counter), spec)
    rows = frame.set_index("ablation")
    assert rows.loc["+ Big", "backbone"] == "resnet50"
    assert rows.loc["+ Big", "gflops_delta_pct"] == pytest.approx(900.0), "10.0 vs test_resnet's 1.0"
    assert rows.loc["+ Big", "params_delta_pct"] == pytest.approx(900.0)
    assert rows.loc["+ Big", "over_budget"]
    assert rows.loc["+ Px", "gflops_delta_pct"] == pytest.approx(300.0), "the same model at 64 px"
    base = frame[frame["ablation"] == "Baseline"]
    assert (base["gflops_delta_pct"] == 0).all() and not base["over_budget"].any()


def test_plan_refuses_nothing_silently_when_a_row_swaps_the_backbone(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end with real tiny timm models on the meta device: the swapped row is reported over budget."""
    body = SWAP_SPEC.replace("  + Px: [px]\n", "")
    assert main(["plan", str(write_spec(body)), "--skip-data-check"]) == 0
    out = capsys.readouterr().out
    assert "over budget" in out and "resnet50/digits/+ Big" in out
    assert "budget ok" not in out


def _smoke_measured(spec: SweepSpec, runs: list[RunSpec], images_per_s: float = 100.0) -> None:
    """Smoke-run folders with a measured speed on one CPU process and a 1000-image train split."""
    for smoke in smoke_plan(runs):
        path = store.run_path(store.sweep_root(spec, smoke=True), smoke.run_id)
        write_csv(path / rundir.HISTORY, [{"epoch": 1, "train_images_per_s": images_per_s}])
        rundir.write_json(path / rundir.METRICS, {"provenance": {"device": "cpu", "num_processes": 1}})
        rundir.write_json(path / rundir.SPLIT, {"info": {"uncapped_sizes": {"train": 1000}}})


def test_adaptive_seeds_are_priced_from_the_first_rounds_smoke_runs(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`submit --smoke` runs only the first round's seeds of an adaptive sweep (plan.smoke_seeds): the
    later seeds had no smoke folder of their own, so every cell, the total and the adaptive minimum and
    maximum were "unknown" after the smoke round that exists to measure them."""
    path = write_spec()
    path.write_text(path.read_text().replace("  seed: [0, 1]\n", ""))
    adaptive = ["seeds={initial: 2, max: 4, step: 1, stop: {excludes_zero: true}}", "defaults.epochs=3"]
    spec = load_spec(path, adaptive)
    runs = plan(spec)
    _smoke_measured(spec, smoke_seeds(spec, runs))
    costs = cost.estimate(spec, runs)
    assert len(costs) == 3 and all(c.source == cost.MEASURED for c in costs)
    per_run_h = 3 * 1000 / 100.0 / 3600
    assert [c.hours for c in costs] == [pytest.approx(4 * per_run_h)] * 3, "4 seeds (max) per cell"
    assert main(["plan", str(path), *adaptive, "--skip-data-check"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    low, high = cost.hours_text(3 * 2 * per_run_h), cost.hours_text(3 * 4 * per_run_h)
    assert f"CPU-hours: minimum {low}, maximum {high}" in out


def test_a_seed_whose_smoke_run_is_missing_is_priced_by_its_cells_other_seed(write_spec: Callable[..., Path]) -> None:
    """Seeds of one cell differ by the seed alone: one failed smoke run left its whole cell "unknown"."""
    spec = load_spec(write_spec(), ["defaults.epochs=3"])
    runs = plan(spec)
    _smoke_measured(spec, [run for run in runs if run.seed == 0])
    first, *_ = cost.estimate(spec, runs)
    assert first.source == cost.MEASURED and first.hours == pytest.approx(2 * 3 * 1000 / 100.0 / 3600)


def test_a_gpu_hours_budget_alone_is_no_complexity_verdict(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`budget: {max_gpu_hours: N}` limits no GFLOPs or params: `plan` printed "budget ok: every row
    within " (no limit named), and refused a sweep whose dataset files are only on the compute nodes
    (`--skip-data-check`) because its models "cannot be profiled, so the budget cannot be checked"."""
    gpu_hours = "budget={max_gpu_hours: 10}"
    assert main(["plan", str(write_spec()), gpu_hours, "--skip-data-check"]) == 0
    out = capsys.readouterr().out
    assert "budget ok" not in out and "over budget" not in out
    remote = "grid.dataset=[{name: imagefolder, root: /nonexistent/on-the-nodes}]"
    code = main(["plan", str(write_spec()), gpu_hours, remote, "--skip-data-check"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "cannot be profiled" not in captured.err
    gflops = "budget={max_gflops_increase_pct: 5}"
    assert main(["plan", str(write_spec()), gflops, remote, "--skip-data-check"]) == 2, "a GFLOPs budget fails closed"
    assert "cannot be profiled, so the budget cannot be checked" in capsys.readouterr().err
