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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.results import adaptive_state, reader, sequential
from orchestrator.results.adaptive_pairs import Layout as Layout  # re-exported: the rounds' pairing lives there
from orchestrator.results.adaptive_pairs import cell_of as cell_of
from orchestrator.results.adaptive_pairs import layout as layout
from orchestrator.results.adaptive_pairs import rule_table as rule_table
from orchestrator.results.labels import metric_column, metric_label
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
"""Verdict states that get no more seeds and are carried from round to round ('failed' is looked at
again each round: its runs may yet finish, after a fix and `submit --retry-all`)."""


def _new_rows(cells: Layout, last: dict[str, Any]) -> bool:
    """Whether a comparison has no stopped verdict in the last round (a row added to the spec since, or one
    that failed: its runs may have finished since)."""
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


Settled = Callable[[list[run_states.RunRecord]], set[str]]
"""Of the failed runs given, the ids the retry policy will not run again (orchestrator/launch/rounds.py)."""
NO_PAIR = "no_pair"
"""Verdict reason of a comparison with no seed finished on both sides: 'open' while its failed runs may run
again (no seeds added), 'failed' once the retry policy gave up on them."""


def advance(spec: SweepSpec, runs: list[RunSpec], root: Path, settled: Settled | None = None) -> dict[str, Any] | None:
    """Decide the current round once every scheduled run has finished (completed or failed) and record
    it in adaptive.json; None when runs are still to finish, a baseline cell has no value, or nothing is
    left to decide. `settled`: which failed runs will not run again (None: any may)."""
    assert spec.seeds is not None
    cells = layout(spec, runs)
    rounds = read_state(root)
    rule = design(spec, len(cells.pairs))
    adaptive_state.check_design(root / ADAPTIVE_FILE, rounds, _design_facts(spec, rule), set(cells.cells))
    last = rounds[-1] if rounds else {}
    if last.get("finished") and not _new_rows(cells, last):
        return None
    schedule = schedule_of(spec, cells.cells, rounds)
    records = run_states.inspect([r for r in runs if r.seed < schedule[cell_of(r)]], root)
    if any(record.state not in _FINAL for record in records):
        return None
    found = values(rule_table(spec), records)
    _require_values(spec, records, found, len(rounds) + 1)
    if any(not found.get(base) for base in cells.pairs.values()):
        return None  # a baseline cell with no value judges nothing: its failed runs run again, no seeds added
    before = last.get("verdicts", {})
    carried = {k: v for k, v in before.items() if k in cells.pairs and v.get("state") in STOPPED}
    unpaired = [k for k in cells.pairs if k not in carried and not _diffs(cells, found, k, schedule[k])]
    waiting = _unpaired_verdicts(cells, records, schedule, unpaired, settled)
    again = all(before.get(k, {}).get("state") == state == "failed" for k, state in waiting.items())
    if last.get("finished") and len(unpaired) == len(cells.pairs) - len(carried) and again:
        return None  # rows that failed for good, and nothing new: no round to record
    verdicts = _judge(cells, found, schedule, carried, rule, len(rounds))
    look = min(len(rounds), len(rule.seeds) - 1)
    for key, state in waiting.items():
        verdicts[key] = {**_no_pair(state, look), "round": len(rounds) + 1, **cells.facts[key]}
    record = _record(spec, cells, schedule, {k: verdicts[k] for k in cells.pairs}, len(rounds), rule)
    rundir.write_json(root / ADAPTIVE_FILE, {"rounds": [*rounds, record]})
    return record


def _diffs(cells: Layout, found: dict[str, dict[int, float]], key: str, seeds: int) -> list[float]:
    """The comparison's paired differences over its first `seeds` seeds (those finished on both sides)."""
    ours, theirs = found.get(key, {}), found.get(cells.pairs[key], {})
    return [ours[s] - theirs[s] for s in range(seeds) if s in ours and s in theirs]


def _judge(
    cells: Layout,
    found: dict[str, dict[int, float]],
    schedule: dict[str, int],
    carried: dict[str, dict[str, Any]],
    rule: Design,
    done: int,
) -> dict[str, dict[str, Any]]:
    """The verdicts of the comparisons with pairs (sequential.decide, Holm over the family), the stopped
    ones carried (or re-judged where they stopped, when Holm's larger level now rejects them)."""
    stopped = {}
    for key, verdict in carried.items():
        if verdict.get("decision") == "0":  # Holm: a larger level may reject it where it stopped
            at = _look_of(verdict, len(rule.seeds))
            stopped[key] = (_diffs(cells, found, key, rule.seeds[at]), at)
    judged = {key: _diffs(cells, found, key, schedule[key]) for key in cells.pairs if key not in carried}
    rejected = sum(1 for v in carried.values() if v.get("decision") in ("+", "-"))
    new = sequential.decide(
        rule, {k: d for k, d in judged.items() if d}, min(done, len(rule.seeds) - 1), stopped, rejected
    )
    out = dict(carried)
    out.update({key: {**verdict.as_dict(), "round": done + 1, **cells.facts[key]} for key, verdict in new.items()})
    return out


