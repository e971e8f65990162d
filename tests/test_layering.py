"""The dependency direction of DESIGN.md, enforced: stage packages, one reader of run folders,
no import cycles, and a login-node side that never pulls in torch."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORCHESTRATOR = REPO / "orchestrator"
# What the orchestrator may import from the trainer side at module level: data, file layout and
# the pure-config rules (torch-free; `plan` runs them).
ALLOWED_TRAINER_MODULES = {"trainers", "trainers.config", "trainers.contract", "trainers.rundir", "trainers.rules"}
HEAVY = {"torch", "timm", "torchvision", "accelerate", "deepspeed"}
# Names of trainers.rundir that read a run folder: only orchestrator/results/ may use them.
RUN_FOLDER_READS = {"read_json", "read_state", "METRICS", "HISTORY", "SPLIT", "CONFIG"}
# The writer side may name these: the job writes config.yaml at start; store prepares run folders
# and reads the sweep folder's own manifest.json (not a run-folder file) with rundir.read_json.
WRITERS = {
    ORCHESTRATOR / "store" / "folder.py": {"CONFIG", "read_json"},
    ORCHESTRATOR / "launch" / "job.py": {"CONFIG"},
}
MAX_FUNCTION_LINES = 60


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _orchestrator_modules() -> dict[str, Path]:
    return {_module_name(path): path for path in ORCHESTRATOR.rglob("*.py")}


def test_trainers_never_import_orchestrator_or_submitit() -> None:
    for path in (REPO / "trainers").rglob("*.py"):
        bad = {n for n in _imports(path, top_level_only=False) if n.split(".")[0] in {"orchestrator", "submitit"}}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"
        assert "SLURM_" not in path.read_text(), f"{path.relative_to(REPO)} reads SLURM variables"


def test_orchestrator_imports_only_trainer_data_modules_at_import_time() -> None:
    for path in ORCHESTRATOR.rglob("*.py"):
        names = _imports(path, top_level_only=True)
        trainer = {n for n in names if n.split(".")[0] == "trainers" and n.count(".") <= 1}
        trainer = {n for n in trainer if n.split(".")[-1][:1].islower()}  # modules, not classes
        assert trainer <= ALLOWED_TRAINER_MODULES | {"trainers.rundir", "trainers.config"}, (path, trainer)
        assert not {n for n in names if n.split(".")[0] in HEAVY}, path


def test_no_module_level_importlib_tricks() -> None:
    """`importlib.import_module` at module level would load torch behind the static checks' back."""
    for path in ORCHESTRATOR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    break
                name = ast.unparse(call.func)
                assert name not in {"importlib.import_module", "__import__", "import_module"}, (path, name)


def test_no_import_cycles_between_orchestrator_modules() -> None:
    """Imports form a DAG; function-level imports count too (a lazy import is still a cycle)."""
    modules = _orchestrator_modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path, top_level_only=False):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        edges[name] = {t for t in targets if not (t == "orchestrator" or name.startswith(t + "."))}
    cycle = _find_cycle(edges)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_only_store_and_results_read_run_folders() -> None:
    for path in ORCHESTRATOR.rglob("*.py"):
        if (ORCHESTRATOR / "results") in path.parents or (ORCHESTRATOR / "store") in path.parents:
            continue
        used = {
            node.attr
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "rundir"
        }
        bad = (used & RUN_FOLDER_READS) - WRITERS.get(path, set())
        assert not bad, f"{path.relative_to(REPO)} reads run-folder files ({sorted(bad)}); use store.run_states"


RUN_FILE_KEY = re.compile(r"(test|val|timing|complexity|provenance|parallel|tested|best)\.[a-z_]")
"""A dotted key into metrics.json (`test.top1`): spelled only in trainers/contract.py."""


def test_run_file_keys_are_spelled_only_in_the_contract() -> None:
    """The orchestrator names run-file values through trainers.contract (its constants, `column()`,
    its models' fields), so a key renamed on the node side fails there, not silently in a table."""
    found = []
    for path in ORCHESTRATOR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree) if _has_docstring(node)}
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and id(node) not in docstrings else None
            if isinstance(text, str) and RUN_FILE_KEY.match(text):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {text!r}")
    assert not found, f"dotted run-file keys outside trainers/contract.py: {found}"


def _has_docstring(node: ast.AST) -> bool:
    body = getattr(node, "body", None)
    return (
        isinstance(body, list)
        and bool(body)
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )


def test_stage_packages_depend_in_one_direction() -> None:
    """cli -> {launch, results} -> store -> sweep; nothing imports cli; sweep imports neither launch nor
    results; launch never results (run states are the store's); the store neither launch nor results."""
    for name, path in _orchestrator_modules().items():
        imported = {n for n in _imports(path, top_level_only=False) if n.startswith("orchestrator.")}
        if not name.startswith("orchestrator.cli"):
            assert not {n for n in imported if n.startswith("orchestrator.cli")}, (name, imported)
        if name.startswith("orchestrator.sweep"):
            bad = {n for n in imported if n.startswith(("orchestrator.launch", "orchestrator.results"))}
            assert not bad, (name, bad)
        if name.startswith("orchestrator.launch"):
            assert not {n for n in imported if n.startswith("orchestrator.results")}, (name, imported)
        if name.startswith("orchestrator.store"):
            bad = {n for n in imported if n.startswith(("orchestrator.launch", "orchestrator.results"))}
            assert not bad, (name, bad)


def test_functions_read_on_one_screen() -> None:
    long = []
    for path in ORCHESTRATOR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_cli_plan_and_collect_modules_do_not_load_torch() -> None:
    code = (
        "import sys\n"
        "from orchestrator.cli import main\n"
        "import orchestrator.launch, orchestrator.results.collect, orchestrator.results.tables\n"
        "import orchestrator.launch.job, orchestrator.launch.slurm, orchestrator.results.report\n"
        "import orchestrator.checks.preflight, orchestrator.checks.complexity, orchestrator.results.reader\n"
        "assert main(['plan', 'sweeps/demo.yaml']) == 0\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision', 'pandas') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout


TORCH_FREE_ROOMS = ("orchestrator.sweep", "orchestrator.store")
"""Login-node rooms that must never load torch, timm or the trainer's model code, at any level."""
TORCH_FREE_TRAINERS = {"trainers", "trainers.config", "trainers.contract", "trainers.rundir", "trainers.rules"}


def test_torch_free_rooms_load_no_torch_in_a_fresh_interpreter() -> None:
    """Every module of sweep/ and store/ imported in a fresh interpreter: no torch, timm or trainer
    model code loaded (function-level imports are held off by the static check below)."""
    names = sorted(n for n in _orchestrator_modules() if n.startswith(TORCH_FREE_ROOMS))
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"heavy = {sorted(HEAVY)!r}\n"
        f"allowed = {sorted(TORCH_FREE_TRAINERS)!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy"
        " or (m.startswith('trainers') and m not in allowed)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"torch-free rooms loaded: {result.stdout.strip()}"


def test_torch_free_rooms_never_import_torch_even_inside_functions() -> None:
    for name, path in _orchestrator_modules().items():
        if not name.startswith(TORCH_FREE_ROOMS):
            continue
        names = _imports(path, top_level_only=False)
        heavy = {n for n in names if n.split(".")[0] in HEAVY}
        trainer = {n for n in names if n.startswith("trainers.") and n.split(".")[-1][:1].islower()}
        assert not heavy and trainer <= TORCH_FREE_TRAINERS, (name, heavy, trainer - TORCH_FREE_TRAINERS)
