"""Adaptive seeds (orchestrator/results/sequential.py): false positives, cost and decisions, in numbers.

(a) null tables: 10,000 simulated ablation tables with no true effect (a baseline and 4 rows,
    paired seeds, a look after every round of initial 3, step 2, max 12): the family-wise
    false-positive rate (any row declared + or -), normal and heavy-tailed (t with 4 df) noise.
    Goal <= 5%.
(b) tables with effects: each row's true delta drawn from 0, 0.1, 0.2, 0.3, 0.5, 1, 2 points, seed
    noise (sd of a cell's value over seeds) 0.1, 0.2 or 0.4 points. Cost: seeds the adaptive rule
    runs (rows and baseline) against the fixed grid of `max` seeds per cell. Same decisions: every
    row's decision (+, -, within noise) equals the one the fixed grid's table makes on the SAME
    12 seeds: the table's p-value (exact sign-flip test at 12 pairs, orchestrator/results/stats.py),
    Holm-adjusted across the table's 4 deltas, significant below 0.05. Goal: <= 60% of the cost,
    same decisions in >= 95% of tables. Beside it (variant, not the goal): agreement with a paired
    t-test + Holm on the same 12 seeds, the test the rule itself uses at its last look.
    Yardsticks: the fixed grid against itself on fresh seeds, the t-test against the sign-flip test
    on the same seeds.
(c) trade-off: the alpha share of the last look and the futility threshold, each with (a)'s
    false positives and (b)'s cost and agreement; the default is marked.
(d) replay: bench/data/adaptive_replay.csv, a grid of 60 real training runs (5 rows x 12 seeds,
    digits, test_resnet; bench/data/adaptive_replay.yaml says how it was made), replayed seed by
    seed through the rule in the recorded seed order and in 1,000 shuffled orders.
(e) the cost goal: rules that know more than the data (every row's true delta and the noise; the noise
    and the scenario's mix of deltas; the noise only) at the certainty that 95% same decisions needs,
    and the rules tried for the goal (stochastic curtailment of efficacy; a spread pooled over a table's
    rows, in the tests and the futility prediction or in the futility prediction only), with false
    positives on (a)'s null tables and on null tables whose cells differ in noise, and cost and same
    decisions on effect tables whose cells differ in noise (bench/adaptive_alternatives.py), and other
    look schedules (initial, step) at their cheapest last-look share and futility.

numpy and scipy only, fixed seed. Run:

    .venv/bin/python bench/adaptive_seeds.py [--tables 10000]
"""

from __future__ import annotations

import argparse
import csv
import functools
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import adaptive_alternatives as alternatives
import numpy as np
from scipy import stats as sp

from orchestrator.results import boundaries, sequential, stats
from orchestrator.results.sequential import Design, StopRule, looks

REPLAY = Path(__file__).resolve().parent / "data" / "adaptive_replay.csv"
ROWS = 4
SEEDS = looks(3, 2, 12)
EFFECTS_PT = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
NOISE_PT = (0.1, 0.2, 0.4)
RULES = (StopRule("excludes_zero"), StopRule("halfwidth", 0.3))
REPLAY_RULES = (*RULES, StopRule("halfwidth", 1.0))
"""The replay adds a half-width that fits the digits grid's seed noise (sd of differences 0.4-0.9 points)."""
SHARES = (0.5, 0.8, 0.95)
FUTILITIES = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3)
GOAL_FWER, GOAL_COST, GOAL_AGREE = 0.05, 0.60, 0.95
UNEQUAL_SD_PT = np.array([0.2, 0.1, 0.1, 0.1, 0.6])
"""Seed noise of the baseline and the 4 rows in the tables whose cells differ in noise ((e))."""
Runner = Callable[[np.ndarray, Design], tuple[np.ndarray, np.ndarray]]
"""A rule replayed on paired differences (tables, rows, max seeds): (seeds per row, decision per row)."""
SIGNS = np.array(list(itertools.product((1.0, -1.0), repeat=SEEDS[-1])))
"""Every sign pattern of 12 paired differences (4,096): the table's exact sign-flip test."""


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


