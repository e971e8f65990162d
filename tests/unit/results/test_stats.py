"""The statistics of every table (issue 13), checked against scipy and hand enumeration on fixed numbers."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sp
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.results import reader, resample, stats, tables
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


def test_different_seeds_compare_unpaired_with_welch() -> None:
    got = stats.compare({"0": 91.0, "1": 92.9, "2": 89.1}, {"0": 90.1, "1": 91.7, "3": 89.4, "4": 92.3})
    assert got is not None and not got.paired
    welch = sp.ttest_ind([91.0, 92.9, 89.1], [90.1, 91.7, 89.4, 92.3], equal_var=False)
    low, high = welch.confidence_interval(0.95)
    assert (got.low, got.high, got.p) == pytest.approx((low, high, welch.pvalue), abs=1e-9)


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
    assert "° the interval contains 0: within noise" in markdown
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
    assert got.low is not None and got.high is not None and got.p is not None
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
