"""Adaptive seeds: the `seeds:` spec block, the round planner (adaptive.json) and the tables' stop column."""

from __future__ import annotations

import re
import statistics as stats
from collections.abc import Callable
from pathlib import Path

import pytest
from tables_fixture import fake_run

from orchestrator.results import adaptive, collect
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec

SEEDS = {"initial": 3, "max": 7, "step": 2, "stop": {"excludes_zero": True}}


def _adaptive(write_spec: Callable[..., Path], **seeds: object) -> SweepSpec:
    path = write_spec()
    text = path.read_text().replace("  seed: [0, 1]\n", "")
    path.write_text(text)
    return load_spec(path, [f"seeds={ {**SEEDS, **seeds} }".replace("'", "")])


def test_seed_runs_have_the_ids_of_the_fixed_grid(write_spec: Callable[..., Path]) -> None:
    spec = _adaptive(write_spec)
    fixed = load_spec(write_spec(), ["grid.seed=[0,1,2,3,4,5,6]"])
    ours, theirs = plan(spec), plan(fixed)
    assert [(r.run_id, r.name) for r in ours] == [(r.run_id, r.name) for r in theirs]
    assert len(ours) == 3 * 7
    assert spec.seeds is not None and spec.seeds.looks == (3, 5, 7)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seeds.stop={}", "seeds.stop: name exactly one stop rule"),
        ("seeds.stop={halfwidth: 0.3, margin: 1}", "seeds.stop: name exactly one stop rule"),
        ("seeds.stop={halfwidth: -1}", "seeds.stop.halfwidth: Input should be greater than 0"),
        ("seeds.initial=9", "seeds: initial (9) must not exceed max (7)"),
        ("seeds.initial=1", "seeds.initial: Input should be greater than or equal to 2"),
        ("seeds.table=nope", "seeds.table: 'nope' is not a table of the spec (table)"),
        ("seeds.stepp=2", "seeds.stepp: unknown key"),
    ],
)
def test_bad_seeds_blocks_are_one_line_errors(write_spec: Callable[..., Path], override: str, message: str) -> None:
    path = write_spec()
    path.write_text(path.read_text().replace("  seed: [0, 1]\n", ""))
    with pytest.raises(SpecError) as info:
        load_spec(path, [f"seeds={SEEDS}".replace("'", ""), override])
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(str(path))


def test_seeds_and_a_seed_axis_are_exclusive(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match=r"seeds: adaptive seeds replace grid.seed; remove one of them"):
        load_spec(write_spec(), [f"seeds={SEEDS}".replace("'", "")])


def _finish(spec: SweepSpec, runs: list[RunSpec], shift: dict[str, float]) -> None:
    """Complete every scheduled run: top-1 = 0.80 + the row's shift + a small per-seed wobble."""
    root = spec.output_path
    for run in adaptive.scheduled(spec, runs, root):
        wobble = (0.001, -0.002, 0.0015, -0.0005, 0.002, -0.001, 0.0005)[run.seed]
        fake_run(spec, run, 0.80 + shift.get(run.ablation, 0.0) + wobble * (run.ablation != "Baseline"))


