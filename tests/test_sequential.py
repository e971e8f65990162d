"""The adaptive-seeds rule (orchestrator/results/sequential.py): looks, alpha spending, intervals, stops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from orchestrator.results import sequential
from orchestrator.results.sequential import Design, StopRule


def test_looks_follow_initial_step_and_end_at_max() -> None:
    assert sequential.looks(3, 2, 12) == (3, 5, 7, 9, 11, 12)
    assert sequential.looks(3, 3, 9) == (3, 6, 9)
    assert sequential.looks(4, 2, 4) == (4,)
    for bad in ((1, 2, 12), (5, 2, 4), (3, 0, 12)):
        with pytest.raises(ValueError):
            sequential.looks(*bad)


def test_spending_sums_to_alpha_with_the_final_share_last() -> None:
    alphas = sequential.spend(6, 0.05, 0.8)
    assert sum(alphas) == pytest.approx(0.05)
    assert alphas[-1] == pytest.approx(0.04)
    assert alphas[:-1] == pytest.approx([0.002] * 5)
    assert sequential.spend(1, 0.05, 0.8) == (0.05,)
    design = Design((3, 5, 7), StopRule("excludes_zero"), family=4, final_share=0.5)
    assert design.alphas == pytest.approx((0.05 * 0.25 / 4, 0.05 * 0.25 / 4, 0.025 / 4))


def test_interval_is_scipys_paired_t_interval() -> None:
    diffs = [0.4, 0.9, -0.1, 0.6, 0.3]
    mean, low, high = sequential.t_interval(diffs, 0.01)
    expected = sp.ttest_1samp(diffs, 0.0).confidence_interval(0.99)
    assert (float(mean), float(low), float(high)) == pytest.approx((np.mean(diffs), expected.low, expected.high))
    _, low1, high1 = sequential.t_interval([0.5], 0.01)
    assert math.isinf(low1) and math.isinf(high1)
    _, low2, high2 = sequential.t_interval([0.3, 0.3, 0.3], 0.01)
    assert float(low2) == float(high2) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("rule", "low", "high", "reason"),
    [
        (StopRule("excludes_zero"), 0.1, 0.9, "excludes_zero"),
        (StopRule("excludes_zero"), -0.9, -0.1, "excludes_zero"),
        (StopRule("excludes_zero"), -0.01, 0.01, ""),
        (StopRule("halfwidth", 0.3), -0.25, 0.3, "narrow"),
        (StopRule("halfwidth", 0.3), -0.35, 0.3, ""),
        (StopRule("halfwidth", 0.3), 0.2, 2.0, "excludes_zero"),
        (StopRule("margin", 0.5), -0.4, 0.45, "within_margin"),
        (StopRule("margin", 0.5), -0.4, 0.55, ""),
    ],
)
def test_stop_reasons(rule: StopRule, low: float, high: float, reason: str) -> None:
    assert str(sequential.reason_of(low, high, rule)) == reason


def test_a_clear_gain_resolves_at_the_first_look_and_noise_stops_at_max() -> None:
    design = Design(sequential.looks(3, 2, 12), StopRule("excludes_zero"), family=1, final_share=0.5)
    clear = design.judge([2.0, 2.1, 1.9], look=0)
    assert (clear.state, clear.reason, clear.decision, clear.n) == ("resolved", "excludes_zero", "+", 3)
    assert clear.low > 0
    noisy = [0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.3, -0.3, 0.1, 0.2, -0.2]
    assert design.judge(noisy[:5], look=1).state == "open"
    last = design.judge(noisy, look=5)
    assert (last.state, last.reason, last.decision) == ("max", "max", "0")
    assert last.as_dict()["state"] == "max"
    lone = design.judge([0.5], look=0)
    assert lone.state == "open" and lone.as_dict()["low"] is None


def test_an_interim_look_is_stricter_than_the_fixed_test() -> None:
    # 5 seeds whose fixed 95% t-interval excludes 0, but not the interim look's (alpha 0.002).
    diffs = [0.5, 0.2, 0.6, 0.1, 0.4]
    assert sp.ttest_1samp(diffs, 0.0).pvalue < 0.05
    design = Design(sequential.looks(3, 2, 12), StopRule("excludes_zero"), family=1)
    assert design.judge(diffs, look=1).state == "open"


def test_family_wise_error_of_null_tables_stays_below_alpha() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(size=(4000, 5, 12))
    diffs = noise[:, 1:] - noise[:, :1]  # 4 rows sharing one baseline, no true effect
    design = Design(sequential.looks(3, 2, 12), StopRule("excludes_zero"), family=4)
    used, decisions = sequential.replay(diffs, design)
    fwer = float((decisions != "0").any(axis=1).mean())
    assert fwer <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 4000)
    assert (used == 12).mean() > 0.95  # nothing resolves: every look is taken


def test_replay_stops_strong_rows_early_and_keeps_weak_ones() -> None:
    rng = np.random.default_rng(1)
    strong = 3.0 + rng.normal(0, 0.1, 12)
    weak = rng.normal(0, 1.0, 12)
    design = Design(sequential.looks(3, 2, 12), StopRule("excludes_zero"), family=2)
    used, decisions = sequential.replay(np.stack([strong, weak])[None], design)
    assert used[0, 0] == 3 and decisions[0, 0] == "+"
    assert used[0, 1] == 12 and decisions[0, 1] == "0"
