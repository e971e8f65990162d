"""Rounds of an adaptive-seeds sweep: which seeds are scheduled, and the decision after each round.

`plan` lists every seed up to `seeds.max`; the rounds decide how many of them each cell runs.
The decisions live in `<output_dir>/adaptive.json` (one record per round, written atomically):

    {"rounds": [{"round": 1, "look": 3, "family": 4, "rule": "...",
                 "verdicts": {"<cell>": {"n", "delta", "low", "high", "decision", "state", "reason", ...}},
                 "schedule": {"<cell>": seeds}}, ...]}

Round k's look judges every open comparison (an ablation cell against its baseline cell, as the
deciding table pairs them: the same table coordinates with the baseline row) on its paired seeds
with orchestrator/results/sequential.py,
Holm's step-down over the family (a comparison that stopped unresolved may still be rejected where
it stopped once others are); stopped comparisons (resolved, futile, max) keep their verdict
otherwise; open ones get the next look's seeds, their baseline cell as many as its longest open
row. Without adaptive.json, round 1 schedules `initial` seeds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.results import adaptive_state, reader, sequential
from orchestrator.results.labels import display, metric_column
from orchestrator.results.layout import cell_dims, table_key
from orchestrator.results.model import EXCLUDES_ZERO, Table
from orchestrator.results.sequential import Design, StopRule
from orchestrator.store import run_states
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec, TableSpec
from trainers import rundir
from trainers.rundir import State

if TYPE_CHECKING:
    import pandas as pd

    from orchestrator.results.outputs import Outputs

ADAPTIVE_FILE = "adaptive.json"
_FINAL = {State.COMPLETED, State.FAILED}
STOPPED = ("resolved", "futile", "max")
"""Verdict states that get no more seeds."""


def cell_of(run: RunSpec) -> str:
    """A run's cell as adaptive.json names it: `backbone / dataset / axis=value / ablation`."""
    axes = [f"{key}={display(value)}" for key, value in run.axes.items()]
    return " / ".join([display(run.backbone), display(run.dataset), *axes, run.ablation])


@dataclass(frozen=True)
class Layout:
    """The cells of an adaptive sweep: runs by seed, and each ablation cell's baseline cell."""

    cells: dict[str, dict[int, RunSpec]]
    pairs: dict[str, str]
    """Ablation cell -> its baseline cell (the family of comparisons)."""
    facts: dict[str, dict[str, Any]]
    """Cell -> backbone, dataset, axes, ablation (display strings), to match table cells."""


def layout(spec: SweepSpec, runs: list[RunSpec]) -> Layout:
    """Group planned runs into cells and pair every ablation cell with its baseline cell as the deciding
    table pairs them (`rule_table`): the same table coordinates with ablation := the baseline row.

    A row that swaps the backbone (`model.backbone: vit_...`) is a cell of its resolved backbone; where the
    table pools the backbone (`split: []`) it is compared with the baseline of its other coordinates, as the
    table compares it. SpecError when the table would pool two cells (or two runs of one seed) in one cell:
    the rounds and the table would then judge different comparisons."""
    baseline = next(iter(spec.ablations))
    table = rule_table(spec)
    dims = cell_dims(table, spec, f"{spec.source}: tables.{table.name}")
    cells: dict[str, dict[int, RunSpec]] = {}
    facts: dict[str, dict[str, Any]] = {}
    for run in runs:
        key = cell_of(run)
        seeds = cells.setdefault(key, {})
        if run.seed in seeds and seeds[run.seed].run_id != run.run_id:
            raise SpecError(
                f"{spec.source}: ablations.{run.ablation}: runs {seeds[run.seed].name!r} and {run.name!r} are one "
                f"cell ({key}) with the same seed; adaptive seeds pair one run per seed: give them their own rows"
            )
        seeds[run.seed] = run
        axes = {axis: display(value) for axis, value in run.axes.items()}
        facts[key] = {"backbone": display(run.backbone), "dataset": display(run.dataset), "axes": axes}
        facts[key]["ablation"] = run.ablation
    by_table = _table_cells(spec, table, dims, facts)
    if "ablation" not in dims:  # one ablation row (more would pool): nothing to compare
        return Layout(cells, {}, facts)
    at = dims.index("ablation")
    pairs = {}
    for key, tkey in ((k, table_key(facts[k], dims)) for k in cells if facts[k]["ablation"] != baseline):
        base = by_table.get((*tkey[:at], baseline, *tkey[at + 1 :]))
        if base is not None:
            pairs[key] = base
    return Layout(cells, pairs, facts)


