"""Adaptive seeds against careless or hostile input: rows that swap the backbone paired as the table pairs
them, adaptive.json edited by hand or from another sweep, the seeds block changed between rounds, failed
baselines and a metric no run reports."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TINY_SPEC
from tables_fixture import fake_run

from orchestrator.results import adaptive, collect
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers.rundir import State


def _edited(text: str, *edits: tuple[str, str]) -> str:
    """`text` with each (old, new) replaced; an `old` it lacks is an error, not a silently different spec."""
    for old, new in edits:
        if old not in text:
            raise ValueError(f"conftest.TINY_SPEC has no {old!r} to replace")
        text = text.replace(old, new)
    return text


# The tiny sweep without a seed axis, the dropout row replaced by one that swaps the backbone, adaptive seeds
# and a table that pools the backbone.
SWAP_SPEC = (
    _edited(
        TINY_SPEC,
        ("name: tiny\n", "name: swap\n"),
        ("  seed: [0, 1]\n", ""),
        ("  dropout: {{model.head_dropout: 0.5}}\n", "  swap: {{model.backbone: resnet18}}\n"),
        ("  + Aug + Dropout: [aug, dropout]\n", "  + Swap: [swap]\n"),
    )
    + """seeds: {{initial: 3, max: 7, step: 2, stop: {{excludes_zero: true}}, futility: 0}}
tables:
  - name: table
    metric: top1
    rows: [ablation]
    split: []
"""
)
WOBBLE = (0.001, -0.002, 0.0015, -0.0005, 0.002, -0.001, 0.0005)
SEEDS = "seeds={initial: 3, max: 7, step: 2, stop: {excludes_zero: true}, futility: 0}"


def _finish(spec: SweepSpec, runs: list[RunSpec], shift: dict[str, float], fails: Callable[[RunSpec], bool]) -> None:
    """Complete every scheduled run not yet completed: 0.80 + the row's shift + a per-seed wobble."""
    for run in adaptive.scheduled(spec, runs, spec.output_path):
        if fails(run):
            fake_run(spec, run, None, state=State.FAILED)
        else:
            fake_run(spec, run, 0.80 + shift.get(run.ablation, 0.0) + WOBBLE[run.seed] * (run.ablation != "Baseline"))


def _rounds(spec: SweepSpec, shift: dict[str, float], fails: Callable[[RunSpec], bool] = lambda run: False) -> None:
    runs = plan(spec)
    for _ in range(len(spec.seeds.looks) if spec.seeds else 0):
        _finish(spec, runs, shift, fails)
        adaptive.advance(spec, runs, spec.output_path)


def _tiny(write_spec: Callable[..., Path], *overrides: str) -> SweepSpec:
    path = write_spec()
    path.write_text(path.read_text().replace("  seed: [0, 1]\n", ""))
    return load_spec(path, [SEEDS, *overrides])


def test_a_swapped_backbone_row_stops_on_the_comparison_its_table_shows(write_spec: Callable[..., Path]) -> None:
    # The shipped studies pool the backbone (`split: []`): the table compares "+ Swap" (resnet18) with the
    # resnet10t baseline; the rounds paired by the resolved backbone and never judged it.
    spec = load_spec(write_spec(SWAP_SPEC))
    cells = adaptive.layout(spec, plan(spec))
    assert cells.pairs["resnet18 / digits / + Swap"] == "resnet10t / digits / Baseline"
    _rounds(spec, {"+ Swap": 0.05})
    verdict = adaptive.read_state(spec.output_path)[-1]["verdicts"]["resnet18 / digits / + Swap"]
    assert (verdict["state"], verdict["n"], verdict["decision"]) == ("resolved", 3, "+")
    collect.write_tables(spec, spec.output_path)
    with (spec.output_path / "tables" / "table.csv").open() as handle:
        row = next(r for r in csv.DictReader(handle) if r["Ablation"] == "+ Swap")
    assert row["digits stop"] == adaptive.stop_text(verdict) and int(row["digits n"]) == verdict["n"]
    assert float(row["digits delta"]) == pytest.approx(verdict["delta"])  # the very comparison the rounds judged


def test_with_the_backbone_split_a_swapped_row_has_no_baseline_in_rounds_or_table(
    write_spec: Callable[..., Path],
) -> None:
    spec = load_spec(write_spec(SWAP_SPEC.replace("    split: []\n", "")))
    assert "resnet18 / digits / + Swap" not in adaptive.layout(spec, plan(spec)).pairs