def test_rounds_stop_a_clear_gain_and_give_a_null_row_seeds_up_to_max(write_spec: Callable[..., Path]) -> None:
    spec = _adaptive(write_spec, futility=0)  # no futility stop: the null row runs to max
    runs, root = plan(spec), spec.output_path
    assert {r.seed for r in adaptive.scheduled(spec, runs, root)} == {0, 1, 2}
    assert adaptive.advance(spec, runs, root) is None  # nothing has run yet
    shift = {"+ Aug": 0.05, "+ Aug + Dropout": 0.0}
    _finish(spec, runs, shift)
    first = adaptive.advance(spec, runs, root)
    assert first is not None and first["round"] == 1 and first["look"] == 3 and first["family"] == 2
    aug, both = (first["verdicts"][f"resnet10t / digits / {row}"] for row in ("+ Aug", "+ Aug + Dropout"))
    assert (aug["state"], aug["reason"], aug["decision"], aug["n"]) == ("resolved", "excludes_zero", "+", 3)
    assert both["state"] == "open"
    assert first["schedule"]["resnet10t / digits / + Aug"] == 3
    assert first["schedule"]["resnet10t / digits / + Aug + Dropout"] == 5
    assert first["schedule"]["resnet10t / digits / Baseline"] == 5  # the open row's pair
    assert adaptive.advance(spec, runs, root) is None  # round 2's runs have not run
    for _ in range(2):
        _finish(spec, runs, shift)
        assert adaptive.advance(spec, runs, root) is not None
    rounds = adaptive.read_state(root)
    assert [r["look"] for r in rounds] == [3, 5, 7] and rounds[-1]["finished"]
    last = rounds[-1]["verdicts"]["resnet10t / digits / + Aug + Dropout"]
    assert (last["state"], last["n"]) == ("max", 7)
    assert rounds[-1]["verdicts"]["resnet10t / digits / + Aug"]["round"] == 1  # carried, not re-judged
    assert adaptive.advance(spec, runs, root) is None
    assert len(adaptive.scheduled(spec, runs, root)) == 7 + 3 + 7
    history = adaptive.history(root)
    assert [(h["round"], h["n"]) for h in history if h["cell"].endswith("Dropout")] == [(1, 3), (2, 5), (3, 7)]


def test_tables_say_how_each_cell_stopped(write_spec: Callable[..., Path]) -> None:
    spec = _adaptive(write_spec, futility=0)
    runs, root = plan(spec), spec.output_path
    for _ in range(3):
        _finish(spec, runs, {"+ Aug": 0.05})
        adaptive.advance(spec, runs, root)
    written = collect.write_tables(spec, root, report=True)
    csv_text = (root / "tables" / "table.csv").read_text()
    rounds = (root / "tables" / "adaptive_rounds.csv").read_text().splitlines()
    assert rounds[0].startswith("round,cell,n,delta,low,high") and len(rounds) == 1 + 2 + 1 + 1  # 2, then 1, 1
    assert written.report_path is not None and "adaptive-rounds.png" in written.report_path.read_text()
    assert "resolved at 3 seeds (interval excludes 0)" in csv_text
    assert "stopped at max (7 seeds)" in csv_text
    assert "digits stop" in csv_text.splitlines()[0]
    assert "Adaptive seeds" in written.markdown and "+ Aug: resolved at 3 seeds" in written.markdown
    assert "3/7 seeds" not in written.markdown  # a stopped cell is not short of seeds


def test_a_null_row_stops_as_futile_and_its_baseline_with_it(write_spec: Callable[..., Path]) -> None:
    spec = _adaptive(write_spec)  # default futility 0.05; looks at 3, 5, 7 seeds
    runs, root = plan(spec), spec.output_path
    for _ in range(2):
        _finish(spec, runs, {"+ Aug": 0.05})
        adaptive.advance(spec, runs, root)
    rounds = adaptive.read_state(root)
    null = rounds[-1]["verdicts"]["resnet10t / digits / + Aug + Dropout"]
    assert (null["state"], null["reason"], null["decision"], null["n"], null["look"]) == ("futile", "futile", "0", 5, 1)
    assert rounds[-1]["finished"] and rounds[-1]["futility"] == 0.05
    assert rounds[-1]["schedule"]["resnet10t / digits / Baseline"] == 5  # nothing more for the pair
    written = collect.write_tables(spec, root)
    assert "+ Aug + Dropout: stopped at 5 seeds (futile: unlikely to exclude 0 by max)" in written.markdown
    assert "Holm over the deltas" in written.markdown