def _new_rows(cells: Layout, last: dict[str, Any]) -> bool:
    """Whether a comparison has no stopped verdict in the last round (a row added to the spec since)."""
    verdicts = last.get("verdicts", {})
    return any(verdicts.get(key, {}).get("state") not in STOPPED for key in cells.pairs)


def _design_facts(spec: SweepSpec, rule: Design) -> dict[str, Any]:
    """What adaptive.json records of the design (compared between rounds: adaptive_state.check_design)."""
    table = rule_table(spec)
    metric = table.metrics[0]
    return {
        "looks": list(rule.seeds),
        "rule": rule.rule.describe(),
        "futility": rule.futility,
        "metric": metric,
        "scale": table.scale_of(metric),
    }


def _require_values(spec: SweepSpec, records: list[run_states.RunRecord], found: dict[str, Any], k: int) -> None:
    """SpecError when completed runs exist but none reports the deciding metric: no round could ever judge."""
    if found or not any(record.state is State.COMPLETED for record in records):
        return
    table = rule_table(spec)
    raise SpecError(
        f"{spec.source}: tables.{table.name}.metric: no completed run of round {k} reports "
        f"{metric_column(table.metrics[0])} (the metric adaptive seeds decide on; seeds.table picks the table)"
    )


def _table_cells(
    spec: SweepSpec, table: TableSpec, dims: list[str], facts: dict[str, dict[str, Any]]
) -> dict[tuple[str, ...], str]:
    """Table coordinates -> the cell there; SpecError where two cells would share one table cell."""
    out: dict[tuple[str, ...], str] = {}
    for key, fact in facts.items():
        other = out.setdefault(table_key(fact, dims), key)
        if other != key:
            mine, theirs = _flat(fact), _flat(facts[other])
            dim = next(d for d in mine if mine[d] != theirs.get(d))
            raise SpecError(
                f"{spec.source}: tables.{table.name}: cells would pool {dim} values ({theirs[dim]}, {mine[dim]}); "
                f"put {dim!r} in the table's rows, columns, group or split (adaptive seeds pair the table's cells)"
            )
    return out


def _flat(fact: dict[str, Any]) -> dict[str, str]:
    return {**{k: str(v) for k, v in fact.items() if k != "axes"}, **{k: str(v) for k, v in fact["axes"].items()}}


def rule_table(spec: SweepSpec) -> TableSpec:
    """The table whose first metric and scale the rule reads (and whose cells it pairs)."""
    name = spec.seeds.table if spec.seeds is not None else None
    return next((t for t in spec.tables if t.name == name), spec.tables[0]) if name else spec.tables[0]


def design(spec: SweepSpec, family: int) -> Design:
    """The sequential design of the spec's `seeds:` block over `family` comparisons."""
    assert spec.seeds is not None
    stop = spec.seeds.stop
    rule = StopRule(stop.kind, stop.value)  # type: ignore[arg-type]
    return Design(spec.seeds.looks, rule, max(1, family), futility=spec.seeds.futility)


def read_state(root: Path) -> list[dict[str, Any]]:
    """The rounds decided so far (none without adaptive.json); SpecError when the file is unreadable:
    the schedule cannot be guessed, and finished runs stay where they are."""
    path = root / ADAPTIVE_FILE
    if not path.exists():
        return []
    data, problem = run_states.read_object(path)
    rounds = data.get("rounds") if data is not None else None
    if problem is not None or not isinstance(rounds, list) or not all(isinstance(r, dict) for r in rounds):
        raise SpecError(f"{path}: unreadable ({problem or 'no rounds list'}); {adaptive_state.RESTART}")
    adaptive_state.check_shape(path, rounds)
    return rounds


def schedule_of(spec: SweepSpec, cells: dict[str, dict[int, RunSpec]], rounds: list[dict[str, Any]]) -> dict[str, int]:
    """Seeds scheduled per cell: the last round's schedule (at most `max`), or `initial` before round 1 and
    for a cell the rounds have not seen (a row added since)."""
    assert spec.seeds is not None
    last = rounds[-1].get("schedule", {}) if rounds else {}
    out = {}
    for key in cells:
        seeds = last.get(key, spec.seeds.initial)
        # never back to `initial`: a cell that ran 9 seeds keeps them when max is read lower (read_state checks
        # the shape; advance refuses a changed design before deciding anything)
        out[key] = min(seeds, spec.seeds.max) if isinstance(seeds, int) and seeds > 0 else spec.seeds.initial
    return out


