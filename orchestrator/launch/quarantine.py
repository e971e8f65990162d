"""Bad-node quarantine of one sweep: `<output_dir>/quarantine.json`.

Every attempt that ended for the node's reasons (node failure, preflight failure, hang) is an event
keyed by its job id, so recording the same attempt twice counts it once; one that SLURM started
again in the same job (requeued after NODE_FAIL, or by the watchdog after a hang) is keyed `JOB#n`,
its place among the run's attempts. A node with at least `retry.quarantine_after` events since the
last clear is added to the `--exclude` of every later submission of the sweep. Written atomically
(temp file, fsync, rename); read tolerantly: an unreadable file is a named problem and quarantines
nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from orchestrator.launch.failures import Failure
from orchestrator.sweep import bounded
from trainers import rundir
from trainers.contract import RunStatus

FILE = "quarantine.json"


@dataclass(frozen=True)
class Event:
    """One attempt that failed for the node's reasons."""

    job_id: str
    node: str
    failure: str
    reason: str
    at: float
    """When it was recorded (seconds since the epoch)."""


@dataclass(frozen=True)
class Quarantined:
    """A node left out of the sweep's submissions, with the failures that put it there."""

    node: str
    failures: int
    reasons: list[str]


def load(root: Path) -> tuple[dict[str, Any], str | None]:
    """The file's content ({"events": {}, "cleared_at": 0} when there is none) and what is wrong with it."""
    empty: dict[str, Any] = {"events": {}, "cleared_at": 0.0}
    try:
        data = bounded.read_json_object(root / FILE)
    except (bounded.Unreadable, ValueError) as exc:
        return empty, f"{FILE}: {exc}; no node is quarantined until it is fixed or cleared"
    if data is None:
        return empty, None
    events = data.get("events")
    cleared = data.get("cleared_at")
    if not isinstance(events, dict) or not isinstance(cleared, (int, float)):
        return empty, f"{FILE}: not of its shape (events, cleared_at); no node is quarantined"
    return {"events": events, "cleared_at": float(cleared)}, None


def record(root: Path, events: list[Event]) -> None:
    """Add events (by job id: the same attempt counts once); the file is rewritten only when something is new."""
    data, problem = load(root)
    if problem is not None and (root / FILE).exists():
        return  # never overwrite a file that cannot be read: status names it
    new = {e.job_id: vars(e) for e in events if e.job_id not in data["events"]}
    if new:
        rundir.write_json(root / FILE, {**data, "events": {**data["events"], **new}})


def restarted(statuses: Iterable[RunStatus]) -> list[Event]:
    """Attempts that ended for the node's reasons and were started again in the same job, as status.json
    records them (the job's next start, or the watchdog, wrote the class): no launcher saw them end."""
    infra = {f.value for f in Failure if f.infrastructure}
    events = []
    for status in statuses:
        attempts = status.attempts
        for index, (attempt, after) in enumerate(pairwise(attempts)):
            if attempt.failure in infra and attempt.node and attempt.job_id and after.job_id == attempt.job_id:
                at = attempt.at if attempt.at is not None else time.time()
                events.append(
                    Event(f"{attempt.job_id}#{index}", attempt.node, attempt.failure, attempt.reason or "", at)
                )
    return events


def nodes(root: Path, threshold: int) -> list[Quarantined]:
    """Nodes with at least `threshold` events since the last clear, most failures first."""
    data, _ = load(root)
    by_node: dict[str, list[str]] = {}
    for event in data["events"].values():
        if not isinstance(event, dict) or not isinstance(event.get("node"), str) or not event["node"]:
            continue
        at = event.get("at")
        if isinstance(at, (int, float)) and at > data["cleared_at"]:
            reason = f"{event.get('failure', '?')}: {event.get('reason', '')}".rstrip(": ")
            by_node.setdefault(event["node"], []).append(reason)
    chosen = [
        Quarantined(node, len(reasons), reasons) for node, reasons in by_node.items() if len(reasons) >= threshold
    ]
    return sorted(chosen, key=lambda q: (-q.failures, q.node))


def clear(root: Path) -> int:
    """Forget every event so far (the file keeps them, with the time of the clear); returns how many
    nodes were quarantined."""
    data, problem = load(root)
    if problem is not None and (root / FILE).exists():
        data = {"events": {}, "cleared_at": 0.0}  # an unreadable file is replaced by a clear one, on request
    count = len({e.get("node") for e in data["events"].values() if isinstance(e, dict)})
    rundir.write_json(root / FILE, {**data, "cleared_at": time.time()})
    return count