def test_a_table_that_would_pool_two_cells_is_refused_before_any_round(write_spec: Callable[..., Path]) -> None:
    text = SWAP_SPEC.replace("[resnet10t]", "[resnet10t, resnet50]").replace("  + Swap: [swap]\n", "")
    spec = load_spec(write_spec(text))
    with pytest.raises(SpecError) as info:
        adaptive.scheduled(spec, plan(spec), spec.output_path)
    message = str(info.value)
    assert message.startswith(f"{spec.source}: tables.table: cells would pool backbone values (resnet10t, resnet50)")
    assert "\n" not in message


def test_two_runs_of_one_seed_in_one_cell_are_refused(write_spec: Callable[..., Path]) -> None:
    # Both grid backbones' "+ Swap" rows train resnet18, with different batch sizes: one table cell, two runs a seed.
    text = SWAP_SPEC.replace("[resnet10t]", "[resnet10t, resnet50]").replace("    split: []\n", "")
    text = text.replace("ablations:", "per_backbone:\n  resnet50: {{data.batch_size: 16}}\nablations:")
    spec = load_spec(write_spec(text))
    with pytest.raises(SpecError) as info:
        adaptive.layout(spec, plan(spec))
    assert str(info.value).startswith(f"{spec.source}: ablations.+ Swap: runs 'resnet18/digits/+swap/s0' and")
    assert "one run per seed" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"rounds": [{"schedule": [1, 2]}]}', "rounds[0].schedule"),
        ('{"rounds": [{"schedule": {"resnet10t / digits / Baseline": "5"}}]}', "rounds[0].schedule"),
        ('{"rounds": [{"verdicts": [], "schedule": {}}]}', "rounds[0].verdicts"),
        (
            '{"rounds": [{"verdicts": {"resnet10t / digits / + Aug": 5}}]}',
            "rounds[0].verdicts['resnet10t / digits / + Aug']",
        ),
        ('{"rounds": [{"verdicts": {"x": {"state": "open", "n": "3"}}}]}', "rounds[0].verdicts['x'].n"),
        ('{"rounds": [{"finished": "yes"}]}', "rounds[0].finished"),
        ('{"rounds": [{"round": 1, "sched', "unreadable"),
    ],
)
def test_a_hand_edited_adaptive_json_is_refused_in_one_line(
    write_spec: Callable[..., Path], text: str, field: str
) -> None:
    spec = _tiny(write_spec)
    spec.output_path.mkdir(parents=True)
    (spec.output_path / adaptive.ADAPTIVE_FILE).write_text(text)
    for call in (
        lambda: adaptive.scheduled(spec, plan(spec), spec.output_path),
        lambda: adaptive.history(spec.output_path),
        lambda: collect.write_tables(spec, spec.output_path),
    ):
        with pytest.raises(SpecError) as info:
            call()
        assert str(info.value).startswith(f"{spec.output_path / adaptive.ADAPTIVE_FILE}: ") and "\n" not in str(
            info.value
        )
        assert field in str(info.value)


@pytest.mark.parametrize(
    ("override", "label"),
    [
        ("seeds.max=5", "looks (seeds: initial, step, max) 3, 5, 7, the spec now gives 3, 5"),
        ("seeds.max=12", "looks (seeds: initial, step, max) 3, 5, 7, the spec now gives 3, 5, 7, 9, 11, 12"),
        ("seeds.stop={halfwidth: 0.5}", "seeds.stop 'interval excludes 0'"),
        ("seeds.futility=0.1", "seeds.futility 0"),
        ("tables=[{name: table, metric: macro_f1}]", "the deciding table's metric 'top1'"),
    ],
)
def test_a_seeds_block_changed_between_rounds_is_refused_before_the_next_round(
    write_spec: Callable[..., Path], override: str, label: str
) -> None:
    spec = _tiny(write_spec)
    runs = plan(spec)
    for _ in range(2):
        _finish(spec, runs, {"+ Aug": 0.05}, lambda run: False)
        adaptive.advance(spec, runs, spec.output_path)
    changed = _tiny(write_spec, override)
    with pytest.raises(SpecError) as info:
        adaptive.advance(changed, plan(changed), spec.output_path)
    assert f"adaptive.json: round 2 was decided with {label}" in str(info.value) and "\n" not in str(info.value)