def scheduled(spec: SweepSpec, runs: list[RunSpec], root: Path) -> list[RunSpec]:
    """The runs scheduled so far, in plan order (all runs for a sweep without adaptive seeds)."""
    if spec.seeds is None:
        return runs
    cells = layout(spec, runs).cells
    schedule = schedule_of(spec, cells, read_state(root))
    return [run for run in runs if run.seed < schedule[cell_of(run)]]


def stopped(spec: SweepSpec, root: Path) -> dict[str, dict[str, Any]]:
    """Cell -> its latest verdict (with the cell's facts), for tables; empty without adaptive seeds."""
    if spec.seeds is None or not (root / ADAPTIVE_FILE).exists():
        return {}
    rounds = read_state(root)
    return dict(rounds[-1].get("verdicts", {})) if rounds else {}


def values(table: TableSpec, records: list[run_states.RunRecord]) -> dict[str, dict[int, float]]:
    """Cell -> seed -> the table's first metric (times its scale) of every completed run with a number."""
    column = metric_column(table.metrics[0])
    out: dict[str, dict[int, float]] = {}
    for record in records:
        if record.state is not State.COMPLETED:
            continue
        row, _ = reader.read_run(record.path, record.run)
        value = row.get(column)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.setdefault(cell_of(record.run), {})[record.run.seed] = float(value) * table.scale_of(table.metrics[0])
    return out


def advance(spec: SweepSpec, runs: list[RunSpec], root: Path) -> dict[str, Any] | None:
    """Decide the current round once every scheduled run has finished (completed or failed) and record
    it in adaptive.json; None when runs are still to finish, or every comparison already stopped."""
    assert spec.seeds is not None
    cells = layout(spec, runs)
    rounds = read_state(root)
    rule = design(spec, len(cells.pairs))
    adaptive_state.check_design(root / ADAPTIVE_FILE, rounds, _design_facts(spec, rule), set(cells.cells))
    if rounds and rounds[-1].get("finished") and not _new_rows(cells, rounds[-1]):
        return None
    schedule = schedule_of(spec, cells.cells, rounds)
    records = run_states.inspect([r for r in runs if r.seed < schedule[cell_of(r)]], root)
    if any(record.state not in _FINAL for record in records):
        return None
    found = values(rule_table(spec), records)
    _require_values(spec, records, found, len(rounds) + 1)
    if any(not found.get(base) for base in cells.pairs.values()):
        return None  # a baseline cell with no value judges nothing: its failed runs run again, no seeds added
    look = min(len(rounds), len(rule.seeds) - 1)
    before = rounds[-1].get("verdicts", {}) if rounds else {}
    carried = {k: v for k, v in before.items() if k in cells.pairs and v.get("state") in STOPPED}

    def diffs(key: str, seeds: int) -> list[float]:
        ours, theirs = found.get(key, {}), found.get(cells.pairs[key], {})
        return [ours[s] - theirs[s] for s in range(seeds) if s in ours and s in theirs]

    stopped = {}
    for key, verdict in carried.items():
        if verdict.get("decision") == "0":  # Holm: a larger level may reject it where it stopped
            at = _look_of(verdict, len(rule.seeds))
            stopped[key] = (diffs(key, rule.seeds[at]), at)
    judged = {key: diffs(key, schedule[key]) for key in cells.pairs if key not in carried}
    rejected = sum(1 for v in carried.values() if v.get("decision") in ("+", "-"))
    new = sequential.decide(rule, judged, look, stopped, rejected)
    verdicts = {
        key: {**new[key].as_dict(), "round": len(rounds) + 1, **cells.facts[key]} if key in new else carried[key]
        for key in cells.pairs
    }
    record = _record(spec, cells, schedule, verdicts, len(rounds), rule)
    rundir.write_json(root / ADAPTIVE_FILE, {"rounds": [*rounds, record]})
    return record


def _look_of(verdict: dict[str, Any], looks: int) -> int:
    """The planned look a stored verdict was judged at (adaptive.json before 'look' was stored: its round)."""
    look = verdict.get("look")
    if not isinstance(look, int) or isinstance(look, bool):
        look = int(verdict.get("round", 1)) - 1 if isinstance(verdict.get("round"), int) else looks - 1
    return max(0, min(look, looks - 1))


