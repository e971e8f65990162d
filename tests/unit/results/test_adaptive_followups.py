"""Adaptive seeds, follow-ups: a row whose runs all fail, which table shows the stops, a deciding table
without deltas, and adaptive results reaching the CSV and the report with hostile input."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from rich.console import Console
from tables_fixture import fake_run

from orchestrator.launch.base import Launcher, Outcome
from orchestrator.launch.rounds import print_round, submit_rounds
from orchestrator.results import adaptive, collect
from orchestrator.store.run_states import RunRecord
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir
from trainers.rundir import State

SEEDS = "seeds={initial: 3, max: 7, step: 2, stop: {excludes_zero: true}, futility: 0}"
WOBBLE = (0.001, -0.002, 0.0015, -0.0005, 0.002, -0.001, 0.0005)
AUG, BOTH, BASE = (f"resnet10t / digits / {row}" for row in ("+ Aug", "+ Aug + Dropout", "Baseline"))


def _spec(write_spec: Callable[..., Path], *overrides: str) -> SweepSpec:
    path = write_spec()
    path.write_text(path.read_text().replace("  seed: [0, 1]\n", ""))
    return load_spec(path, [SEEDS, *overrides])


def _finish(spec: SweepSpec, run: RunSpec, fails: bool, shift: dict[str, float]) -> None:
    """One run as the trainer leaves it: failed with an exception (a user error to the retry policy), or
    completed with top-1 0.80 + the row's shift + a per-seed wobble."""
    if fails:
        path = fake_run(spec, run, None, state=State.FAILED)
        rundir.update_status(path, State.FAILED, error="RuntimeError: boom")
    else:
        fake_run(spec, run, 0.80 + shift.get(run.ablation, 0.0) + WOBBLE[run.seed] * (run.ablation != "Baseline"))


class _Launcher(Launcher):
    """A launcher of our own that 'runs' each selected run at once (fake_run): '+ Aug' always fails."""

    def __init__(self, spec: SweepSpec, console: Console, shift: dict[str, float]) -> None:
        super().__init__(spec, console)
        self.shift, self.starts = shift, 0

    def where(self, runs: Sequence[RunSpec] = ()) -> str:
        return "here"

    def start(self, todo: list[RunRecord], root: Path) -> Outcome:
        self.starts += 1
        outcome = Outcome()
        for record in todo:
            fails = record.run.ablation == "+ Aug"
            _finish(self.spec, record.run, fails, self.shift)
            if fails:
                outcome.failed.append((record.run, "boom"))
            else:
                outcome.completed.append(record.run)
        return outcome


def test_a_row_whose_runs_all_fail_adds_no_seeds_and_waits_while_they_may_run_again(
    write_spec: Callable[..., Path],
) -> None:
    spec = _spec(write_spec)
    runs, root = plan(spec), spec.output_path
    for run in adaptive.scheduled(spec, runs, root):
        _finish(spec, run, run.ablation == "+ Aug", {"+ Aug + Dropout": 0.05})
    record = adaptive.advance(spec, runs, root, lambda records: set())  # the retry policy runs them again
    assert record is not None and not record["finished"]
    verdict = record["verdicts"][AUG]
    assert (verdict["state"], verdict["n"], verdict["reason"]) == ("open", 0, adaptive.NO_PAIR)
    # was 5 and 5: the failing row and its baseline got seeds up to max, ending with n=0 pairs
    assert record["schedule"][AUG] == 3 and record["schedule"][BASE] == 3
    assert "waiting after round 1" in adaptive.stop_text(verdict)
    given_up = adaptive.advance(spec, runs, root, lambda records: {r.run.run_id for r in records})
    assert given_up is not None and given_up["finished"]
    assert (given_up["verdicts"][AUG]["state"], given_up["schedule"][AUG]) == ("failed", 3)
    assert adaptive.advance(spec, runs, root, lambda records: {r.run.run_id for r in records}) is None  # nothing new


