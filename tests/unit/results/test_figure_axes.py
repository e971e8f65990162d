"""Figure axes respect the metric's range: top-1 within 0..100 %, deltas symmetric about 0."""

from __future__ import annotations

from orchestrator.results import figures


def test_two_seed_interval_keeps_the_top1_axis_within_0_and_100() -> None:
    rows = [("Baseline", [40.0, 90.0]), ("+ Aug", [55.0, 60.0]), ("+ Drop", [95.0])]
    figure = figures.ablation_figure(rows, "top-1 (%)")
    low, high = figure.axes[0].get_ylim()
    assert 0.0 <= low < 40.0 and 95.0 < high <= 100.0  # unclipped, the t-interval (1 dof) spans -250..380


def test_a_metric_outside_percent_is_left_to_autoscale() -> None:
    figure = figures.ablation_figure([("Baseline", [2.0, 3.0]), ("+ Aug", [2.5, 2.6])], "loss")
    low, high = figure.axes[0].get_ylim()
    assert low < 0.0 and high > 5.0  # no range known: the whole interval shows


def test_delta_axis_is_symmetric_and_bounded_by_the_data() -> None:
    looks = [(2, 3.0, -40.0, 46.0), (4, 2.0, -1.0, 5.0), (1, 1.0, float("-inf"), float("inf"))]
    figure = figures.rounds_figure([("+ Aug vs Baseline", looks)], "Δ top-1 (%)")
    low, high = figure.axes[0].get_ylim()
    assert low == -high and 46.0 <= high <= 1.05 * 46.0 + 1e-9
