"""Yardsticks and rules tried against the adaptive-seeds cost goal (bench/adaptive_seeds.py prints them).

- Yardsticks: rules that know more than any real rule (the noise's sd exactly; the row's true delta, or the
  scenario's own mix of deltas, or nothing about it: a flat prior), stop a row once its 12-seed table decision
  is (1 - miss) sure and report that decision; a row that runs to 12 seeds gets the table's own decision.
  They predict the table's test as a t-test at 12 seeds (the 12-seed sd drawn from its chi law, 16 quantiles)
  at Holm's level given the rows already stopped + or -. Cost at the miss level where same decisions reach
  95% is a lower bound for rules that know less, within this family of stopping rules.
- Curtailed: efficacy stops where the t-predictive probability (own spread, n - 1 degrees of freedom) that
  the last look excludes 0 on the same side is >= gamma; last look calibrated as the default's.
- Pooled: the rows of a table share one spread (pooled sums of squares of the paired differences, each row
  up to the seeds it ran) at the interim looks and in the futility prediction; the last look uses each row's
  own spread; boundaries calibrated on simulated homoscedastic null tables. Assumes every cell of a table has
  the same seed noise, which a real table need not have: the bench adds null tables where it does not.
- Pooled futility only: the same pooled spread in the futility prediction alone; efficacy (interim and last
  looks) on each row's own spread with the default's boundaries. A futility stop never declares a delta, so
  this keeps the default's guarantee whatever the cells' noise; what it can cost is agreement, which the
  bench also measures on effect tables whose cells differ in noise (`unequal_noise_effects`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sp

from orchestrator.results import boundaries
from orchestrator.results.sequential import Design

CHI_QUANTILES = np.sqrt(sp.chi2.ppf((np.arange(16) + 0.5) / 16, 11) / 11)
"""The 12-seed sample sd over the true sd (chi with 11 df), at 16 quantiles."""


def yardstick(
    case: Any, miss: float, know: str, seeds: tuple[int, ...], effects: tuple[float, ...], alone: float = 1.0
) -> tuple[float, float, float]:
    """(mean cost, share of tables with the table's decisions, share with any row declared + or -) of the
    yardstick that knows `know`: 'delta' (each row's true delta), 'mix' (the scenario's deltas, equally likely)
    or 'flat' (nothing). `alone`: the miss of a row that is the last one open, as a multiple of `miss` (its
    next seeds cost the baseline's too: rows planned jointly, by what a seed costs the table)."""
    used, decided = _yardstick(case, miss, know, seeds, effects, alone)
    rows, n_max = used.shape[1], seeds[-1]
    cost = (used.sum(axis=1) + used.max(axis=1)) / ((rows + 1) * n_max)
    same = (decided == case.table).all(axis=1)
    return float(cost.mean()), float(same.mean()), float((decided != "0").any(axis=1).mean())


def _yardstick(
    case: Any, miss: float, know: str, seeds: tuple[int, ...], effects: tuple[float, ...], alone: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(seeds per row, decision per row) of `yardstick`."""
    n_max, sd = seeds[-1], case.noise * math.sqrt(2.0)
    tables, rows = case.effects.shape
    grid = case.effects[..., None] if know == "delta" else np.array(effects)
    used, decided = np.full((tables, rows), n_max), case.table.copy()
    open_ = np.ones((tables, rows), dtype=bool)
    for n in seeds[:-1]:
        mean, rest = case.diffs[..., :n].mean(axis=-1)[..., None], n_max - n
        if know == "flat":  # the final mean ~ N(mean, rest^2 sd^2 (1/rest + 1/n)) / n_max^2
            weights, centre = np.ones((tables, rows, 1)), mean
            spread = rest * sd * math.sqrt(1.0 / rest + 1.0 / n) / n_max
        else:
            log = -n * (mean - grid) ** 2 / (2.0 * sd * sd) if know == "mix" else np.zeros((tables, rows, 1))
            weights = np.exp(log - log.max(axis=-1, keepdims=True))
            weights /= weights.sum(axis=-1, keepdims=True)
            centre, spread = (n * mean + rest * grid) / n_max, math.sqrt(rest) * sd / n_max
        done = ((~open_) & (decided != "0")).sum(axis=1, keepdims=True)
        level = 0.05 / (rows - np.minimum(done, rows - 1))
        bound = (sp.t.isf(level / 2.0, n_max - 1) * sd / math.sqrt(n_max))[..., None, None] * CHI_QUANTILES
        centre, weights = centre[..., None], weights[..., None]
        up = (weights * sp.norm.sf((bound - centre) / spread)).sum(axis=-2).mean(axis=-1)
        down = (weights * sp.norm.cdf((-bound - centre) / spread)).sum(axis=-2).mean(axis=-1)
        chances = np.stack([1.0 - up - down, up, down])
        last_open = open_.sum(axis=1, keepdims=True) == 1  # it alone keeps the baseline running
        stop = open_ & (chances.max(axis=0) >= 1.0 - np.where(last_open, miss * alone, miss))
        used = np.where(stop, n, used)
        decided = np.where(stop, np.array(["0", "+", "-"])[chances.argmax(axis=0)], decided)
        open_ &= ~stop
    return used, decided


def _calibrated_last(t_abs: np.ndarray, interim: np.ndarray, level: float) -> float:
    """The last look's |t| boundary at which the chance of ever crossing on `t_abs` paths is `level`
    (inf when the interim boundaries alone spend it)."""
    alive = ~(t_abs[:, :-1] >= interim).any(axis=1)
    room = level - (1.0 - float(alive.mean()))
    last = np.sort(t_abs[alive, -1])[::-1]
    index = int(room * len(t_abs))
    return math.inf if room <= 0 else float(last[index]) if index < len(last) else 0.0


@functools.lru_cache(maxsize=64)
def _curtailed_levels(seeds: tuple[int, ...], level: float, share: float, gamma: float) -> tuple[float, ...]:
    """Nominal levels of the curtailed design: interim |t| boundaries where the predictive chance of
    excluding 0 at the last look (the default's last boundary) is gamma; last look calibrated."""
    base = boundaries.nominal_levels(seeds, level, share)
    total, last = seeds[-1], float(sp.t.isf(base[-1] / 2.0, seeds[-1] - 1))
    interim = np.array(
        [
            math.sqrt(n)
            * (last * math.sqrt(total) - sp.t.isf(gamma, n - 1) * (total - n) * math.sqrt(1.0 / (total - n) + 1.0 / n))
            / total
            for n in seeds[:-1]
        ]
    )
    final = _calibrated_last(boundaries.null_t(seeds), interim, level)
    levels = 2.0 * sp.t.sf(np.append(interim, final), np.array(seeds) - 1)
    return tuple(float(v) for v in levels)


@dataclass(frozen=True)
class Curtailed(Design):
    """Efficacy by stochastic curtailment (see the module's docstring); futility as the default's."""

    gamma: float = 0.99

    def nominal(self, look: int, rejected: int = 0) -> float:
        """The look's nominal alpha (0 where the interim looks spend the level: the last look never rejects)."""
        levels = _curtailed_levels(self.seeds, self.level(rejected), self.final_share, self.gamma)
        return levels[min(look, len(self.seeds) - 1)]


def _pooled_t(x: np.ndarray, seeds: tuple[int, ...], keep: Any = None) -> tuple[np.ndarray, ...]:
    """Per look: (means, pooled t, own t, pooled sd, pooled df) of paired differences (tables, rows, max);
    `keep(look, means, pooled sd, df, t)` returns the rows still open (all, if None) whose sums of squares
    the next looks pool."""
    frozen_ss, frozen_df = np.zeros(x.shape[:2]), np.zeros(x.shape[:2])
    open_ = np.ones(x.shape[:2], dtype=bool)
    out = []
    for look, n in enumerate(seeds):
        part = x[..., :n]
        mean = part.mean(axis=-1)
        squares = ((part - mean[..., None]) ** 2).sum(axis=-1)
        frozen_ss, frozen_df = np.where(open_, squares, frozen_ss), np.where(open_, n - 1, frozen_df)
        df = frozen_df.sum(axis=1, keepdims=True)
        pooled = np.sqrt(frozen_ss.sum(axis=1, keepdims=True) / df)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_pool = np.nan_to_num(mean * math.sqrt(n) / pooled)
            t_own = np.nan_to_num(mean * math.sqrt(n) / np.sqrt(squares / (n - 1)))
        out.append((mean, t_pool, t_own, pooled, df))
        if keep is not None:
            open_ = open_ & keep(look, out[-1])
    return tuple(np.stack([o[i] for o in out]) for i in range(3))


@functools.lru_cache(maxsize=4)
def pooled_bounds(seeds: tuple[int, ...], rows: int, share: float, tables: int = 40_000) -> np.ndarray:
    """|t| boundaries [Holm rejections so far, look]: interim looks at the spending plan's nominal levels with
    the pooled spread's effective df (Satterthwaite: rows sharing a baseline, 2.29 (n - 1) for 4 rows), last
    look (own spread) calibrated on `tables` homoscedastic normal null tables (fixed seed)."""
    rng = np.random.default_rng(7)
    null = rng.normal(size=(tables, rows + 1, seeds[-1]))
    _, t_pool, t_own = _pooled_t(null[:, 1:] - null[:, :1], seeds)
    paths = np.abs(np.concatenate([t_pool[:-1], t_own[-1:]])).reshape(len(seeds), -1).T
    effective = 4.0 * rows * rows / ((rows + 1) ** 2 + rows - 1)
    out = np.zeros((rows + 1, len(seeds)))
    for rejected in range(rows + 1):
        level = 0.05 / max(1, rows - rejected)
        z = boundaries.z_boundaries(seeds, boundaries.spend(len(seeds), level, share))
        interim = sp.t.isf(sp.norm.sf(np.array(z[:-1])), effective * (np.array(seeds[:-1]) - 1))
        out[rejected] = np.append(interim, _calibrated_last(paths, interim, level))
    return out


def pooled_replay(diffs: np.ndarray, design: Design, efficacy: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The pooled rule on paired differences (tables, rows, max): (seeds per row, decisions), Holm as the
    default's (sequential.replay), futility from the pooled spread with its df. `efficacy=False`: pooled in
    the futility prediction only, every look's test on the row's own spread at the default's boundaries."""
    seeds, rows, last = design.seeds, diffs.shape[1], len(design.seeds) - 1
    bounds = pooled_bounds(seeds, rows, design.final_share) if efficacy else design.criticals(rows)
    used, sign = np.zeros(diffs.shape[:2], dtype=int), np.zeros(diffs.shape[:2])
    state = {"open": np.ones(diffs.shape[:2], dtype=bool), "rejected": np.zeros(diffs.shape[:2], dtype=bool)}
    last_t, last_look = np.zeros(diffs.shape[:2]), np.zeros(diffs.shape[:2], dtype=int)

    def keep(look: int, stats_: tuple[np.ndarray, ...]) -> np.ndarray:
        nonlocal used, sign, last_t, last_look
        mean, t_pool, t_own, pooled, df = stats_
        open_, rejected, n = state["open"], state["rejected"], seeds[look]
        used = np.where(open_, n, used)
        last_t = np.where(open_, t_own if look == last or not efficacy else t_pool, last_t)
        last_look = np.where(open_, look, last_look)
        count = rejected.sum(axis=1, keepdims=True)
        for _ in range(rows):  # Holm: each rejection raises the others' level
            hit = ~rejected & (np.abs(last_t) >= bounds[count, last_look])
            rejected, sign = rejected | hit, np.where(hit, np.sign(last_t), sign)
            count = rejected.sum(axis=1, keepdims=True)
        open_ = open_ & ~rejected
        if look < last and design.futility > 0:
            rest, total = seeds[-1] - n, seeds[-1]
            reach = bounds[count, last] * pooled * math.sqrt(total)
            scale = pooled * math.sqrt(1.0 / rest + 1.0 / n)
            with np.errstate(divide="ignore", invalid="ignore"):
                power = sp.t.sf(((reach - n * mean) / rest - mean) / scale, df) + sp.t.cdf(
                    ((-reach - n * mean) / rest - mean) / scale, df
                )
            open_ &= np.nan_to_num(power, nan=0.0) >= design.futility
        state["open"], state["rejected"] = open_, rejected
        return open_

    _pooled_t(diffs, seeds, keep)
    return used, np.where(sign > 0, "+", np.where(sign < 0, "-", "0"))
