"""The statistics of every table (issue 13), checked against scipy and hand enumeration on fixed numbers."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sp
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.results import reader, resample, stats, tables
from orchestrator.results.model import Cell
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

BASE = [90.1, 91.7, 89.4, 92.3, 90.8]
ABLATION = [91.0, 92.9, 89.1, 93.8, 91.9]


def test_paired_interval_and_p_match_scipy() -> None:
    got = stats.paired(ABLATION, BASE)
    diff = np.subtract(ABLATION, BASE)
    n = len(diff)
    half = sp.t.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n)
    assert got.paired and got.n == 5
    assert got.delta == pytest.approx(diff.mean(), abs=1e-9)
    assert got.low == pytest.approx(diff.mean() - half, abs=1e-9)
    assert got.high == pytest.approx(diff.mean() + half, abs=1e-9)
    # Exact sign-flip p: share of the 2^n sign patterns whose |mean| reaches the observed one.
    flips = [abs(np.mean(diff * signs)) for signs in itertools.product([1, -1], repeat=n)]
    assert got.p == pytest.approx(np.mean(np.array(flips) >= abs(diff.mean()) - 1e-12), abs=1e-9)


def test_many_seeds_use_ttest_rel_and_the_bootstrap() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(90, 1, 30)
    abl = base + rng.normal(0.4, 0.8, 30)
    got = stats.paired(abl, base)
    assert got.p == pytest.approx(sp.ttest_rel(abl, base).pvalue, abs=1e-9)
    boot = sp.bootstrap(
        (abl - base,), np.mean, n_resamples=stats.BOOTSTRAP_RESAMPLES, method="BCa", rng=np.random.default_rng(0)
    )
    assert got.low == pytest.approx(boot.confidence_interval.low, abs=1e-9)
    assert got.high == pytest.approx(boot.confidence_interval.high, abs=1e-9)


def test_cells_sharing_fewer_than_two_seeds_compare_unpaired_with_welch() -> None:
    got = stats.compare({"0": 91.0, "1": 92.9, "2": 89.1}, {"0": 90.1, "5": 91.7, "3": 89.4, "4": 92.3})
    assert got is not None and not got.paired
    welch = sp.ttest_ind([91.0, 92.9, 89.1], [90.1, 91.7, 89.4, 92.3], equal_var=False)
    low, high = welch.confidence_interval(0.95)
    assert (got.low, got.high, got.p) == pytest.approx((low, high, welch.pvalue), abs=1e-9)


def test_cells_sharing_some_seeds_are_paired_on_those() -> None:
    # The baseline ran seeds 0-3; the row's seed 2 failed. Every shared seed moved by +1: Welch on the
    # two cells' means gave -0.83 [-7.45, +5.78] (seed-to-seed variation); paired, +1.00.
    baseline = {"0": 90.0, "1": 80.0, "2": 99.0, "3": 85.0}
    row = {"0": 91.0, "1": 81.1, "3": 85.9}
    got = stats.compare(row, baseline)
    assert got is not None and got.paired and got.n == 3 and got.left_out == 1
    assert got.delta == pytest.approx(1.0, abs=1e-9) and got.low is not None and got.low > 0
    paired = sp.ttest_rel([91.0, 81.1, 85.9], [90.0, 80.0, 85.0])
    low, high = paired.confidence_interval(0.95)
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-9)
    # No spread in the differences: no interval (not one of zero width), the exact test's p.
    assert stats.compare(baseline, baseline) == stats.Comparison(0.0, 4, True, None, None, 1.0, 0.0, 0)


def test_the_same_comparison_is_bootstrapped_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A best mark against the baseline repeats the delta's comparison: with a memo it is computed
    once, by content (new dicts of the same seeds and values); other values, another order (an
    unpaired bootstrap resamples by position) or no memo are computed again."""
    calls: list[int] = []
    real = resample.bootstrap_interval

    def counted(*args: object, **kwargs: object) -> tuple[float, float]:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(resample, "bootstrap_interval", counted)
    rng = np.random.default_rng(11)
    base = {str(s): float(v) for s, v in enumerate(rng.normal(90, 1, 25))}
    cell = {s: v + float(rng.normal(0.3, 0.5)) for s, v in base.items()}
    memo: stats.Memo = {}
    first = stats.compare(dict(cell), dict(base), memo)
    assert stats.compare(dict(cell), dict(base), memo) is first and len(calls) == 1
    assert stats.compare(cell, base) == first and len(calls) == 2
    shifted = stats.compare({s: v + 0.25 for s, v in cell.items()}, base, memo)
    assert shifted is not None and first is not None and shifted.delta == pytest.approx(first.delta + 0.25)
    assert len(calls) == 3
    more = {**cell, "extra": 91.0}
    stats.compare(dict(reversed(list(more.items()))), base, memo)
    stats.compare(more, base, memo)
    assert len(calls) == 5 and len(memo) == 4


