"""The dependency direction of DESIGN.md, enforced: the login-node side never pulls in torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What the orchestrator may import from the trainer side at module level: data, file layout and
# the pure-config rules (torch-free; `plan` runs them).
ALLOWED_TRAINER_MODULES = {"trainers", "trainers.config", "trainers.rundir", "trainers.rules"}


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names if node.module == "trainers")
    return names


def test_trainers_never_import_orchestrator_or_submitit() -> None:
    for path in (REPO / "trainers").rglob("*.py"):
        bad = {n for n in _imports(path, top_level_only=False) if n.split(".")[0] in {"orchestrator", "submitit"}}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"
        assert "SLURM_" not in path.read_text(), f"{path.relative_to(REPO)} reads SLURM variables"


def test_orchestrator_imports_only_trainer_data_modules_at_import_time() -> None:
    for path in (REPO / "orchestrator").rglob("*.py"):
        names = _imports(path, top_level_only=True)
        trainer = {n for n in names if n.split(".")[0] == "trainers"}
        assert trainer <= ALLOWED_TRAINER_MODULES, f"{path.relative_to(REPO)} imports {sorted(trainer)}"
        assert not {n for n in names if n.split(".")[0] in {"torch", "timm", "torchvision"}}, path


def test_cli_plan_and_collect_modules_do_not_load_torch() -> None:
    code = (
        "import sys\n"
        "from orchestrator.cli import main\n"
        "import orchestrator.launch, orchestrator.results.collect, orchestrator.results.tables\n"
        "import orchestrator.launch.job, orchestrator.launch.slurm, orchestrator.results.report\n"
        "assert main(['plan', 'sweeps/demo.yaml']) == 0\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision', 'pandas') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout
