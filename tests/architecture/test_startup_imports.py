"""Start-up cost of the commands people run often: `plan` and `status` import no torch, pandas,
scipy or matplotlib, nor the output models of `--json` unless asked (issue 28). One fresh
interpreter runs both (a module imported by either shows in the second list)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "timm", "pandas", "scipy", "matplotlib", "sklearn", "accelerate", "shtab"}
PROBE = """
import contextlib, io, json, sys
from orchestrator.cli.main import main
loaded = {}
for argv in (["plan", sys.argv[1]], ["status", sys.argv[1]]):
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    loaded[argv[0]] = [code, sorted(sys.modules)]
print(json.dumps(loaded))
"""


def _loaded(tmp_path: Path) -> dict[str, list[object]]:
    spec = tmp_path / "demo.yaml"
    text = (REPO / "sweeps" / "demo.yaml").read_text().replace("../results/demo", str(tmp_path / "out"))
    spec.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(spec)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[object]] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_plan_and_status_start_without_heavy_modules(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path)
    for command, (code, modules) in loaded.items():
        assert code == 0, command
        tops = {str(name).split(".")[0] for name in modules}  # type: ignore[attr-defined]
        assert not tops & HEAVY, f"{command} imported {sorted(tops & HEAVY)}"
    assert "orchestrator.cli.jsonout" not in loaded["status"][1], "the --json models are imported only for --json"
