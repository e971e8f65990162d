"""Table numbers a researcher could publish by mistake (statistics review): each test fails on the
code before its fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.results import aggregate, legend, reader, stats, tables
from orchestrator.results.aggregate import CellData
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SweepSpec, TableSpec, load_spec
from trainers.rundir import State

SPEC = """
name: review
output_dir: {out}
defaults: {{data: {{image_size_px: 16, batch_size: 8}}, epochs: 1}}
grid:
  backbone: [test_resnet]
  dataset: [digits]
  seed: [0, 1, 2]
modifiers:
  aug: {{data.augment: {{hflip_p: 0.25}}}}
ablations:
  Baseline: []
  + Aug: [aug]
"""


def _table(spec: SweepSpec) -> tables.Table:
    runs = plan(spec)
    frame = reader.collect_frame(store.sweep_root(spec), runs)
    [table] = tables.ablation_tables(spec, frame, runs)
    return table


def test_a_row_with_the_baseline_s_model_shows_no_complexity_delta(write_spec: Callable[..., Path]) -> None:
    """The mean GFLOPs of 3 runs and of 2 runs of one model differ in the last bit (pandas sums
    pairwise): that read `45.34 (+0.00%)` for a row whose model is the baseline's, as if it changed."""
    gflops = 45.34048
    assert pd.Series([gflops] * 3).mean() != pd.Series([gflops] * 2).mean()  # the premise
    spec = load_spec(write_spec(SPEC))
    for run in plan(spec):
        failed = run.ablation == "+ Aug" and run.seed == 2
        fake_run(spec, run, 0.9, gflops=gflops, params_m=2.0, state=State.FAILED if failed else State.COMPLETED)
    table = _table(spec)
    aug = next(row for row in table.rows if row.label == "+ Aug")
    gflops_cell, params_cell = aug.cells[-2:]
    assert gflops_cell.delta_text is None and "%" not in gflops_cell.text, gflops_cell.text
    assert params_cell.delta_text is None


def test_a_real_complexity_change_keeps_its_delta() -> None:
    """Only float noise of one model's mean counts as the same model: one parameter in 200 M still
    shows as a change in the CSV's raw numbers."""
    assert aggregate.difference(196_727_001.0, 196_727_000.0, True) == pytest.approx(100 / 196_727_000.0)
    assert aggregate.difference(45.34047999999999, 45.34048, True) == 0.0
    assert aggregate.difference(1.0, 1.1, False) == pytest.approx(-0.1)


Key = tuple[str, ...]


def _cells(rows: dict[str, dict[str, float]]) -> tuple[dict[Key, CellData], list[Key], list[Key], list[str]]:
    """One column of cells, a row per ablation (seed -> value), as score_cells and mark_best take them."""
    data = {(label,): CellData(values, len(values), 0) for label, values in rows.items()}
    row_keys = [(label,) for label in rows]
    return data, row_keys, [()], ["ablation"]


@pytest.mark.parametrize("best", ["max", "min"])
def test_bold_only_where_the_best_is_better_than_the_runner_up_on_their_shared_seeds(best: str) -> None:
    """The best mean (all seeds) can be significantly worse than the runner-up on the seeds both ran:
    a cell whose 4 extra seeds lift its mean, 1 point below the runner-up on each of the 6 shared seeds
    (p = 2/64). It was bold, as 'significantly above the runner-up'."""
    sign = 1.0 if best == "max" else -1.0
    runner = {str(s): 80.0 + sign * 0.1 * s for s in range(6)}
    behind = {s: v - sign * (1.0 + 0.05 * int(s)) for s, v in runner.items()}
    ahead = behind | {str(s): 80.0 + sign * 15.0 for s in range(6, 10)}
    data, row_keys, col_keys, row_dims = _cells({"Baseline": runner, "+ Aug": ahead})
    table = TableSpec(best=best)
    cells, _ = aggregate.score_cells(data, row_keys, col_keys, row_dims, [], table, "Baseline")
    aug_mean, base_mean = cells[(("+ Aug",), ())].mean, cells[(("Baseline",), ())].mean
    assert aug_mean is not None and base_mean is not None and sign * (aug_mean - base_mean) > 0  # ranked first
    comparison = stats.compare(ahead, runner)
    assert comparison is not None and comparison.p is not None and comparison.p < stats.ALPHA
    assert not comparison.within_noise and sign * comparison.delta < 0  # significantly worse, paired
    aggregate.mark_best(cells, data, row_keys, col_keys, 0, table)
    assert not any(cell.best for cell in cells.values())


@pytest.mark.parametrize("best", ["max", "min"])
def test_bold_where_the_best_is_significantly_better(best: str) -> None:
    sign = 1.0 if best == "max" else -1.0
    runner = {str(s): 80.0 + 0.3 * s for s in range(6)}
    ahead = {s: v + sign * (1.0 + 0.01 * int(s)) for s, v in runner.items()}
    data, row_keys, col_keys, row_dims = _cells({"Baseline": runner, "+ Aug": ahead})
    table = TableSpec(best=best)
    cells, _ = aggregate.score_cells(data, row_keys, col_keys, row_dims, [], table, "Baseline")
    aggregate.mark_best(cells, data, row_keys, col_keys, 0, table)
    assert [key for key, cell in cells.items() if cell.best] == [(("+ Aug",), ())]


