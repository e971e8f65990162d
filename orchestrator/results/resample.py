"""The few scipy.stats computations the tables use, written on numpy and scipy.special.

`import scipy.stats` costs 0.8-1.4 s of CPU (it builds every distribution and its docstrings):
a quarter of a second `collect` of 10,000 runs. The tables need a handful of its results: the
t-test's p-value and interval (paired and Welch's), the exact sign-flip permutation test and the
BCa/percentile bootstrap of a mean (or a difference of means). Each is computed here as
scipy.stats computes it (SciPy 1.17: the same formulas, the same random draws in the same
order), and tests/unit/results/test_stats.py checks every one against scipy.stats to 1e-9. The
bootstrap's jackknife of a mean is its closed form, O(n) rather than scipy's n x n array.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any

BATCH_VALUES = 4_000_000
"""Values resampled at once (one sample): 16,667 seeds x 2,000 resamples would be 0.5 GB at once."""


@dataclass(frozen=True)
class TTest:
    """A t statistic's p-value and its 95% interval of the mean (difference)."""

    p: float
    low: float
    high: float


def t_test(estimate: float, standard_error: float, df: float, confidence: float) -> TTest:
    """Two-sided t-test of `estimate` == 0 and its `confidence` interval (scipy's ttest_*)."""
    from scipy import special

    t = estimate / standard_error
    p = min(1.0, max(0.0, float(2 * special.stdtr(df, -abs(t)))))
    tail = (1 - confidence) / 2
    low, high = special.stdtrit(df, tail), special.stdtrit(df, 1 - tail)
    return TTest(p, float(low * standard_error + estimate), float(high * standard_error + estimate))


def paired_t(diff: Any, confidence: float) -> TTest:
    """scipy.stats.ttest_rel(a, b) from the differences a - b."""
    import numpy as np

    n = len(diff)
    return t_test(float(np.mean(diff)), float(np.std(diff, ddof=1)) / math.sqrt(n), n - 1, confidence)


def welch_t(a: Any, b: Any, confidence: float) -> TTest:
    """scipy.stats.ttest_ind(a, b, equal_var=False)."""
    import numpy as np

    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return t_test(float(np.mean(a) - np.mean(b)), float(np.sqrt(va + vb)), float(df), confidence)


def sign_flip_p(diff: Any) -> float:
    """scipy.stats.permutation_test((diff,), mean, permutation_type="samples", n_resamples=inf):
    every sign pattern, the same tolerance for ties (100 machine epsilons of the observed mean)."""
    import numpy as np

    values = np.asarray(diff, dtype=float)
    null = np.mean(_signs(len(values)) * values, axis=-1)
    observed = float(np.mean(values))
    gamma = abs(np.finfo(float).eps * 100 * observed)
    less = np.count_nonzero(null <= observed + gamma) / len(null)
    greater = np.count_nonzero(null >= observed - gamma) / len(null)
    return float(min(1.0, max(0.0, 2 * min(less, greater))))


@functools.lru_cache(maxsize=16)
def _signs(n: int) -> Any:
    """Every pattern of n signs, one per row (read-only): built once per n, as a table of 1,000
    cells at 10 seeds compared 1,000 times (0.3 ms each to build, a third of the table's time)."""
    import numpy as np

    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    signs.flags.writeable = False
    return signs


def bootstrap_interval(data: tuple[Any, ...], confidence: float, resamples: int, method: str) -> tuple[float, float]:
    """scipy.stats.bootstrap(data, mean or difference of means, method=BCa or percentile,
    rng=default_rng(0), vectorized): the same resamples drawn in the same order (all at once; a
    batch size changes nothing for one sample and is never used for two)."""
    import numpy as np

    samples = [np.asarray(sample, dtype=float) for sample in data]
    rng = np.random.default_rng(0)
    if len(samples) == 1:  # in batches of BATCH_VALUES (one sample: the same draws, in the same order)
        n = len(samples[0])
        rows = max(1, BATCH_VALUES // n)
        theta_b = np.concatenate(
            [
                samples[0][rng.integers(0, n, (min(rows, resamples - k), n))].mean(axis=-1)
                for k in range(0, resamples, rows)
            ]
        )
    else:
        a, b = (sample[rng.integers(0, len(sample), (resamples, len(sample)))].mean(axis=-1) for sample in samples)
        theta_b = a - b
    alpha = (1 - confidence) / 2
    if method == "BCa":
        low_q, high_q = _bca(samples, theta_b, alpha)
    else:
        low_q, high_q = alpha, 1 - alpha
    if not (math.isfinite(low_q) and math.isfinite(high_q)):
        return math.nan, math.nan
    low, high = np.quantile(theta_b, [low_q, high_q])
    return float(low), float(high)


def _bca(samples: list[Any], theta_b: Any, alpha: float) -> tuple[float, float]:
    """The BCa interval's quantiles (scipy's _bca_interval), the jackknife of a mean in closed form."""
    import numpy as np
    from scipy import special

    theta = samples[0].mean() if len(samples) == 1 else samples[0].mean() - samples[1].mean()
    below = np.count_nonzero(theta_b < theta) + np.count_nonzero(theta_b <= theta)
    z0 = special.ndtri(below / (2 * len(theta_b)))
    nums, dens = 0.0, 0.0
    for sign, sample in zip((1.0, -1.0)[: len(samples)], samples, strict=True):  # leave-one-out means
        n = len(sample)
        jack = (sample.sum() - sample) / (n - 1)
        u = sign * (n - 1) * (jack.mean() - jack)
        nums += float(np.sum(u**3)) / n**3
        dens += float(np.sum(u**2)) / n**2
    a_hat = nums / dens**1.5 / 6 if dens > 0 else math.nan
    z_alpha = float(special.ndtri(alpha))
    low = special.ndtr(z0 + (z0 + z_alpha) / (1 - a_hat * (z0 + z_alpha)))
    high = special.ndtr(z0 + (z0 - z_alpha) / (1 - a_hat * (z0 - z_alpha)))
    return float(low), float(high)