def test_holm_on_fixed_numbers() -> None:
    # m = 4 sorted 0.01, 0.02, 0.03, 0.04 -> 0.04, 0.06, 0.06 (monotone), 0.06; None stays None.
    assert stats.holm([0.03, 0.01, None, 0.04, 0.02]) == pytest.approx([0.06, 0.04, None, 0.06, 0.06], abs=1e-12)
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]


def test_power_and_seeds_needed() -> None:
    # G*Power's textbook case: a paired t-test of d = 0.5 at 80% power, two-sided 0.05, needs 34 pairs.
    assert stats.seeds_needed(0.5, 1.0) == 34
    assert stats.power(33, 0.5) < stats.POWER <= stats.power(34, 0.5)
    detectable = stats.detectable_delta(34, 1.0)
    assert detectable is not None and detectable <= 0.5 and stats.power(34, detectable) == pytest.approx(0.8, abs=1e-9)
    assert stats.seeds_needed(5.0, 1.0) == stats.MIN_SIGN_FLIP_SEEDS == 6, "the sign-flip test's floor"
    assert stats.power(200_000, 0.5) == 1.0, "no NaN from the noncentral t far out"


SPEC = """
name: noise
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [resnet10t], dataset: [digits], seed: [0, 1, 2]}}
modifiers: {{aug: {{data.augment: {{rotate_deg: 10}}}}}}
ablations: {{Baseline: [], + Aug: [aug]}}
tables: [{{complexity: false, detect_delta: 0.5}}]
"""


def _aug_cell(write_spec: Callable[..., Path], differences: dict[int, float]) -> Cell:
    """The `+ Aug` cell of SPEC's table, its seeds `differences` points above the baseline's."""
    spec = load_spec(write_spec(SPEC))
    runs = plan(spec)
    for run in runs:
        base = 0.90 + 0.01 * run.seed
        fake_run(spec, run, base + (differences[run.seed] / 100 if run.ablation == "+ Aug" else 0.0))
    [table] = tables.ablation_tables(spec, reader.collect_frame(store.sweep_root(spec), runs), runs)
    return table.rows[1].cells[0]


def test_the_noise_mark_follows_the_table_s_test_not_the_interval(write_spec: Callable[..., Path]) -> None:
    # Three seeds that all moved by about +1 point: the t-interval excludes 0, but no exact sign-flip
    # test at 3 pairs can go below p = 0.25. The table's decision is the test's: marked, not clean.
    aug = _aug_cell(write_spec, {0: 1.0, 1: 1.1, 2: 0.9})
    assert aug.low is not None and aug.low > 0 and aug.p == pytest.approx(0.25)
    assert aug.within_noise and aug.text.startswith("92.00 ± 0.95 (+1.00 [+0.75, +1.25])°")
    # Every seed moved by exactly the same amount: a zero-width interval, and p = 2 / 2^3.
    same = _aug_cell(write_spec, {0: 1.0, 1: 1.0, 2: 1.0})
    assert same.low == same.high and same.p == pytest.approx(0.25) and same.within_noise