def _holm(p: np.ndarray, diffs: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Decisions from p-values (tables, rows): Holm over the rows of each table, sign of the mean delta."""
    order = np.argsort(p, axis=1)
    ranked = np.take_along_axis(p, order, axis=1) * (p.shape[1] - np.arange(p.shape[1]))
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, np.maximum.accumulate(np.minimum(ranked, 1.0), axis=1), axis=1)
    sign = np.where(diffs.mean(axis=-1) > 0, "+", "-")
    return np.where(adjusted < alpha, sign, "0")


def table_decisions(diffs: np.ndarray) -> np.ndarray:
    """The fixed grid's table: exact sign-flip p-value of each row's 12 paired differences, Holm, 0.05."""
    p = np.empty(diffs.shape[:2])
    for start in range(0, len(diffs), 500):  # 500 tables x 4 rows x 4,096 patterns at a time
        chunk = diffs[start : start + 500]
        observed = np.abs(chunk.sum(axis=-1))[..., None]
        flipped = np.abs(chunk @ SIGNS.T)
        p[start : start + 500] = (flipped >= observed * (1 - 1e-12)).mean(axis=-1)
    return _holm(p, diffs)


def t_decisions(diffs: np.ndarray) -> np.ndarray:
    """Variant: paired t-test on every seed, Holm over the rows, 0.05."""
    return _holm(np.nan_to_num(sp.ttest_1samp(diffs, 0.0, axis=-1).pvalue, nan=1.0), diffs)


def check_like_with_like(diffs: np.ndarray) -> bool:
    """table_decisions equals what orchestrator's tables compute (stats.paired's p, stats.holm) on 25 tables."""
    for table, ours in zip(diffs[:25], table_decisions(diffs[:25]), strict=True):
        p = [stats.paired(list(row), [0.0] * len(row)).p for row in table]
        adjusted = stats.holm(p)
        theirs = [
            "0" if a is None or a >= 0.05 else "+" if row.mean() > 0 else "-"
            for a, row in zip(adjusted, table, strict=True)
        ]
        if list(ours) != theirs:
            return False
    return True


def simulate(
    rng: np.random.Generator, tables: int, effects_pt: np.ndarray, noise_pt: float, df: float = 0
) -> np.ndarray:
    """Paired differences row - baseline (tables, rows, max seeds): every cell's value is its true mean
    plus the seed's shared offset (cancels in the pair) plus its own noise (normal, or t with `df`)."""
    shape = (tables, ROWS + 1, SEEDS[-1])
    # t noise scaled to the same sd as the normal case
    noise = rng.standard_t(df, shape) * noise_pt / np.sqrt(df / (df - 2)) if df else rng.normal(0.0, noise_pt, shape)
    return effects_pt[..., None] + noise[:, 1:] - noise[:, :1]


def fwer(nulls: dict[str, np.ndarray], design: Design) -> dict[str, float]:
    """Family-wise false positives per noise kind."""
    return {k: float((adaptive(d, design).decisions != "0").any(axis=1).mean()) for k, d in nulls.items()}


def null_tables(nulls: dict[str, np.ndarray]) -> None:
    """(a): family-wise false positives over all looks."""
    tables = len(next(iter(nulls.values())))
    print(f"(a) {tables:,} null tables, {ROWS} rows, looks at {list(SEEDS)} seeds")
    single = {k: d[:, :1] for k, d in nulls.items()}
    rates = fwer(single, Design(SEEDS, RULES[0], 1))
    print(
        f"    {'single delta (family of 1), ' + RULES[0].describe():55s} futility {sequential.FUTILITY:<4}: "
        f"false positives {'; '.join(f'{k} {v:.2%}' for k, v in rates.items())}"
    )
    for rule in RULES:
        for futility in (sequential.FUTILITY, 0.0):
            rates = fwer(nulls, Design(SEEDS, rule, ROWS, futility=futility))
            verdict = "met" if max(rates.values()) <= GOAL_FWER else "NOT met"
            shown = "; ".join(f"{k} {v:.2%}" for k, v in rates.items())
            print(
                f"    {rule.describe():55s} futility {futility:<4}: family-wise false positives {shown}  "
                f"goal <= {GOAL_FWER:.0%}: {verdict}"
            )


@dataclass(frozen=True)
class Case:
    """One noise level's effect tables and the fixed grid's decisions on them."""

    noise: float
    effects: np.ndarray
    """(tables, rows) true deltas."""
    diffs: np.ndarray
    table: np.ndarray
    """The fixed grid's table decisions (sign-flip, Holm) on the same seeds: the goal's yardstick."""
    ttest: np.ndarray
    """Paired t-test + Holm on the same seeds (variant)."""
    fresh: np.ndarray
    """The fixed grid's table decisions on fresh seeds of the same tables."""


