"""Boundaries of the adaptive-seeds rule (orchestrator/results/sequential.py explains the method): the
spending plan, the exact z-boundaries of its looks by recursive integration, and the last look's level
calibrated for t on simulated null sequences. numpy + scipy, imported when a boundary is first asked for."""

from __future__ import annotations

import functools
import math
from typing import Any

ALPHA = 0.05
"""Family-wise error rate over every look and every comparison of a family."""
FINAL_SHARE = 0.8
"""Share of a comparison's alpha planned for the last look (max seeds); the rest is split evenly over the
interim looks. With exact boundaries the last look's test stays close to the fixed grid's whatever the share;
less at the end stops large deltas sooner: bench/adaptive_seeds.py prints the trade-off."""
GRID_POINTS = 201
"""Grid of the recursive integration; 201 points put the boundaries within 1e-4 of a 3,001-point grid's."""
NULL_PATHS = 200_000
"""Simulated null sequences that calibrate the last look; the family's alpha is then met within about 1% of
itself (binomial error of 0.05 over 200,000 paths: 0.0005)."""
_Z_CAP = 40.0
"""A boundary no look reaches (nothing of alpha spent there)."""


def spend(n_looks: int, alpha: float = ALPHA, final_share: float = FINAL_SHARE) -> tuple[float, ...]:
    """Alpha planned for each look: `final_share` at the last, the rest evenly over the interim ones (sum = alpha)."""
    if n_looks == 1:
        return (alpha,)
    interim = alpha * (1.0 - final_share) / (n_looks - 1)
    return (*([interim] * (n_looks - 1)), alpha * final_share)


def _grid(bound: float, seeds: int) -> tuple[Any, Any]:
    """Points of the continuation region (-bound, bound) in sums of `seeds` unit-variance differences, and
    their trapezoid weights; mass beyond 8 sd is left out (under 1e-15)."""
    import numpy as np

    half = min(bound, 8.0) * math.sqrt(seeds)
    points = np.linspace(-half, half, GRID_POINTS)
    weights = np.full(GRID_POINTS, points[1] - points[0])
    weights[[0, -1]] /= 2.0
    return points, weights


def _crossing(points: Any, mass: Any, step_sd: float, scale: float, share: float) -> float:
    """The z-boundary at which paths still inside (`mass` at `points`) first cross with probability `share`."""
    from scipy import optimize, stats

    def crossed(z: float) -> float:
        return float(
            mass @ (stats.norm.cdf((-z * scale - points) / step_sd) + stats.norm.sf((z * scale - points) / step_sd))
        )

    if crossed(_Z_CAP) >= share:
        return _Z_CAP
    if crossed(0.1) <= share:
        return 0.1
    return float(optimize.brentq(lambda z: crossed(z) - share, 0.1, _Z_CAP, xtol=1e-10))


@functools.lru_cache(maxsize=4096)
def z_boundaries(seeds: tuple[int, ...], shares: tuple[float, ...]) -> tuple[float, ...]:
    """Two-sided z-boundaries of the looks at `seeds` whose first-crossing probabilities under the null are
    `shares`, by recursive integration of the looks' joint normal law (sums of independent differences)."""
    from scipy import stats

    bounds = [float(stats.norm.isf(shares[0] / 2.0)) if shares[0] > 0 else _Z_CAP]
    points, weights = _grid(bounds[0], seeds[0])
    mass = weights * stats.norm.pdf(points / math.sqrt(seeds[0])) / math.sqrt(seeds[0])
    for k in range(1, len(seeds)):
        step_sd, scale = math.sqrt(seeds[k] - seeds[k - 1]), math.sqrt(seeds[k])
        bounds.append(_crossing(points, mass, step_sd, scale, shares[k]))
        new, weights = _grid(bounds[-1], seeds[k])
        mass = weights * (mass @ (stats.norm.pdf((new[None, :] - points[:, None]) / step_sd) / step_sd))
        points = new
    return tuple(bounds)


@functools.lru_cache(maxsize=16)
def null_t(seeds: tuple[int, ...]) -> Any:
    """|t| at each look of simulated null sequences of paired differences (paths x looks, float32; fixed seed).

    Under the null the t-statistics' joint law is free of the differences' mean and spread, so one
    simulation per look plan serves every comparison and level.
    """
    import numpy as np

    paths = min(NULL_PATHS, 10_000_000 // len(seeds))
    rng = np.random.default_rng(0)
    total, squares, out = np.zeros(paths), np.zeros(paths), np.empty((paths, len(seeds)), dtype=np.float32)
    done = 0
    for k, n in enumerate(seeds):
        for start in range(0, paths, 20_000):  # bounded memory whatever the step
            x = rng.standard_normal((min(20_000, paths - start), n - done))
            total[start : start + len(x)] += x.sum(axis=1)
            squares[start : start + len(x)] += (x * x).sum(axis=1)
        done = n
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, k] = np.abs(total / n) / np.sqrt((squares - total * total / n) / (n - 1) / n)
    return out


@functools.lru_cache(maxsize=1024)
def nominal_levels(seeds: tuple[int, ...], level: float, final_share: float = FINAL_SHARE) -> tuple[float, ...]:
    """Two-sided nominal alpha of each look for one comparison tested at `level`.

    Interim looks: the exact z-boundaries of the spending plan. Last look: calibrated so that the
    t-tests' chance of ever crossing under the null is `level` (the z-boundaries' credit for paths
    that cross at an interim look and again at the last is smaller for t-statistics, whose spreads
    differ from look to look: uncalibrated, a single comparison's type-I error was 5.3% at 0.05),
    and never above the z-recursion's.
    """
    import numpy as np
    from scipy import stats

    z = z_boundaries(seeds, spend(len(seeds), level, final_share))
    nominal = [float(2.0 * stats.norm.sf(c)) for c in z]
    if len(seeds) == 1:
        return tuple(nominal)
    t_abs = null_t(seeds)
    bounds = stats.t.isf(np.array(nominal[:-1]) / 2.0, np.array(seeds[:-1]) - 1)
    alive = ~(t_abs[:, :-1] >= bounds).any(axis=1)
    room = level - (1.0 - float(alive.mean()))  # what the last look may add
    last = np.sort(t_abs[alive, -1])[::-1]
    index = int(room * len(t_abs))
    final = 0.0 if room <= 0 else float(2.0 * stats.t.sf(last[index], seeds[-1] - 1)) if index < len(last) else 1.0
    return (*nominal[:-1], min(nominal[-1], final))