def test_a_verdict_without_its_look_falls_back_on_its_round() -> None:
    # adaptive.json written before verdicts stored their look: round k was judged at look k - 1
    assert adaptive._look_of({"round": 3}, 6) == 2
    assert adaptive._look_of({"look": 4, "round": 1}, 6) == 4
    assert adaptive._look_of({"look": 9}, 6) == adaptive._look_of({}, 6) == 5
    assert adaptive._look_of({"look": True, "round": "x"}, 6) == 5


def test_an_unreadable_adaptive_json_stops_the_rounds(write_spec: Callable[..., Path]) -> None:
    spec = _adaptive(write_spec)
    root = spec.output_path
    root.mkdir(parents=True)
    (root / adaptive.ADAPTIVE_FILE).write_text("{not json")
    with pytest.raises(SpecError, match=r"adaptive.json: unreadable"):
        adaptive.scheduled(spec, plan(spec), root)


SITE = """
throughput:
  - {backbone: resnet10t, image_size_px: 16, images_per_s: 1000, device: NVIDIA H100}
seed_sd:
  - {backbone: resnet10t, dataset: digits, sd: 0.5}
"""


def test_plan_shows_minimum_expected_and_maximum_hours(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli.main import main

    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    path = write_spec()
    path.write_text(path.read_text().replace("  seed: [0, 1]\n", ""))
    seeds = "seeds={initial: 3, max: 7, step: 2, stop: {halfwidth: 0.5}}"
    assert main(["plan", str(path), seeds, f"site={site}", "--detect", "1.0", "--skip-data-check"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("GPU-hours: minimum"))
    low, high = (float(line.split(word)[1].split()[0].rstrip(";,")) for word in ("minimum", "maximum"))
    assert high == pytest.approx(low * 7 / 3, rel=1e-2)  # every cell at max against every cell at initial
    expected = float(line.split("expected")[1].split()[0])
    assert low < expected < high and "site-declared sd 0.5" in line
    # sd of differences sqrt(2) x 0.5: a paired t-test needs 7 seeds (noncentral t) for 1.0 at 80% power
    detect = next(x for x in out.splitlines() if re.match(r"[\s│]*resnet10t[\s│]+digits[\s│]", x))
    assert "0.707" in detect and " 7 " in detect and "GPU-hours" in detect and "site-declared sd 0.5" in detect


def test_a_finished_sweep_gives_the_pooled_sd_of_paired_differences(write_spec: Callable[..., Path]) -> None:
    from orchestrator.results import power

    spec = load_spec(write_spec(), ["grid.seed=[0,1,2]"])
    diffs = {"+ Aug": [0.01, 0.03, 0.02], "+ Aug + Dropout": [0.0, -0.02, 0.02]}
    for run in plan(spec):
        fake_run(spec, run, 0.8 + 0.01 * run.seed + (diffs[run.ablation][run.seed] if run.ablation in diffs else 0))
    found = power.spreads(spec, spec.tables[0], None)
    sds = [stats.stdev(100 * d for d in values) for values in diffs.values()]  # points
    assert found[("resnet10t", "digits")].sd == pytest.approx(((sds[0] ** 2 + sds[1] ** 2) / 2) ** 0.5)
    assert found[("resnet10t", "digits")].source.startswith("pilot round in")


def test_dry_run_decides_nothing_and_force_is_refused(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli.main import main

    spec = _adaptive(write_spec)
    _finish(spec, plan(spec), {"+ Aug": 0.05})  # round 1 has run
    path, seeds = str(spec.source), f"seeds={SEEDS}".replace("'", "")
    assert main(["submit", path, seeds, "--dry-run", "--executor", "local", "--skip-data-check"]) == 0
    assert not (spec.output_path / adaptive.ADAPTIVE_FILE).exists()
    assert "9 completed" in capsys.readouterr().out  # round 1's runs, nothing decided or added
    assert main(["submit", path, seeds, "--force", "--executor", "local", "--skip-data-check"]) == 2
    assert "--force with adaptive seeds" in capsys.readouterr().err