def make_cases(rng: np.random.Generator, tables: int) -> list[Case]:
    """`tables` effect tables split over the noise levels."""
    per = max(1, tables // len(NOISE_PT))
    cases = []
    for noise in NOISE_PT:
        effects = rng.choice(np.array(EFFECTS_PT), (per, ROWS))
        diffs = simulate(rng, per, effects, noise)
        fresh = table_decisions(simulate(rng, per, effects, noise))
        cases.append(Case(noise, effects, diffs, table_decisions(diffs), t_decisions(diffs), fresh))
    return cases


def compare(cases: list[Case], design: Design, show: str = "") -> tuple[float, float, float]:
    """Mean cost ratio, share of tables with the table's decisions, share with the t-test's; a line per
    noise level if `show`."""
    full = (ROWS + 1) * SEEDS[-1]
    costs, same, same_t = [], [], []
    for case in cases:
        out = adaptive(case.diffs, design)
        costs.append(out.seeds / full)
        same.append((out.decisions == case.table).all(axis=1))
        same_t.append((out.decisions == case.ttest).all(axis=1))
        if show:
            rows = (out.decisions == case.table).mean()
            print(
                f"    {show:55s} noise {case.noise:.1f}: cost {costs[-1].mean():6.1%}, same decisions "
                f"{same[-1].mean():6.1%} of tables ({rows:.1%} of rows); "
                f"t-test variant {same_t[-1].mean():6.1%}"
            )
    return tuple(float(np.concatenate(v).mean()) for v in (costs, same, same_t))  # type: ignore[return-value]


def effect_tables(cases: list[Case]) -> None:
    """(b): seeds used against the fixed grid, agreement of decisions, where the seeds go, yardsticks."""
    tables = sum(len(c.diffs) for c in cases)
    print(f"\n(b) {tables:,} tables with effects {list(EFFECTS_PT)} pt, noise {list(NOISE_PT)} pt")
    print(
        f"    the table's decisions computed here equal orchestrator's (stats.paired, stats.holm) on 25 tables: "
        f"{check_like_with_like(cases[1].diffs)}"
    )
    for rule in RULES:
        design = Design(SEEDS, rule, ROWS)
        cost, agree, agree_t = compare(cases, design, show=rule.describe())
        verdict = "met" if cost <= GOAL_COST and agree >= GOAL_AGREE else "NOT met"
        print(
            f"    {'':55s} all:       cost {cost:6.1%} (goal <= {GOAL_COST:.0%}), same decisions {agree:6.1%} "
            f"(goal >= {GOAL_AGREE:.0%}): {verdict}; t-test variant {agree_t:.1%}"
        )
    print("    where the seeds go (default rule, excludes 0): mean paired seeds per row by true delta (pt)")
    print("      noise  " + "".join(f"{e:>6g}" for e in EFFECTS_PT) + "   baseline at max")
    for case in cases:
        out = adaptive(case.diffs, Design(SEEDS, RULES[0], ROWS))
        means = [out.used[case.effects == e].mean() for e in EFFECTS_PT]
        at_max = (out.used.max(axis=1) == SEEDS[-1]).mean()
        print(f"      {case.noise:<5}  " + "".join(f"{m:6.1f}" for m in means) + f"   {at_max:6.1%} of tables")
    retest = ", ".join(f"{(c.table == c.fresh).all(axis=1).mean():.1%}" for c in cases)
    tvs = ", ".join(f"{(c.table == c.ttest).all(axis=1).mean():.1%}" for c in cases)
    print(f"    yardsticks (noise {', '.join(map(str, NOISE_PT))}):")
    print(f"      the fixed grid against itself on fresh seeds: same decisions in {retest} of tables")
    print(f"      the fixed grid's t-test + Holm against its sign-flip + Holm, same seeds: {tvs}")


@dataclass(frozen=True)
class ObrienFleming(Design):
    """Alternative spending (not the default): Lan-DeMets' O'Brien-Fleming-type function
    alpha(t) = 2 - 2 Phi(z_{alpha/2} / sqrt(t)) of the information fraction t = seeds / max; z-recursion
    boundaries only (calibrating its last look for t, as the default does, would only raise it)."""

    def nominal(self, look: int, rejected: int = 0) -> float:
        """The look's nominal alpha under O'Brien-Fleming-type spending at Holm's level."""
        level, fractions = self.level(rejected), np.array(self.seeds) / self.seeds[-1]
        spent = 2.0 * sp.norm.sf(sp.norm.isf(level / 2.0) / np.sqrt(fractions))
        shares = tuple(float(v) for v in np.diff(spent, prepend=0.0))
        z = boundaries.z_boundaries(self.seeds, shares)[min(look, len(self.seeds) - 1)]
        return float(2.0 * sp.norm.sf(z))


def trade_off(nulls: dict[str, np.ndarray], cases: list[Case]) -> None:
    """(c): last look's share x futility threshold, rule excludes_zero."""
    print("\n(c) trade-off, rule: interval excludes 0 (all noise levels); * the default")
    print("    final_share futility  false positives (normal, t4)  cost   same decisions  t-test variant")
    best: tuple[float, str] | None = None
    for share, futility in itertools.product(SHARES, FUTILITIES):
        design = Design(SEEDS, RULES[0], ROWS, final_share=share, futility=futility)
        rates = fwer(nulls, design)
        cost, agree, agree_t = compare(cases, design)
        label = f"final_share {share}, futility {futility}"
        if max(rates.values()) <= GOAL_FWER and agree >= GOAL_AGREE and (best is None or cost < best[0]):
            best = (cost, label)
        mark = "*" if (share, futility) == (sequential.FINAL_SHARE, sequential.FUTILITY) else " "
        print(
            f"   {mark}{share:<11} {futility:<8}  {rates['normal']:6.2%}, {rates['t(4)']:6.2%}"
            f"                {cost:6.1%}  {agree:6.1%}          {agree_t:6.1%}"
        )
    for futility in (0.0, sequential.FUTILITY):
        design = ObrienFleming(SEEDS, RULES[0], ROWS, futility=futility)
        rates = fwer(nulls, design)
        cost, agree, agree_t = compare(cases, design)
        last = design.critical(len(SEEDS) - 1)
        print(
            f"    O'Brien-Fleming-type spending, futility {futility}: false positives {rates['normal']:.2%}, "
            f"{rates['t(4)']:.2%}; cost {cost:.1%}, same decisions {agree:.1%}, t-test variant {agree_t:.1%} "
            f"(last t-boundary at alpha/4 {last:.2f}, default {Design(SEEDS, RULES[0], ROWS).critical(5):.2f}, "
            f"fixed test {sp.t.isf(0.05 / ROWS / 2, SEEDS[-1] - 1):.2f})"
        )
    if best is not None:
        verdict = "met" if best[0] <= GOAL_COST else "NOT met"
        print(
            f"    cheapest with false positives <= {GOAL_FWER:.0%} and same decisions >= {GOAL_AGREE:.0%}: "
            f"{best[1]} (cost {best[0]:.1%}; goal <= {GOAL_COST:.0%}: {verdict})"
        )


MISSES = (0.005, 0.01, 0.02, 0.03, 0.04, 0.045, 0.05)
KNOWS = {
    "delta": "every row's true delta and the sd",
    "mix": "the sd and the scenario's mix of deltas",
    "flat": "the sd only (flat prior on the delta)",
    "flat, joint": "the sd only; the last open row at 2x the miss",
}
ALONE = {"flat, joint": 2.0}
"""Yardsticks that plan a table's rows jointly: the miss of the row that alone keeps the baseline running
(its seeds cost twice), as a multiple of the others'."""


def lower_bounds(cases: list[Case], nulls: dict[str, np.ndarray]) -> None:
    """(e) first part: what rules that know more than the data can reach (bench/adaptive_alternatives.py),
    and their family-wise false positives on (a)'s null tables at the cheapest miss with >= 95% same decisions."""
    print("\n(e) the goal against rules that know more: stop a row once its 12-seed table decision is (1 - miss) sure")
    print("    (t-test at 12 seeds, Holm given the rows stopped +/-; rows at 12 seeds get the table's own decision);")
    print("    cost / same decisions; the cheapest miss with same decisions >= 95%, its false positives (normal, t4)")
    print("    knows" + " " * 45 + "".join(f"  miss {m:<13}" for m in MISSES) + "cheapest >= 95%")
    zero = np.zeros((len(next(iter(nulls.values()))), ROWS))
    null_cases = [Case(0.2, zero, d, table_decisions(d), zero, zero) for d in nulls.values()]
    for key, words in KNOWS.items():
        know, alone = key.split(",")[0], ALONE.get(key, 1.0)
        found = [
            np.mean([alternatives.yardstick(c, m, know, SEEDS, EFFECTS_PT, alone)[:2] for c in cases], axis=0)
            for m in MISSES
        ]
        ok = [(c, m) for (c, a), m in zip(found, MISSES, strict=True) if a >= GOAL_AGREE]
        best = "none"
        if ok:
            rates = [alternatives.yardstick(c, min(ok)[1], know, SEEDS, EFFECTS_PT, alone)[2] for c in null_cases]
            best = f"{min(ok)[0]:.1%} (miss {min(ok)[1]}; {', '.join(f'{r:.1%}' for r in rates)})"
        print(f"    {words:50s}" + "".join(f"  {c:5.1%} / {a:6.2%}  " for c, a in found) + best)


def rules_tried(nulls: dict[str, np.ndarray], cases: list[Case]) -> None:
    """(e) second part: rules tried for the cost goal, with (a)'s false positives plus unequal-noise nulls, and
    cost and same decisions on (b)'s tables and on effect tables whose cells differ in noise."""
    print("    rules tried (false positives: normal, t(4), unequal noise; cost; same decisions; goal met;")
    print("    then cost and same decisions on effect tables whose cells differ in noise as the unequal nulls')")
    rule = RULES[0]
    futility_only: Runner = functools.partial(alternatives.pooled_replay, efficacy=False)
    designs: list[tuple[str, Design, Runner]] = [
        ("the default (own spread)", Design(SEEDS, rule, ROWS), sequential.replay)
    ]
    designs += [
        (f"curtailed efficacy, gamma {g}", alternatives.Curtailed(SEEDS, rule, ROWS, gamma=g), sequential.replay)
        for g in (0.99, 0.999, 0.9999)
    ]
    for label, run in (("pooled spread", alternatives.pooled_replay), ("pooled, futility only", futility_only)):
        designs += [
            (f"{label}, final_share {s}, futility {f}", Design(SEEDS, rule, ROWS, final_share=s, futility=f), run)
            for s, f in itertools.product((0.8, 0.95), (0.01, 0.05))
        ]
    unequal = unequal_noise_effects(sum(len(c.diffs) for c in cases) // len(cases))
    unequal_table = table_decisions(unequal)
    full = (ROWS + 1) * SEEDS[-1]
    for label, design, run in designs:
        rates = [float((run(d, design)[1] != "0").any(axis=1).mean()) for d in nulls.values()]
        outs = [run(c.diffs, design) for c in cases]
        cost = np.concatenate([(u.sum(axis=1) + u.max(axis=1)) / full for u, _ in outs]).mean()
        agree = np.concatenate([(d == c.table).all(axis=1) for (_, d), c in zip(outs, cases, strict=True)]).mean()
        used, decided = run(unequal, design)
        unequal_cost = ((used.sum(axis=1) + used.max(axis=1)) / full).mean()
        met = max(rates) <= GOAL_FWER and cost <= GOAL_COST and agree >= GOAL_AGREE
        spent = " (its interim looks alone spend more than alpha)" if design.nominal(len(SEEDS) - 1) == 0 else ""
        print(
            f"    {label:50s} {', '.join(f'{r:.2%}' for r in rates)}; cost {cost:.1%}, same decisions {agree:.1%}: "
            f"{'met' if met else 'NOT met'}; unequal noise {unequal_cost:.1%}, "
            f"{(decided == unequal_table).all(axis=1).mean():.1%}{spent}"
        )


SCHEDULES = ((3, 1), (2, 1), (2, 2), (4, 2), (3, 3), (4, 4), (6, 3))
"""(initial, step) look schedules to max 12 beside the default (3, 2): the bench's design is the issue's example."""


def schedules(nulls: dict[str, np.ndarray], cases: list[Case]) -> None:
    """(e) last part: other look schedules, each at (c)'s cheapest last-look share and futility that keep
    false positives <= 5% and same decisions >= 95%."""
    first = [(adaptive(c.diffs, Design(SEEDS, RULES[0], ROWS)).used == SEEDS[0]).mean() for c in cases]
    print(
        f"    the default's first look ({SEEDS[0]} seeds) stops {', '.join(f'{v:.1%}' for v in first)} of rows "
        f"(noise {', '.join(map(str, NOISE_PT))})"
    )
    print("    other look schedules (initial, step; max 12): cost / same decisions at the default; the cheapest")
    print("    final_share x futility of (c) with false positives <= 5% and same decisions >= 95%")
    for initial, step in SCHEDULES:
        seeds = looks(initial, step, SEEDS[-1])
        found = []
        for share, futility in itertools.product(SHARES, FUTILITIES):
            design = Design(seeds, RULES[0], ROWS, final_share=share, futility=futility)
            cost, agree, _ = compare(cases, design)
            if agree >= GOAL_AGREE and max(fwer(nulls, design).values()) <= GOAL_FWER:
                found.append((cost, f"final_share {share}, futility {futility}"))
        base = compare(cases, Design(seeds, RULES[0], ROWS))
        cheapest = f"{min(found)[0]:.1%} ({min(found)[1]})" if found else "none"
        verdict = "met" if found and min(found)[0] <= GOAL_COST else "NOT met"
        print(
            f"    {initial}, {step}  looks {list(seeds)!s:38s} default {base[0]:6.1%} / {base[1]:6.1%}; "
            f"cheapest {cheapest}: {verdict}"
        )


def unequal_noise(tables: int) -> np.ndarray:
    """Null tables whose cells differ in seed noise (sd 0.2 baseline, 0.1 three rows, 0.6 the fourth):
    paired differences (tables, rows, max seeds); their own generator, so (a)-(d) draw as before."""
    cells = np.random.default_rng(5).normal(size=(tables, ROWS + 1, SEEDS[-1])) * UNEQUAL_SD_PT[:, None]
    return cells[:, 1:] - cells[:, :1]


def unequal_noise_effects(tables: int) -> np.ndarray:
    """Effect tables (deltas drawn as in (b)) whose cells differ in noise as `unequal_noise`'s; own generator."""
    rng = np.random.default_rng(9)
    effects = rng.choice(np.array(EFFECTS_PT), (tables, ROWS))
    cells = rng.normal(size=(tables, ROWS + 1, SEEDS[-1])) * UNEQUAL_SD_PT[:, None]
    return effects[..., None] + cells[:, 1:] - cells[:, :1]


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
    """(d): the recorded grid through the rule, seed by seed."""
    if not REPLAY.exists():
        print(f"\n(d) {REPLAY} missing: no replay")
        return
    rows, diffs = replay_diffs()
    full_decisions = table_decisions(diffs[None])[0]
    spread = diffs.std(axis=1, ddof=1)
    print(f"\n(d) replay of {REPLAY.name}: {len(rows)} rows x {diffs.shape[1]} seeds (real runs, top-1 in points)")
    for row, d, s, dec in zip(rows, diffs, spread, full_decisions, strict=True):
        print(f"    {row:20s} full grid: delta {d.mean():+6.2f} (sd of differences {s:.2f}), table's decision {dec}")
    full = (len(rows) + 1) * diffs.shape[1]
    shuffled = np.stack([diffs[:, rng.permutation(diffs.shape[1])] for _ in range(orders)])
    for rule in REPLAY_RULES:
        design = Design(SEEDS, rule, len(rows))
        recorded = adaptive(diffs[None], design)
        used = ", ".join(f"{n}" for n in recorded.used[0])
        same = (recorded.decisions[0] == full_decisions).mean()
        many = adaptive(shuffled, design)
        print(
            f"    {rule.describe():55s} recorded order: seeds per row {used}, cost {recorded.seeds[0] / full:.1%}, "
            f"same decisions {same:.0%} of rows; {orders} shuffled orders: cost {many.seeds.mean() / full:.1%}, "
            f"same decisions in {(many.decisions == full_decisions).all(axis=1).mean():.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=10_000, help="null tables in (a), effect tables in (b)")
    parser.add_argument("--orders", type=int, default=1000, help="shuffled seed orders in (d)")
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(20261203)
    zero = np.zeros((args.tables, ROWS))
    nulls = {"normal": simulate(rng, args.tables, zero, 0.2), "t(4)": simulate(rng, args.tables, zero, 0.2, df=4)}
    print(
        f"default: Holm over the rows, alpha spending with {sequential.FINAL_SHARE:.0%} at the last look "
        f"(exact interim boundaries, last look calibrated for t), futility below {sequential.FUTILITY:.0%} "
        "predictive power\n"
    )
    null_tables(nulls)
    cases = make_cases(rng, args.tables)
    effect_tables(cases)
    trade_off(nulls, cases)
    replay_grid(rng, args.orders)
    lower_bounds(cases, nulls)
    rules_tried({**nulls, "unequal": unequal_noise(args.tables)}, cases)
    schedules(nulls, cases)
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