def test_a_lower_max_never_takes_finished_seeds_out_of_the_schedule(write_spec: Callable[..., Path]) -> None:
    spec = _tiny(write_spec)
    _rounds(spec, {"+ Aug": 0.05})
    lower = _tiny(write_spec, "seeds.max=5")
    seeds = {run.seed for run in adaptive.scheduled(lower, plan(lower), spec.output_path)}
    assert seeds == {0, 1, 2, 3, 4}  # was {0, 1, 2}: every cell fell back to `initial`


def test_another_sweeps_adaptive_json_is_refused(write_spec: Callable[..., Path]) -> None:
    spec = _tiny(write_spec)
    _finish(spec, plan(spec), {}, lambda run: False)
    spec.output_path.joinpath(adaptive.ADAPTIVE_FILE).write_text(
        json.dumps({"rounds": [{"round": 1, "look": 3, "schedule": {"vit / cifar / Base": 5}, "verdicts": {}}]})
    )
    with pytest.raises(SpecError, match=r"round 1's schedule names none of this sweep's cells"):
        adaptive.advance(spec, plan(spec), spec.output_path)


def test_a_row_added_after_the_rounds_finished_gets_its_rounds(write_spec: Callable[..., Path]) -> None:
    spec = _tiny(write_spec, "ablations={Baseline: [], + Aug: [aug]}")
    _rounds(spec, {"+ Aug": 0.05})
    assert adaptive.read_state(spec.output_path)[-1]["finished"]
    grown = _tiny(write_spec)  # + Aug + Dropout added
    runs = plan(grown)
    _finish(grown, runs, {"+ Aug": 0.05}, lambda run: False)
    record = adaptive.advance(grown, runs, spec.output_path)
    assert record is not None and "resnet10t / digits / + Aug + Dropout" in record["verdicts"]


def test_a_baseline_that_fails_every_seed_adds_no_seeds(write_spec: Callable[..., Path]) -> None:
    spec = _tiny(write_spec)
    runs = plan(spec)
    _finish(spec, runs, {"+ Aug": 0.05}, lambda run: run.ablation == "Baseline")
    assert adaptive.advance(spec, runs, spec.output_path) is None  # nothing judged, nothing recorded
    assert not (spec.output_path / adaptive.ADAPTIVE_FILE).exists()
    assert {run.seed for run in adaptive.scheduled(spec, runs, spec.output_path)} == {0, 1, 2}


def test_a_failed_seed_in_the_middle_is_left_out_of_the_pairs_and_run_again(write_spec: Callable[..., Path]) -> None:
    spec = _tiny(write_spec)
    runs = plan(spec)
    _finish(spec, runs, {"+ Aug": 0.0}, lambda run: run.ablation == "Baseline" and run.seed == 1)
    record = adaptive.advance(spec, runs, spec.output_path)
    assert record is not None and record["verdicts"]["resnet10t / digits / + Aug"]["n"] == 2
    scheduled = {(run.ablation, run.seed) for run in adaptive.scheduled(spec, runs, spec.output_path)}
    assert ("Baseline", 1) in scheduled and ("Baseline", 4) in scheduled


def test_a_metric_no_run_reports_is_refused_after_its_first_round(write_spec: Callable[..., Path]) -> None:
    spec = _tiny(write_spec, "tables=[{name: table, metric: top5}]")
    runs = plan(spec)
    _finish(spec, runs, {}, lambda run: False)
    with pytest.raises(SpecError) as info:
        adaptive.advance(spec, runs, spec.output_path)
    assert str(info.value) == (
        f"{spec.source}: tables.table.metric: no completed run of round 1 reports test.top5 "
        "(the metric adaptive seeds decide on; seeds.table picks the table)"
    )


@pytest.mark.parametrize(("override", "looks"), [("seeds.initial=7", (7,)), ("seeds.step=9", (3, 7))])
def test_one_look_or_a_step_past_max_runs_its_looks(
    write_spec: Callable[..., Path], override: str, looks: tuple[int, ...]
) -> None:
    spec = _tiny(write_spec, override)
    assert spec.seeds is not None and spec.seeds.looks == looks
    _rounds(spec, {"+ Aug": 0.05})
    rounds = adaptive.read_state(spec.output_path)
    assert [r["look"] for r in rounds] == list(looks) and rounds[-1]["finished"]
