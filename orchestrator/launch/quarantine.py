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

import re
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
    """Nodes with at least `threshold` events since the last clear, most failures first; a preflight
    failure that several nodes report alike (sweep_wide) is no node's and counts against none."""
    events = _current(root)
    wide = set(_sweep_wide(events))
    by_node: dict[str, list[str]] = {}
    for event in events:
        if _preflight_key(event) not in wide:
            reason = f"{event.get('failure', '?')}: {event.get('reason', '')}".rstrip(": ")
            by_node.setdefault(event["node"], []).append(reason)
    chosen = [
        Quarantined(node, len(reasons), reasons) for node, reasons in by_node.items() if len(reasons) >= threshold
    ]
    return sorted(chosen, key=lambda q: (-q.failures, q.node))


SWEEP_WIDE_NODES = 2
"""Distinct nodes on which one preflight reason makes it a problem of the sweep or the cluster's shared
setup (an import, a dataset root that is not mounted, a full output folder), not of a node."""
_PREFIX = re.compile(r"^rank \d+ on \S+: ")
_DECIMAL = re.compile(r"\d+\.\d+")


def sweep_wide(root: Path) -> dict[str, list[str]]:
    """Preflight reasons (as first recorded) that `SWEEP_WIDE_NODES` or more distinct nodes reported since
    the last clear -> those nodes."""
    return {reason: sorted(nodes) for reason, nodes in _sweep_wide(_current(root)).values()}


def sweep_wide_keys(root: Path) -> set[str]:
    """The keys (preflight_key) of the preflight failures that several nodes reported alike."""
    return set(_sweep_wide(_current(root)))


def preflight_key(failure: str, node: str, reason: str) -> str | None:
    """What a preflight failure is compared by across nodes (None for other failures)."""
    return _preflight_key({"failure": failure, "node": node, "reason": reason})


def _current(root: Path) -> list[dict[str, Any]]:
    """Well-formed events since the last clear."""
    data, _ = load(root)
    return [
        event
        for event in data["events"].values()
        if isinstance(event, dict)
        and isinstance(event.get("node"), str)
        and event["node"]
        and isinstance(event.get("at"), (int, float))
        and event["at"] > data["cleared_at"]
    ]


def _preflight_key(event: dict[str, Any]) -> str | None:
    """A preflight reason without what differs between nodes (the `rank N on HOST: ` prefix, the node's
    name, measured sizes such as free GB); None for other failures."""
    if event.get("failure") != Failure.PREFLIGHT_FAIL.value:
        return None
    reason = _PREFIX.sub("", str(event.get("reason") or ""))
    return _DECIMAL.sub("#", reason.replace(str(event["node"]), "<node>"))


def _sweep_wide(events: list[dict[str, Any]]) -> dict[str, tuple[str, set[str]]]:
    """key -> (its first reason, the nodes that reported it) for keys reported by several nodes."""
    seen: dict[str, tuple[str, set[str]]] = {}
    for event in events:
        key = _preflight_key(event)
        if key is not None:
            seen.setdefault(key, (str(event.get("reason") or ""), set()))[1].add(event["node"])
    return {key: entry for key, entry in seen.items() if len(entry[1]) >= SWEEP_WIDE_NODES}


def clear(root: Path) -> int:
    """Forget every event so far (the file keeps them, with the time of the clear); returns how many
    nodes were quarantined."""
    data, problem = load(root)
    if problem is not None and (root / FILE).exists():
        data = {"events": {}, "cleared_at": 0.0}  # an unreadable file is replaced by a clear one, on request
    count = len({e.get("node") for e in data["events"].values() if isinstance(e, dict)})
    rundir.write_json(root / FILE, {**data, "cleared_at": time.time()})
    return count