def _unpaired_verdicts(
    cells: Layout,
    records: list[run_states.RunRecord],
    schedule: dict[str, int],
    keys: list[str],
    settled: Settled | None,
) -> dict[str, str]:
    """Comparison -> 'failed' where no seed finished on both sides and the retry policy gave up on every
    failed run that could pair it (or none failed: it completed without the metric), else 'open' (waiting)."""
    failed = [r for r in records if r.state is State.FAILED]
    mine = {
        key: [r for r in failed if cell_of(r.run) in (key, cells.pairs[key]) and r.run.seed < schedule[key]]
        for key in keys
    }
    asked = list({r.run.run_id: r for rs in mine.values() for r in rs}.values())
    gave_up = settled(asked) if settled is not None and asked else set()
    return {key: "failed" if all(r.run.run_id in gave_up for r in rs) else "open" for key, rs in mine.items()}


def _no_pair(state: str, look: int) -> dict[str, Any]:
    """The verdict of a comparison without a pair: nothing judged, no seeds added."""
    empty = {"n": 0, "delta": None, "low": None, "high": None, "decision": "0", "alpha": None}
    return {**empty, "state": state, "reason": NO_PAIR, "look": look}


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
        if verdict["state"] == "open" and verdict.get("reason") != NO_PAIR:  # waiting rows: no seeds added
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


def history(root: Path, drawn: bool = True) -> list[dict[str, Any]]:
    """One row per (round, comparison): how each delta's interval narrowed round by round. `drawn`: only the
    rows with a delta (the report's figure); else also the comparisons with no pair that round."""
    rows = []
    for entry in read_state(root):
        for key, verdict in entry.get("verdicts", {}).items():
            if verdict.get("round") != entry.get("round"):
                continue  # carried over, not judged in this round
            if drawn and not _number(verdict.get("delta")):
                continue  # no pair: nothing to draw (the figure read None as a number)
            fields = ("n", "delta", "low", "high", "decision", "state", "reason")
            rows.append({"round": entry.get("round"), "cell": key, **{k: verdict.get(k) for k in fields}})
    return rows


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
    """`resolved at 5 seeds (interval excludes 0)`, `stopped at max (12 seeds)`, `open after round 2 (5 seeds)`,
    `failed: ...` (no pair, retries given up)."""
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
    if state == "failed":
        return "failed: no seed finished for it and the baseline (the retry policy gave up on its runs)"
    if verdict.get("reason") == NO_PAIR:
        return f"waiting after round {verdict.get('round')}: no seed finished for it and the baseline yet"
    return f"open after round {verdict.get('round')} ({n} seeds)"


def stop_notes(table: Table, spec: SweepSpec, decided: bool) -> list[str]:
    """The adaptive-seeds footnote of a table whose cells carry stops: on the deciding table (`decided`),
    how every delta's cell stopped, naming the metric the rounds tested; on the others, where the seeds
    came from (their deltas are their own fixed-seed tests). For a sweep with decided rounds (annotate)."""
    rule = rule_table(spec)
    metric = metric_label(rule.metrics[0], rule.scale_of(rule.metrics[0]), rule.metric_labels)
    if not decided:
        return [
            f"Adaptive seeds (adaptive.json): each cell ran the seeds the rounds gave it, decided on the {metric} "
            f"deltas of table '{rule.name}' (its footnote says how each stopped); the deltas here are this "
            "table's own fixed-seed tests on those seeds."
        ]
    found = [
        (row.label, column, cell.stop)
        for row in table.rows
        for column, cell in zip(table.flat_columns, row.cells, strict=False)
        if cell.stop is not None and cell.stop != "baseline"
    ]
    several = len({column for _, column, _ in found}) > 1
    stops = [f"{label}{f' ({column})' if several else ''}: {stop}" for label, column, stop in found]
    if not stops:
        return []
    return [
        f"Adaptive seeds (adaptive.json): seeds were added round by round until each {metric} delta's sequential "
        "interval (alpha spent over the looks, Holm over the deltas) met the stop rule or it was unlikely to by max "
        "(futile); the ± intervals above are the usual fixed-seed ones. " + "; ".join(stops) + "."
    ]


def write_rounds(spec: SweepSpec, root: Path, outputs: Outputs) -> list[Path]:
    """tables/adaptive_rounds.csv: every comparison's interval at every round it was judged (none for a fixed grid)."""
    import pandas as pd

    if spec.seeds is None or not (root / ADAPTIVE_FILE).exists():
        return []
    path = outputs.folder("tables") / "adaptive_rounds.csv"
    outputs.write_text(path, pd.DataFrame(history(root, drawn=False)).to_csv(index=False))
    return [path]