def test_a_delta_the_adjusted_test_rejects_is_not_marked() -> None:
    cell = Cell(mean=1.0, std=0.1, n=8, n_expected=8, delta=0.5, low=-0.01, high=1.0, p=0.01, p_adjusted=0.03)
    assert not cell.within_noise and cell.noise_mark == ""
    assert Cell(
        mean=1.0, std=0.1, n=8, n_expected=8, delta=0.5, low=0.1, high=1.0, p=0.04, p_adjusted=0.08
    ).within_noise
    assert not Cell(mean=1.0, std=None, n=1, n_expected=1, delta=0.5).within_noise  # one seed: says "no interval"
    assert Cell(mean=1.0, std=0.0, n=3, n_expected=3, delta=0.5).within_noise  # 3 seeds, no test: marked
    # Adaptive seeds: the sequential rule's decision, not a fixed-seed test at the seeds it stopped at.
    resolved = Cell(mean=93.0, std=1.1, n=3, n_expected=3, delta=3.0, low=2.75, high=3.25, p=0.25, p_adjusted=0.25)
    assert resolved.within_noise  # a fixed grid's 3 seeds: p = 0.25
    stopped = replace(resolved, stop="resolved at 3 seeds (interval excludes 0)")
    assert not stopped.within_noise
    assert replace(resolved, stop="stopped at max (12 seeds)").within_noise
    assert not Cell(mean=1.0, std=None, n=1, n_expected=1, delta=-10.0, relative=True).within_noise  # complexity


def test_half_a_point_with_std_one_over_three_seeds_is_within_noise(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec(SPEC))
    runs = plan(spec)
    differences = {0: -0.5, 1: 0.5, 2: 1.5}  # mean +0.5, std 1.0 over 3 seeds
    for run in runs:
        base = 0.90 + 0.01 * run.seed
        fake_run(spec, run, base + (differences[run.seed] / 100 if run.ablation == "+ Aug" else 0.0))
    [table] = tables.ablation_tables(spec, reader.collect_frame(store.sweep_root(spec), runs), runs)
    aug = table.rows[1].cells[0]
    assert aug.delta == pytest.approx(0.5, abs=1e-9) and aug.within_noise and not aug.best
    assert aug.text.startswith("91.50 ± 2.00 (+0.50 [-1.98, +2.98])°")
    markdown = tables.render([table], "md", {"sweep": "noise"})
    assert "° not significant: Holm-adjusted p >= 0.05, or too few seeds for a test" in markdown
    assert "n per cell: 3 seeds." in markdown
    assert "the smallest delta detectable at 80% power (paired t-test, p < 0.05) is 3.26" in markdown
    assert "Detecting a delta of 0.5 needs 34 seeds." in markdown
    csv = tables.render([table], "csv")
    assert ",0.5," in csv and "p_adjusted" in csv.splitlines()[0]


finite = st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=8), finite)
def test_paired_comparison_properties(pairs: list[tuple[float, float]], shift: float) -> None:
    values, baseline = [a for a, _ in pairs], [b for _, b in pairs]
    got = stats.paired(values, baseline)
    assert got.p is not None
    assert (got.low is None) == (got.spread == 0.0), "an interval exactly where the differences spread"
    if got.low is not None and got.high is not None:
        assert got.low - 1e-9 <= got.delta <= got.high + 1e-9, "the interval holds the delta"
    assert 0.0 <= got.p <= 1.0
    moved = stats.paired([v + shift for v in values], [b + shift for b in baseline])
    assert moved.delta == pytest.approx(got.delta, abs=1e-6), "a shift of both cells leaves the delta"
    swapped = stats.paired(baseline, values)
    assert swapped.p == pytest.approx(got.p, abs=1e-9), "the test is symmetric"


@given(st.lists(st.one_of(st.none(), st.floats(min_value=0, max_value=1)), max_size=12))
def test_holm_properties(p_values: list[float | None]) -> None:
    adjusted = stats.holm(p_values)
    assert [a is None for a in adjusted] == [p is None for p in p_values]
    pairs = sorted((p, a) for p, a in zip(p_values, adjusted, strict=True) if p is not None and a is not None)
    for p, a in pairs:
        assert p - 1e-12 <= a <= 1.0, "never below the raw p, never above 1"
    assert [a for _, a in pairs] == sorted(a for _, a in pairs), "monotone in the raw p"


@pytest.mark.parametrize("values_per_batch", [1, 997, 30 * 2000])
def test_batched_bootstrap_gives_the_unbatched_interval(monkeypatch: pytest.MonkeyPatch, values_per_batch: int) -> None:
    """Memory is bounded by batches (BCa's jackknife of n seeds is an n x n array at once); the
    interval is the same, bit for bit, paired and unpaired."""
    rng = np.random.default_rng(5)
    base, abl = rng.normal(90, 1, 30), rng.normal(90.3, 1.2, 30)
    monkeypatch.setattr(resample, "BATCH_VALUES", 10**12)  # one batch: what scipy does without `batch`
    whole = (stats.paired(abl, base), stats.unpaired(abl[:25], base))
    monkeypatch.setattr(resample, "BATCH_VALUES", values_per_batch)
    assert (stats.paired(abl, base), stats.unpaired(abl[:25], base)) == whole
    assert whole[0].low is not None and whole[1].low is not None