def test_the_rounds_loop_stops_a_row_the_retry_policy_gave_up_on_and_says_so(write_spec: Callable[..., Path]) -> None:
    spec = _spec(write_spec)
    out = io.StringIO()
    launcher = _Launcher(spec, Console(file=out, width=300), {"+ Aug + Dropout": 0.05})
    submit_rounds(launcher, plan(spec), adaptive, dry_run=False, follow_s=None)
    last = adaptive.read_state(spec.output_path)[-1]
    assert last["finished"] and last["verdicts"][AUG]["state"] == "failed"
    assert last["schedule"][AUG] == 3 and last["schedule"][BASE] == 3  # no seeds spent on it
    assert launcher.starts == 1  # a user error is not retried: decided at once
    assert "1 failed (no finished run)" in out.getvalue() and "every delta has stopped" in out.getvalue()
    written = collect.write_tables(spec, spec.output_path, report=True)  # the report drew None as a number
    assert written.report_path is not None
    assert "+ Aug: failed: no seed finished" in written.markdown
    rows = list(csv.DictReader((spec.output_path / "tables" / "adaptive_rounds.csv").open()))
    assert [(r["cell"], r["state"], r["n"]) for r in rows if r["cell"] == AUG] == [(AUG, "failed", "0")]


def test_print_round_counts_futile_rows() -> None:
    out = io.StringIO()
    verdicts = {"a": {"state": "futile", "n": 5}, "b": {"state": "resolved", "n": 3}, "c": {"state": "open", "n": 0}}
    print_round(
        {"round": 2, "look": 5, "verdicts": verdicts, "schedule": {}, "finished": False}, Console(file=out, width=300)
    )
    assert "1 resolved, 0 stopped at max, 1 futile, 0 open, 1 waiting for failed runs" in out.getvalue()


TWO_TABLES = (
    "tables=[{name: main, metric: [top1, macro_f1], rows: [ablation]},"
    " {name: other, metric: macro_f1, rows: [dataset], columns: [ablation]}]"
)


def test_only_the_deciding_table_shows_the_stops_and_its_footnote_names_the_metric(
    write_spec: Callable[..., Path],
) -> None:
    spec = _spec(write_spec, TWO_TABLES)
    runs, root = plan(spec), spec.output_path
    for _ in range(3):
        for run in adaptive.scheduled(spec, runs, root):
            _finish(spec, run, False, {"+ Aug": 0.05})
        adaptive.advance(spec, runs, root)
    written = collect.write_tables(spec, root)
    other = (root / "tables" / "other.csv").read_text()
    assert " stop" not in other.splitlines()[0]  # was: the stops of top-1's deltas beside macro-F1's
    other_md = (root / "tables" / "other.md").read_text()
    assert "resolved at" not in other_md and "deltas of table 'main'" in other_md
    main = list(csv.DictReader((root / "tables" / "main.csv").open()))
    aug = {k: v for k, v in next(r for r in main if r["Ablation"] == "+ Aug").items() if k.endswith(" stop")}
    assert list(aug.values()) == ["resolved at 3 seeds (interval excludes 0)"]  # top-1's column only
    assert "until each top-1 (%) delta's sequential interval" in written.markdown


def test_a_deciding_table_without_deltas_is_refused_at_plan(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli.main import main

    spec = _spec(write_spec, "tables=[{name: main, metric: top1, delta: false}]")
    with pytest.raises(SpecError) as info:
        adaptive.scheduled(spec, plan(spec), spec.output_path)
    message = str(info.value)
    assert message.startswith(f"{spec.source}: tables.main.delta: false") and "\n" not in message
    assert "seeds.table" in message and "delta: true" in message
    args = ["plan", str(spec.source), SEEDS, "tables=[{name: main, metric: top1, delta: false}]", "--skip-data-check"]
    assert main(args) == 2
    assert "tables.main.delta: false" in capsys.readouterr().err


@pytest.mark.parametrize("field", ["delta", "low", "high"])
def test_a_verdict_number_edited_into_text_is_refused(write_spec: Callable[..., Path], field: str) -> None:
    spec = _spec(write_spec)
    spec.output_path.mkdir(parents=True)
    verdict = {"state": "max", "n": 7, "delta": 0.1, "low": -0.2, "high": 0.4, "round": 1, field: "0.1"}
    (spec.output_path / adaptive.ADAPTIVE_FILE).write_text(json.dumps({"rounds": [{"verdicts": {AUG: verdict}}]}))
    with pytest.raises(SpecError) as info:
        adaptive.history(spec.output_path)
    assert f"rounds[0].verdicts[{AUG!r}].{field}: not a number or null" in str(info.value)
