"""adaptive.json read back: its shape checked, and the spec it was decided under compared with today's.

A hand-edited, truncated or foreign file, or a `seeds:` block changed between rounds, is refused in one
line naming the file and the field: the schedule cannot be guessed, and decisions made under one design
do not carry over to another (the looks' boundaries spend alpha for one plan of looks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.sweep.errors import SpecError

STATES = ("open", "resolved", "futile", "max", "failed")
RESTART = "move adaptive.json aside to start the rounds again (finished runs are kept)"


def check_shape(path: Path, rounds: list[dict[str, Any]]) -> None:
    """SpecError naming `rounds[i].<field>` where a round is not as `advance` writes it."""
    for i, entry in enumerate(rounds):
        where = f"{path}: rounds[{i}]"
        schedule = entry.get("schedule", {})
        if not isinstance(schedule, dict) or not all(_count(v) for v in schedule.values()):
            raise SpecError(f"{where}.schedule: not a mapping of cell to a seed count >= 1; {RESTART}")
        verdicts = entry.get("verdicts", {})
        if not isinstance(verdicts, dict):
            raise SpecError(f"{where}.verdicts: not a mapping of cell to verdict; {RESTART}")
        for cell, verdict in verdicts.items():
            if not isinstance(verdict, dict) or verdict.get("state") not in STATES:
                raise SpecError(f"{where}.verdicts[{cell!r}]: no state among {', '.join(STATES)}; {RESTART}")
            if not (_count(verdict.get("n")) or verdict.get("n") == 0):
                raise SpecError(f"{where}.verdicts[{cell!r}].n: not a seed count; {RESTART}")
            for field in ("delta", "low", "high"):  # the tables' CSV and the report's figure read them as numbers
                value = verdict.get(field)
                if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                    raise SpecError(f"{where}.verdicts[{cell!r}].{field}: not a number or null; {RESTART}")
        if not isinstance(entry.get("finished", False), bool):
            raise SpecError(f"{where}.finished: not true or false; {RESTART}")


def check_design(path: Path, rounds: list[dict[str, Any]], now: dict[str, Any], cells: set[str]) -> None:
    """SpecError when the last round was decided under another design than `now` (looks, stop rule,
    futility, metric, scale), or names none of this sweep's cells (another sweep's file)."""
    if not rounds:
        return
    last, n = rounds[-1], len(rounds)
    names = {"looks": "looks (seeds: initial, step, max)", "rule": "seeds.stop", "futility": "seeds.futility"}
    names.update({"metric": "the deciding table's metric", "scale": "the deciding table's scale"})
    recorded = {**last, "looks": last.get("looks", _looks_of(rounds, now["looks"]))}
    for field, label in names.items():
        old = recorded.get(field)
        if (field in last or field == "looks") and _differs(old, now[field]):
            raise SpecError(
                f"{path}: round {n} was decided with {label} {_text(old)}, the spec now gives {_text(now[field])}; "
                f"restore it, or {RESTART}"
            )
    schedule = last.get("schedule", {})
    if schedule and not set(schedule) & cells:
        raise SpecError(
            f"{path}: round {n}'s schedule names none of this sweep's cells (another sweep's file?); {RESTART}"
        )


def _looks_of(rounds: list[dict[str, Any]], looks: list[int]) -> list[int]:
    """A file written before rounds stored their looks: the looks its rounds took, today's where they agree."""
    seen = [r.get("look") for r in rounds]
    planned = [looks[min(i, len(looks) - 1)] for i in range(len(rounds))]
    return looks if seen == planned else [s for s in seen if isinstance(s, int)]


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return abs(float(old) - float(new)) > 1e-12 * max(1.0, abs(float(new)))
    return bool(old != new)


def _text(value: Any) -> str:
    return (
        ", ".join(map(str, value)) if isinstance(value, list) else repr(value) if isinstance(value, str) else str(value)
    )


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
