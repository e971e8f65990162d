"""Output that survives pipes and small terminals: names, ids and paths are never cut or wrapped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rich.console import Console

from orchestrator.cli import terminal
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

REPO = Path(__file__).resolve().parents[3]
CUB = REPO / "sweeps" / "ablation_cub.yaml"


def test_piped_plan_prints_every_name_whole_on_one_line() -> None:
    runs = plan(load_spec(CUB))
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "plan", str(CUB), "--all", "--skip-data-check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert "…" not in done.stdout
    for run in runs:  # names up to 70 characters: far past rich's default 80-column page when piped
        assert any(run.name in line and run.run_id in line for line in lines), run.name
    assert max(len(run.name) for run in runs) > 60


def test_terminal_tables_fold_instead_of_cutting() -> None:
    console = Console(width=60, force_terminal=True, color_system=None, record=True)
    grid = terminal.table("run_id", "name")
    name = "convnextv2_large/CUB Birds + FGVC Aircraft/+aug+l2sp+dropout+scra/s0"
    grid.add_row("1ee553babf1f", name)
    console.print(grid)
    text = console.export_text()
    assert "…" not in text
    assert "1ee553babf1f" in text
    rest = text.replace("run_id", "").replace("name", "").replace("1ee553babf1f", "")
    kept = "".join(ch for ch in rest if not ch.isspace() and ch not in "│┃━─┏┓┗┛┡┩└┘┌┐╇┳┻╋┼├┤┬┴")
    assert kept == name.replace(" ", "")  # folded over lines, every character kept
