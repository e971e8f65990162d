"""How sure a delta is: paired-by-seed differences, 95% intervals, tests, Holm, detectable deltas.

scipy computes every number; this module only picks the method by the number of seeds:

- paired by seed when both cells hold the same seeds (a seed's baseline and ablation run share
  data order and initialisation), Welch's unpaired comparison otherwise;
- a 95% t-interval below BOOTSTRAP_MIN_SEEDS seeds, `scipy.stats.bootstrap` (BCa) from there;
- an exact sign-flip permutation test up to EXACT_MAX_SEEDS paired seeds, `ttest_rel` above
  (Welch's t-test unpaired); Holm's step-down correction across the comparisons of one table;
- the smallest delta a paired t-test detects at 80% power with the seeds run, and the seeds a
  given delta needs (noncentral t).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.8
BOOTSTRAP_MIN_SEEDS = 20
"""From this many values per cell the interval is a bootstrap (BCa) instead of a t-interval."""
BOOTSTRAP_RESAMPLES = 2000
EXACT_MAX_SEEDS = 12
"""Up to this many paired seeds the p-value is an exact sign-flip test (2^n sign patterns)."""
MIN_SIGN_FLIP_SEEDS = math.ceil(math.log2(2 / ALPHA))
"""Seeds an exact two-sided sign-flip test needs before any p-value can fall below ALPHA (6)."""
MAX_SEEDS_SEARCHED = 100_000
BATCH_VALUES = 4_000_000
"""Values per batch of bootstrap (or jackknife) resamples: scipy resamples all at once otherwise, and
BCa's jackknife of n values is an n x n array (16,667 seeds per cell: 2.2 GB of indices, and 7 GB
for `collect` at 100,000 runs). The interval is the same, bit for bit: one sample's resamples are
drawn in the same order whatever the batch; two samples' are drawn in turn per batch, so their
batch holds every resample (only the jackknife, which draws nothing, is cut smaller)."""


@dataclass(frozen=True)
class Comparison:
    """A cell against its baseline cell: the delta of means, its 95% interval and a p-value."""

    delta: float
    n: int
    """Pairs (paired) or the smaller group's size (unpaired)."""
    paired: bool
    low: float | None = None
    high: float | None = None
    p: float | None = None
    spread: float | None = None
    """Standard deviation of the paired differences (None unpaired or with one pair)."""

    @property
    def has_interval(self) -> bool:
        """Whether there were enough seeds for an interval (2 per side)."""
        return self.low is not None and self.high is not None

    @property
    def within_noise(self) -> bool:
        """The 95% interval contains 0."""
        return self.has_interval and self.low <= 0.0 <= self.high  # type: ignore[operator]


def compare(values: dict[str, float], baseline: dict[str, float]) -> Comparison | None:
    """`values` against `baseline` (seed -> value); None when either side is empty."""
    if not values or not baseline:
        return None
    if set(values) == set(baseline):
        seeds = sorted(values)
        return paired([values[s] for s in seeds], [baseline[s] for s in seeds])
    return unpaired(list(values.values()), list(baseline.values()))


def paired(values: Sequence[float], baseline: Sequence[float]) -> Comparison:
    """Paired comparison of equal-length samples (same seeds, same order)."""
    import numpy as np
    from scipy import stats

    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    diff = a - b
    n = len(diff)
    delta = float(diff.mean())
    if n < 2:
        return Comparison(delta, n, True)
    spread = float(diff.std(ddof=1))
    if spread <= 1e-12 * max(1.0, abs(delta)):  # equal up to float rounding (e.g. 0.9 + 0.1 vs 1.0)
        spread = 0.0
    if spread == 0.0:
        # Every seed moved by the same amount: of the 2^n sign patterns only all-plus and all-minus
        # reach |delta|, so the exact sign-flip p is 2 / 2^n (1 when nothing moved).
        return Comparison(delta, n, True, delta, delta, 1.0 if delta == 0 else min(1.0, 2.0 * 0.5**n), 0.0)
    if n < BOOTSTRAP_MIN_SEEDS:
        low, high = stats.ttest_rel(a, b).confidence_interval(CONFIDENCE)
    else:
        low, high = _bootstrap((diff,), _mean)
    p = sign_flip_p(diff) if n <= EXACT_MAX_SEEDS else float(stats.ttest_rel(a, b).pvalue)
    return Comparison(delta, n, True, float(low), float(high), p, spread)


