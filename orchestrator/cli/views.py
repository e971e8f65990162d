"""How the CLI shows a sweep's status on the terminal (rich)."""

from __future__ import annotations

from typing import Any

from orchestrator import textsafe

PLAN_ROWS_SHOWN = 40


def status_view(name: str, current: Any, show_all: bool) -> Any:
    """Counts, a warning when SLURM accounting was unavailable, and the unfinished or failed runs."""
    from rich.console import Group

    from orchestrator.cli import terminal

    counts = textsafe.rich(", ".join(f"{n} {state}" for state, n in sorted(current.counts.items())))
    parts: list[Any] = [f"[bold]{name}[/]: {len(current.runs)} runs: {counts}"]
    if current.failures:
        failures = ", ".join(f"{n} {kind}" for kind, n in sorted(current.failures.items()))
        parts.append(f"failures (latest attempt): {textsafe.rich(failures)}")
    for node in current.quarantined:
        why = textsafe.rich("; ".join(dict.fromkeys(node.reasons)))
        count = f"{node.failures} failure" + ("" if node.failures == 1 else "s")
        parts.append(f"[yellow]quarantined[/]: {textsafe.rich(node.node)} ({count}: {why})")
    for job_name, runs in current.unconfirmed.items():
        parts.append(
            f"[yellow]unconfirmed[/]: array {textsafe.rich(job_name)} ({runs} run{'s' if runs != 1 else ''}): sbatch "
            "failed and squeue could not say whether it was queued; the next `submit` or `submit --follow` poll "
            "settles it (adopts its job, or submits its runs again); `orchestrate cancel` cancels it"
        )
    if current.warning:
        parts.append(f"[yellow]warning:[/] {textsafe.rich(current.warning)}")
    shown = [r for r in current.runs if show_all or r.state != "completed"]
    table = terminal.table("run_id", "state", "failure", "node", "tries", "job", "name")
    table.add_column("error / log", overflow="fold")
    for row in shown[: None if show_all else PLAN_ROWS_SHOWN]:
        verdict = row.verdict
        kind, node = (verdict.failure.value, verdict.node) if verdict is not None else ("", "")
        tries = str(row.attempts) if row.attempts else ""
        cells = (row.run.run_id, row.state, kind, node, tries, row.job_id or "", row.run.name, row.detail)
        table.add_row(*(textsafe.rich(cell or "") for cell in cells))  # run-folder and SLURM text: never markup
    if shown:
        parts.append(table)
    if not show_all and len(shown) > PLAN_ROWS_SHOWN:
        parts.append(f"... {len(shown) - PLAN_ROWS_SHOWN} more (--all lists every run)")
    return Group(*parts)


def axis_value(value: Any) -> str:
    """A grid value as the plan shows it: datasets by their label or name, not their whole mapping."""
    if isinstance(value, dict) and "name" in value:
        return str(value.get("label") or value["name"])
    return str(value)
