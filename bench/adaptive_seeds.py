"""Adaptive seeds (orchestrator/results/sequential.py): false positives, cost and decisions, in numbers.

(a) null tables: 10,000 simulated ablation tables with no true effect (a baseline and 4 rows,
    paired seeds, a look after every round of initial 3, step 2, max 12): the family-wise
    false-positive rate (any row declared + or -). Goal <= 5%.
(b) tables with effects: each row's true delta drawn from 0, 0.1, 0.2, 0.3, 0.5, 1, 2 points, seed
    noise (sd of a cell's value over seeds) 0.1, 0.2 or 0.4 points: seeds used by the adaptive rule
    against the fixed grid of `max` seeds per cell (the cost of the same-or-better resolution), and
    whether every row's decision (+, -, within noise) equals the fixed grid's (paired t-test,
    Holm over the rows, alpha 0.05, as the tables do). Goal: <= 60% of the cost, same decisions
    in >= 95% of tables.
(c) replay: bench/data/adaptive_replay.csv, a grid of 60 real training runs (5 rows x 12 seeds,
    digits, test_resnet; bench/data/adaptive_replay.yaml says how it was made), replayed seed by
    seed through the rule in the recorded seed order and in 1,000 shuffled orders.

numpy and scipy only, fixed seed. Run:

    .venv/bin/python bench/adaptive_seeds.py [--tables 10000]
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from orchestrator.results import sequential
from orchestrator.results.sequential import Design, StopRule, looks

REPLAY = Path(__file__).resolve().parent / "data" / "adaptive_replay.csv"
ROWS = 4
SEEDS = looks(3, 2, 12)
EFFECTS_PT = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
NOISE_PT = (0.1, 0.2, 0.4)
RULES = (StopRule("halfwidth", 0.3), StopRule("excludes_zero"))
REPLAY_RULES = (*RULES, StopRule("halfwidth", 1.0))
"""The replay adds a half-width that fits the digits grid's seed noise (sd of differences 0.4-0.9 points)."""
GOAL_FWER, GOAL_COST, GOAL_AGREE = 0.05, 0.60, 0.95


@dataclass(frozen=True)
class Outcome:
    """Per table: seeds run (every cell, baseline included) and each row's decision."""

    seeds: np.ndarray
    """(tables,) seeds run by the adaptive rule."""
    decisions: np.ndarray
    """(tables, rows) '+', '-', '0'."""
    used: np.ndarray
    """(tables, rows) paired seeds each row used."""


def adaptive(diffs: np.ndarray, design: Design) -> Outcome:
    """The rule on paired differences (tables, rows, max seeds); the baseline runs as many seeds as its
    longest row."""
    used, decisions = sequential.replay(diffs, design)
    return Outcome(used.sum(axis=1) + used.max(axis=1), decisions, used)


def fixed(diffs: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """The fixed grid's decisions: paired t-test on every seed, Holm over the rows of each table."""
    result = stats.ttest_1samp(diffs, 0.0, axis=-1)
    p = np.nan_to_num(result.pvalue, nan=1.0)
    order = np.argsort(p, axis=1)
    ranked = np.take_along_axis(p, order, axis=1) * (p.shape[1] - np.arange(p.shape[1]))
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, np.maximum.accumulate(np.minimum(ranked, 1.0), axis=1), axis=1)
    sign = np.where(diffs.mean(axis=-1) > 0, "+", "-")
    return np.where(adjusted < alpha, sign, "0")


def simulate(
    rng: np.random.Generator, tables: int, effects_pt: np.ndarray, noise_pt: float, df: float = 0
) -> np.ndarray:
    """Paired differences row - baseline (tables, rows, max seeds): every cell's value is its true mean
    plus the seed's shared offset (cancels in the pair) plus its own noise (normal, or t with `df`)."""
    shape = (tables, ROWS + 1, SEEDS[-1])
    # t noise scaled to the same sd as the normal case
    noise = rng.standard_t(df, shape) * noise_pt / np.sqrt(df / (df - 2)) if df else rng.normal(0.0, noise_pt, shape)
    return effects_pt[..., None] + noise[:, 1:] - noise[:, :1]


def null_tables(rng: np.random.Generator, tables: int) -> None:
    """(a): family-wise false positives over all looks."""
    print(f"(a) {tables:,} null tables, {ROWS} rows, looks at {list(SEEDS)} seeds")
    zero = np.zeros((tables, ROWS))
    for rule in RULES:
        for df, label in ((0, "normal noise"), (4, "t(4) noise")):
            out = adaptive(simulate(rng, tables, zero, 0.2, df), Design(SEEDS, rule, ROWS))
            fwer = float((out.decisions != "0").any(axis=1).mean())
            goal = f"goal <= {GOAL_FWER:.0%}: {'met' if fwer <= GOAL_FWER else 'NOT met'}" if not df else "(robustness)"
            print(f"    {rule.describe():55s} {label:13s} family-wise false positives {fwer:6.2%}  {goal}")