def unpaired(values: Sequence[float], baseline: Sequence[float]) -> Comparison:
    """Welch comparison of two independent samples (different seeds)."""
    import numpy as np
    from scipy import stats

    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    delta = float(a.mean() - b.mean())
    n = min(len(a), len(b))
    if n < 2 or (a.std() == 0 and b.std() == 0):
        return Comparison(delta, n, False)
    result = stats.ttest_ind(a, b, equal_var=False)
    if n < BOOTSTRAP_MIN_SEEDS:
        low, high = result.confidence_interval(CONFIDENCE)
    else:
        low, high = _bootstrap((a, b), _mean_difference)
    return Comparison(delta, n, False, float(low), float(high), float(result.pvalue))


def sign_flip_p(diff: Any) -> float:
    """Two-sided p-value of the exact sign-flip permutation test of mean(diff) == 0."""
    import numpy as np
    from scipy import stats

    result = stats.permutation_test(
        (np.asarray(diff, dtype=float),),
        _mean,
        permutation_type="samples",
        n_resamples=math.inf,
        alternative="two-sided",
        vectorized=True,
    )
    return float(result.pvalue)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (None stays None); adjusted p-values are monotone and <= 1."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    m = len(present)
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        out[index] = running
    return out


def power(n: int, effect: float) -> float:
    """Power of a two-sided paired t-test at ALPHA with n pairs and effect = delta / sd of differences."""
    from scipy import stats

    df = n - 1
    critical = stats.t.ppf(1 - ALPHA / 2, df)
    shift = effect * math.sqrt(n)
    exact = float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))
    if math.isfinite(exact):
        return exact
    # scipy's noncentral t gives NaN for large shifts, where the normal approximation is exact enough.
    return float(stats.norm.sf(critical - shift) + stats.norm.cdf(-critical - shift))


def detectable_delta(n: int, spread: float) -> float | None:
    """Smallest |delta| a paired t-test detects with POWER at n pairs and this sd of differences."""
    from scipy import optimize

    if n < 2 or not spread > 0:
        return None
    effect = optimize.brentq(lambda e: power(n, e) - POWER, 1e-9, 1e3, xtol=1e-12)
    return float(effect * spread)


def seeds_needed(delta: float, spread: float) -> int | None:
    """Fewest seeds for which a paired t-test detects `delta` with POWER (at least the sign-flip
    test's minimum); None when even MAX_SEEDS_SEARCHED would not do."""
    if not spread > 0:
        return MIN_SIGN_FLIP_SEEDS
    effect = abs(delta) / spread
    if effect == 0 or power(MAX_SEEDS_SEARCHED, effect) < POWER:
        return None
    low, high = 2, MAX_SEEDS_SEARCHED
    while low < high:  # power grows with n: bisect for the first n that reaches it
        mid = (low + high) // 2
        if power(mid, effect) >= POWER:
            high = mid
        else:
            low = mid + 1
    return max(low, MIN_SIGN_FLIP_SEEDS)


def pooled_spread(spreads: Sequence[tuple[float, int]]) -> float | None:
    """Pooled standard deviation of (sd, n) pairs, weighted by their degrees of freedom."""
    usable = [(sd, n) for sd, n in spreads if n >= 2 and math.isfinite(sd)]
    df = sum(n - 1 for _, n in usable)
    if not df:
        return None
    return math.sqrt(sum((n - 1) * sd * sd for sd, n in usable) / df)


def _mean(x: Any, axis: int = -1) -> Any:
    import numpy as np

    return np.mean(x, axis=axis)


def _mean_difference(a: Any, b: Any, axis: int = -1) -> Any:
    import numpy as np

    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _bootstrap(data: tuple[Any, ...], statistic: Any) -> tuple[float, float]:
    """95% BCa bootstrap interval with a fixed seed (the same table on every collect); the percentile
    interval where BCa is undefined (nearly constant data)."""
    import numpy as np
    from scipy import stats

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BCa warns on degenerate data; the percentile interval follows
            result = stats.bootstrap(
                data,
                statistic,
                confidence_level=CONFIDENCE,
                n_resamples=BOOTSTRAP_RESAMPLES,
                method=method,
                rng=np.random.default_rng(0),
                vectorized=True,
                batch=_batch(data),
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            break
    return low, high


def _batch(data: tuple[Any, ...]) -> int:
    """Resamples per batch (BATCH_VALUES): any for one sample, all of them for two (see there)."""
    per_batch = max(1, BATCH_VALUES // max(len(sample) for sample in data))
    return per_batch if len(data) == 1 else max(per_batch, BOOTSTRAP_RESAMPLES)