def _mean_of(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


@pytest.mark.parametrize("sizes", [(20,), (57,), (400,), (20, 25), (40, 33)])
@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_resample_bootstrap_is_scipys(sizes: tuple[int, ...], method: str) -> None:
    """results.resample draws what scipy.stats.bootstrap draws and gives its interval (closed-form
    jackknife for BCa, batched draws for one sample)."""
    rng = np.random.default_rng(sum(sizes))
    data = tuple(rng.normal(0.9, 0.02, size) for size in sizes)
    statistic = _mean_of if len(sizes) == 1 else _mean_difference
    expected = sp.bootstrap(
        data, statistic, n_resamples=2000, method=method, rng=np.random.default_rng(0), vectorized=True
    ).confidence_interval
    got = resample.bootstrap_interval(data, 0.95, 2000, method)
    assert got == pytest.approx((expected.low, expected.high), abs=1e-12)


@pytest.mark.parametrize("n", range(2, 13))
def test_resample_sign_flip_and_t_tests_are_scipys(n: int) -> None:
    rng = np.random.default_rng(n)
    a, b = rng.normal(0.9, 0.02, n), rng.normal(0.9, 0.02, n + 3)
    diff = np.round(a - b[:n], 3)  # rounded: ties in the null distribution
    expected = sp.permutation_test((diff,), _mean_of, permutation_type="samples", n_resamples=math.inf, vectorized=True)
    assert resample.sign_flip_p(diff) == pytest.approx(expected.pvalue, abs=1e-12)
    paired, welch = sp.ttest_rel(a, b[:n]), sp.ttest_ind(a, b, equal_var=False)
    for got, want in ((resample.paired_t(a - b[:n], 0.95), paired), (resample.welch_t(a, b, 0.95), welch)):
        interval = want.confidence_interval(0.95)
        assert (got.p, got.low, got.high) == pytest.approx((want.pvalue, interval.low, interval.high), abs=1e-12)


@pytest.mark.parametrize(("n", "effect"), [(2, 0.3), (6, 1.0), (34, 0.5), (500, 0.1), (200_000, 0.5)])
def test_power_is_scipys_noncentral_t(n: int, effect: float) -> None:
    critical = sp.t.ppf(0.975, n - 1)
    shift = effect * math.sqrt(n)
    expected = sp.nct.sf(critical, n - 1, shift) + sp.nct.cdf(-critical, n - 1, shift)
    if not math.isfinite(expected):
        expected = sp.norm.sf(critical - shift) + sp.norm.cdf(-critical - shift)
    assert stats.power(n, effect) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("n", "effect"), [(2, 5.0), (2, 8.0), (2, 12.0), (3, 12.0 / math.sqrt(3)), (4, 7.0)])
def test_power_where_scipys_noncentral_t_is_nan(n: int, effect: float) -> None:
    # At 2-4 pairs and these shifts scipy's noncentral t CDF is NaN in its lower tail; the old
    # fallback (the normal approximation) gave power 0.08 at 2 pairs and effect 8, not 0.63, and
    # a detectable delta 17% too small. Checked against the power as an integral over the spread:
    # a paired t-test rejects when |Z + shift| > c * sqrt(V / df), V chi-squared with df.
    from scipy import integrate

    df, shift = n - 1, effect * math.sqrt(n)
    critical = sp.t.ppf(0.975, df)

    def rejects(v: float) -> float:
        bound = critical * math.sqrt(v / df)
        return (sp.norm.sf(bound - shift) + sp.norm.cdf(-bound - shift)) * sp.chi2.pdf(v, df)

    expected = integrate.quad(rejects, 0, math.inf, limit=200)[0]
    assert stats.power(n, effect) == pytest.approx(expected, abs=1e-7)


def test_the_detectable_delta_at_two_seeds() -> None:
    assert stats.detectable_delta(2, 1.0) == pytest.approx(11.55, abs=0.01)