def _record(
    spec: SweepSpec, cells: Layout, schedule: dict[str, int], verdicts: dict[str, Any], done: int, rule: Design
) -> dict[str, Any]:
    """One round: its verdicts and the next schedule (open rows: the next look; baselines: their longest row)."""
    nxt = dict(schedule)
    following = rule.seeds[min(done + 1, len(rule.seeds) - 1)]
    for key, verdict in verdicts.items():
        if verdict["state"] == "open":
            nxt[key] = max(schedule[key], following)
    for base in set(cells.pairs.values()):
        nxt[base] = max([schedule[base], *(nxt[k] for k, b in cells.pairs.items() if b == base)])
    finished = all(v["state"] != "open" for v in verdicts.values())
    return {
        "round": done + 1,
        "look": rule.seeds[min(done, len(rule.seeds) - 1)],
        "family": rule.family,
        **_design_facts(spec, rule),
        "at": time.time(),
        "verdicts": verdicts,
        "schedule": nxt,
        "finished": finished,
    }


def history(root: Path) -> list[dict[str, Any]]:
    """One row per (round, comparison): how each delta's interval narrowed round by round."""
    rows = []
    for entry in read_state(root):
        for key, verdict in entry.get("verdicts", {}).items():
            if verdict.get("round") == entry.get("round"):  # judged in this round, not carried over
                rows.append(
                    {
                        "round": entry.get("round"),
                        "cell": key,
                        **{k: verdict.get(k) for k in ("n", "delta", "low", "high", "decision", "state", "reason")},
                    }
                )
    return rows


STOP_COLUMN = "adaptive.stop"
"""Column of the joined frame: how the run's cell stopped (its table cell's `stop`)."""


def annotate(joined: pd.DataFrame, spec: SweepSpec, root: Path) -> pd.DataFrame:
    """`joined` with STOP_COLUMN per run (its cell's stop text; 'baseline' for baseline cells), for an
    adaptive sweep with decided rounds; unchanged otherwise."""
    verdicts = stopped(spec, root)
    if not verdicts:
        return joined
    baseline = next(iter(spec.ablations))
    axes = [axis for axis in spec.grid if axis not in ("backbone", "dataset", "seed")]

    def stop(backbone: Any, dataset: Any, ablation: Any, *axis_values: Any) -> str | None:
        if ablation == baseline:
            return "baseline"
        parts = [str(backbone), str(dataset), *(f"{a}={v}" for a, v in zip(axes, axis_values, strict=True))]
        verdict = verdicts.get(" / ".join([*parts, str(ablation)]))
        return stop_text(verdict) if isinstance(verdict, dict) else None

    columns = [joined[c] for c in ("backbone", "dataset", "ablation", *axes)]
    out = joined.copy()
    out[STOP_COLUMN] = [stop(*values) for values in zip(*columns, strict=True)]
    return out


def stop_text(verdict: dict[str, Any]) -> str:
    """`resolved at 5 seeds (interval excludes 0)`, `stopped at max (12 seeds)`, `open after round 2`."""
    n, state = verdict.get("n"), verdict.get("state")
    reasons = {
        "excludes_zero": EXCLUDES_ZERO,
        "narrow": "interval narrow enough",
        "within_margin": "interval within the margin",
    }
    if state == "resolved":
        return f"resolved at {n} seeds ({reasons.get(str(verdict.get('reason')), 'resolved')})"
    if state == "max":
        return f"stopped at max ({n} seeds)"
    if state == "futile":
        return f"stopped at {n} seeds (futile: unlikely to exclude 0 by max)"
    return f"open after round {verdict.get('round')} ({n} seeds)"


def stop_notes(table: Table) -> list[str]:
    """The footnote of an adaptive table: how every delta's cell stopped (none for a fixed grid)."""
    found = [
        (row.label, column, cell.stop)
        for row in table.rows
        for column, cell in zip(table.columns, row.cells, strict=False)
        if cell.stop is not None and cell.stop != "baseline"
    ]
    several = len({column for _, column, _ in found}) > 1
    stops = [f"{label}{f' ({column})' if several else ''}: {stop}" for label, column, stop in found]
    if not stops:
        return []
    return [
        "Adaptive seeds (adaptive.json): seeds were added round by round until each delta's sequential interval "
        "(alpha spent over the looks, Holm over the deltas) met the stop rule or it was unlikely to by max "
        "(futile); the ± intervals above are the usual fixed-seed ones. " + "; ".join(stops) + "."
    ]


def write_rounds(spec: SweepSpec, root: Path, outputs: Outputs) -> list[Path]:
    """tables/adaptive_rounds.csv: every comparison's interval at every round it was judged (none for a fixed grid)."""
    import pandas as pd

    if spec.seeds is None or not (root / ADAPTIVE_FILE).exists():
        return []
    path = outputs.folder("tables") / "adaptive_rounds.csv"
    outputs.write_text(path, pd.DataFrame(history(root)).to_csv(index=False))
    return [path]