def _mean_of(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


@pytest.mark.parametrize("n", [2, 3, 6, 8])
def test_differences_without_spread_have_no_interval_and_the_exact_p(n: int) -> None:
    """Two seeds that each lost one of 360 test images (-0.28 points) read `(-0.28 [-0.28, -0.28])`:
    an interval of zero width, as if the delta were exact. The exact sign-flip p stands (scipy's)."""
    step = 100 / 360
    baseline = {str(s): 90.0 + step * s for s in range(n)}
    row = {seed: value - step for seed, value in baseline.items()}
    got = stats.compare(row, baseline)
    assert got is not None and got.paired and got.n == n
    assert got.delta == pytest.approx(-step) and got.spread == 0.0
    assert got.low is None and got.high is None and not got.has_interval
    diff = np.subtract(list(row.values()), list(baseline.values()))
    expected = sp.permutation_test((diff,), _mean_of, permutation_type="samples", n_resamples=np.inf, vectorized=True)
    assert got.p == pytest.approx(expected.pvalue, abs=1e-12)


def test_a_table_shows_no_zero_width_interval_and_says_why(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(SPEC))
    for run in plan(spec):
        top1 = (300 + run.seed - (run.ablation == "+ Aug")) / 360  # one test image fewer, every seed
        fake_run(spec, run, top1)
    table = _table(spec)
    aug = next(row for row in table.rows if row.label == "+ Aug").cells[0]
    assert aug.delta_text == "-0.28" and aug.low is None and aug.interval_text is None
    assert aug.text == "83.33 ± 0.28 (-0.28)°", aug.text
    assert any("1 delta(s) without an interval: every seed differs" in note for note in table.notes)


def test_the_no_interval_note_counts_only_flat_comparisons() -> None:
    flat = stats.Comparison(-0.28, 3, True, None, None, 0.25, 0.0)
    spread = stats.paired([1.0, 2.0, 4.0], [0.0, 0.5, 1.0])
    one_seed = stats.Comparison(0.3, 1, True)
    notes = legend.noise_notes([3, 3, 3, 1], [flat, spread, one_seed], TableSpec(), [(1.0, 3)])
    assert sum("1 delta(s) without an interval" in note for note in notes) == 1
    assert not any("without an interval" in n for n in legend.noise_notes([3, 3], [spread], TableSpec(), []))


def test_an_exact_shift_on_six_seeds_is_still_bold() -> None:
    """No interval without spread, but every seed moving +1 the same way is the exact test's 2/64."""
    runner = {str(s): 80.0 + 0.5 * s for s in range(6)}
    ahead = {s: v + 1.0 for s, v in runner.items()}
    data, row_keys, col_keys, row_dims = _cells({"Baseline": runner, "+ Aug": ahead})
    table = TableSpec()
    cells, _ = aggregate.score_cells(data, row_keys, col_keys, row_dims, [], table, "Baseline")
    aggregate.mark_best(cells, data, row_keys, col_keys, 0, table)
    aug = cells[(("+ Aug",), ())]
    assert aug.best and aug.low is None and aug.p == pytest.approx(2 / 64)


def test_cells_with_repeated_seeds_compare_unpaired_even_when_both_repeat() -> None:
    # A pooled dimension repeats seeds within a cell: its values are no pairs. Keys `0#0`, `0#1` in
    # both cells paired them by position (the docstring promised unpaired), which pairs arbitrary runs.
    part = pd.DataFrame(
        {
            "row": ["base"] * 4 + ["aug"] * 4,
            "seed": [0, 0, 1, 1] * 2,
            "value": [0.70, 0.90, 0.71, 0.91, 0.72, 0.92, 0.73, 0.93],
            "broken": [False] * 8,
        }
    )
    cells = aggregate.cell_data(part, ["row"])
    comparison = stats.compare(cells[("aug",)].values, cells[("base",)].values)
    assert comparison is not None and not comparison.paired
    assert comparison.n == 4 and comparison.delta == pytest.approx(0.02)


def test_a_table_of_two_metrics_sizes_the_detectable_delta_per_metric(write_spec: Callable[..., Path]) -> None:
    # One spread pooled over top-1 points and loss values sized a "detectable delta" in no unit.
    spec = load_spec(write_spec(SPEC + "tables: [{{metric: [top1, loss]}}]\n"))
    for run in plan(spec):
        aug = run.ablation == "+ Aug"
        top1 = 0.80 + 0.01 * aug + 0.004 * run.seed * (1 + aug)  # differences of 0.4 points per seed
        fake_run(spec, run, top1, extra_test={"loss": 2.0 + 0.0001 * run.seed * (1 + aug)})
    table = _table(spec)
    power = [note for note in table.notes if "smallest delta detectable" in note]
    assert len(power) == 2, table.notes
    assert [note.split(": With")[0] for note in power] == table.columns[:2] == ["top-1 (%)", "loss"]
    top1_sd, loss_sd = (float(note.split("differences ")[1].split(")")[0]) for note in power)
    assert top1_sd == pytest.approx(0.4, abs=0.01) and loss_sd < 0.01