def effect_tables(rng: np.random.Generator, tables: int) -> None:
    """(b): seeds used against the fixed grid, agreement of decisions, and the final-share trade-off."""
    per = max(1, tables // len(NOISE_PT))
    print(f"\n(b) {per * len(NOISE_PT):,} tables with effects {list(EFFECTS_PT)} pt, noise {list(NOISE_PT)} pt")
    cases = []
    for noise in NOISE_PT:
        effects = rng.choice(np.array(EFFECTS_PT), (per, ROWS))
        diffs = simulate(rng, per, effects, noise)
        cases.append((noise, diffs, fixed(diffs), fixed(simulate(rng, per, effects, noise))))
    for rule in RULES:
        cost, agree = _compare(cases, Design(SEEDS, rule, ROWS), show=rule.describe())
        verdict = "met" if cost <= GOAL_COST and agree >= GOAL_AGREE else "NOT met"
        print(f"    {'':55s} all:       cost {cost:6.1%} (goal <= {GOAL_COST:.0%}), same decisions {agree:6.1%} "
              f"(goal >= {GOAL_AGREE:.0%}): {verdict}")  # fmt: skip
    retest = [float((first == second).all(axis=1).mean()) for _, _, first, second in cases]
    print(
        "    yardstick: the fixed grid against itself re-run on fresh seeds, same decisions in "
        + ", ".join(f"{r:.1%}" for r in retest)
        + " of tables (noise "
        + ", ".join(map(str, NOISE_PT))
        + ")"
    )
    print("    trade-off, alpha share of the last look (all noise levels):")
    for share in (0.5, 0.8, 0.95):
        parts = []
        for rule in RULES:
            cost, agree = _compare(cases, Design(SEEDS, rule, ROWS, final_share=share))
            parts.append(f"{rule.kind} cost {cost:.1%} same {agree:.1%}")
        print(f"      final_share {share:<4}: " + "; ".join(parts))


def _compare(
    cases: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]], design: Design, show: str = ""
) -> tuple[float, float]:
    """Mean cost ratio and share of tables with the fixed grid's decisions; one line per noise if `show`."""
    full = (ROWS + 1) * SEEDS[-1]
    costs, agree = [], []
    for noise, diffs, decided, _ in cases:
        out = adaptive(diffs, design)
        same = (out.decisions == decided).all(axis=1)
        costs.append(out.seeds / full)
        agree.append(same)
        if show:
            rows = (out.decisions == decided).mean()
            print(f"    {show:55s} noise {noise:.1f}: cost {out.seeds.mean() / full:6.1%} of the fixed grid, "
                  f"same decisions in {same.mean():6.1%} of tables ({rows:.1%} of rows)")  # fmt: skip
    return float(np.concatenate(costs).mean()), float(np.concatenate(agree).mean())


def replay_diffs() -> tuple[list[str], np.ndarray]:
    """Row labels and paired differences (rows, seeds) in points from the recorded grid."""
    values: dict[str, dict[int, float]] = {}
    with REPLAY.open() as handle:
        for record in csv.DictReader(line for line in handle if not line.startswith("#")):
            values.setdefault(record["ablation"], {})[int(record["seed"])] = 100.0 * float(record["test.top1"])
    baseline, *rows = values
    seeds = sorted(values[baseline])
    diffs = np.array([[values[row][s] - values[baseline][s] for s in seeds] for row in rows])
    return rows, diffs


def replay_grid(rng: np.random.Generator, orders: int) -> None:
    """(c): the recorded grid through the rule, seed by seed."""
    if not REPLAY.exists():
        print(f"\n(c) {REPLAY} missing: no replay")
        return
    rows, diffs = replay_diffs()
    full_decisions = fixed(diffs[None])[0]
    spread = diffs.std(axis=1, ddof=1)
    print(f"\n(c) replay of {REPLAY.name}: {len(rows)} rows x {diffs.shape[1]} seeds (real runs, top-1 in points)")
    for row, d, s, dec in zip(rows, diffs, spread, full_decisions, strict=True):
        print(f"    {row:20s} full grid: delta {d.mean():+6.2f} (sd of differences {s:.2f}), decision {dec}")
    full = (len(rows) + 1) * diffs.shape[1]
    for rule in REPLAY_RULES:
        design = Design(SEEDS, rule, len(rows))
        recorded = adaptive(diffs[None, :, : SEEDS[-1]], design)
        used = ", ".join(f"{n}" for n in recorded.used[0])
        same = (recorded.decisions[0] == full_decisions).mean()
        shuffled = np.stack([diffs[:, rng.permutation(diffs.shape[1])[: SEEDS[-1]]] for _ in range(orders)])
        many = adaptive(shuffled, design)
        print(f"    {rule.describe():55s} recorded order: seeds per row {used}, cost {recorded.seeds[0] / full:.1%}, "
              f"same decisions {same:.0%} of rows; {orders} shuffled orders: cost {many.seeds.mean() / full:.1%}, "
              f"same decisions in {(many.decisions == full_decisions).all(axis=1).mean():.1%}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=10_000, help="null tables in (a), effect tables in (b)")
    parser.add_argument("--orders", type=int, default=1000, help="shuffled seed orders in (c)")
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(20261202)
    null_tables(rng, args.tables)
    effect_tables(rng, args.tables)
    replay_grid(rng, args.orders)
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
