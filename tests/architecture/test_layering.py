"""The dependency direction of docs/explanation/design.md, enforced, and each rule proving it fires.

Rules (each a function of a source root, returning what breaks it):

- imports form a DAG over orchestrator/ and trainers/: module-level, function-level and relative
  imports and `importlib.import_module("literal")` calls all count;
- rooms depend one way: cli -> {launch, results, checks} -> store -> sweep -> the trainer's
  torch-free contract (config, contract, rundir, rules); trainers import nothing of orchestrator;
- only store/ and results/ read run-folder files (and two writers name the files they write);
- trainers/ is the torch-free contract at the top (config, contract, rundir, rules) and wings beside
  it: datasets/, data/ (which may use datasets/), model/, runtime/, and loop/ (which may use them all);
  a wing imports no other wing it is not allowed, the contract imports no wing at any level, and a
  new module directly under trainers/ is an error until it joins the contract or a wing;
- sweep/ and store/ load no torch, timm or trainer model code, at any level, directly or through
  a trainers module imported at import time (and, on the real tree, in a fresh interpreter);
- functions fit on a screen (<= 60 lines) everywhere; no file in orchestrator/ over 400 lines;
- run-file keys (`test.top1`) are spelled only in trainers/contract.py; nothing hides under
  `# fmt: skip`.

`test_each_rule_fires_on_a_planted_violation` plants one violation per rule in a scratch copy of
orchestrator/ and trainers/ (sources only, parsed with ast: about a second) and checks that the
rule names it, so a rule that quietly stopped looking fails here.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tokenize
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "trainers")
HEAVY = {"torch", "timm", "torchvision", "accelerate", "deepspeed"}
TORCH_FREE_TRAINERS = {
    "trainers",
    "trainers.config",
    "trainers.contract",
    "trainers.field_docs",
    "trainers.rundir",
    "trainers.rules",
    "trainers.textsafe",
}
"""The trainer's torch-free contract: what the login node may import at import time."""
TORCH_FREE_ROOMS = ("orchestrator.sweep", "orchestrator.store")
"""Login-node rooms that never load torch, timm or trainer model code, at any level."""
WINGS: dict[str, tuple[str, ...]] = {
    "trainers.datasets": (),
    "trainers.data": ("trainers.datasets",),
    "trainers.model": ("trainers.datasets",),  # complexity.py counts a dataset's classes
    "trainers.runtime": (),
    "trainers.loop": ("trainers.datasets", "trainers.data", "trainers.model", "trainers.runtime"),
}
"""Wing of trainers/ -> the other wings it may import (any level); every wing may import the contract."""
NEVER = {
    "orchestrator.sweep": ("orchestrator.launch", "orchestrator.results", "orchestrator.store", "orchestrator.checks"),
    "orchestrator.store": ("orchestrator.launch", "orchestrator.results", "orchestrator.checks"),
    "orchestrator.launch": ("orchestrator.results", "orchestrator.checks"),
    "orchestrator.results": ("orchestrator.launch", "orchestrator.checks"),
    "orchestrator.checks": ("orchestrator.launch", "orchestrator.results"),
    "trainers": ("orchestrator", "submitit"),
}
"""Room -> what it may never import (and nothing but orchestrator.cli imports orchestrator.cli)."""
RUN_FOLDER_READS = {"read_json", "read_state", "METRICS", "HISTORY", "SPLIT", "CONFIG", "STATUS"}
"""Names of trainers.rundir / trainers.contract that read a run folder's files."""
READERS = ("orchestrator/store/", "orchestrator/results/")
WRITERS = {
    "orchestrator/store/folder.py": {"CONFIG", "STATUS", "read_json"},  # prepares run folders, reads manifest.json
    "orchestrator/launch/job.py": {"CONFIG"},  # writes config.yaml at start
}
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 400
OVER_400_TODO: dict[str, int] = {}
"""Files of orchestrator/ still over MAX_FILE_LINES, each capped at its size today (they may only shrink:
split one and delete its line here)."""
RUN_FILE_KEY = re.compile(r"(test|val|timing|complexity|provenance|parallel|tested|best)\.[a-z_]")
"""A dotted key into metrics.json (`test.top1`): spelled only in trainers/contract.py."""
IMPORTERS = {"importlib.import_module", "import_module", "__import__"}


# ------------------------------------------------------------------------------------ the tree


def _modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every .py of the packages under `root`."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


_PARSED: dict[tuple[str, str], ast.Module] = {}


def _parse(path: Path) -> ast.Module:
    """The file's tree, parsed once per content (a planting re-parses only the file it changed)."""
    text = path.read_text()
    key = (path.name, text)
    if key not in _PARSED:
        _PARSED[key] = ast.parse(text, str(path))
    return _PARSED[key]


def _trees(root: Path) -> dict[str, ast.Module]:
    return {name: _parse(path) for name, path in _modules(root).items()}


def _imports(name: str, tree: ast.Module, top_level_only: bool) -> set[str]:
    """Every name a module imports: `from a import b` gives a and a.b; relative imports resolved
    against the module's package; `importlib.import_module("x")` with a literal gives x."""
    package = name if _is_package(tree, name) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _nodes(tree, top_level_only):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(package, node.level, node.module)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in IMPORTERS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    return found


def _is_package(tree: ast.Module, name: str) -> bool:
    return getattr(tree, "_is_package", False) or name in {"orchestrator", "trainers"}


def _resolve(package: str, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def _nodes(tree: ast.Module, top_level_only: bool) -> Iterator[ast.AST]:
    """All nodes, or those that run at import time (not inside a function; TYPE_CHECKING blocks out)."""
    if not top_level_only:
        yield from ast.walk(tree)
        return
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _mark_packages(root: Path, trees: dict[str, ast.Module]) -> dict[str, ast.Module]:
    for name, path in _modules(root).items():
        trees[name]._is_package = path.name == "__init__.py"  # type: ignore[attr-defined]
    return trees


def _edges(root: Path, top_level_only: bool) -> dict[str, set[str]]:
    """Module -> our modules it imports (a name resolved to its longest known module prefix), edges to
    the module's own parent packages left out (a package re-exports its children)."""
    trees = _mark_packages(root, _trees(root))
    edges: dict[str, set[str]] = {}
    for name, tree in trees.items():
        targets = set()
        for imported in _imports(name, tree, top_level_only):
            while imported and imported not in trees:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        edges[name] = targets
    return edges


# ------------------------------------------------------------------------------------ the rules


def cycles(root: Path) -> list[str]:
    """An import cycle (function-level and relative imports count: a lazy import is still a cycle)."""
    edges = _edges(root, top_level_only=False)
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
            return [" -> ".join(found)]
    return []


def directions(root: Path) -> list[str]:
    """Imports (any level) against NEVER, and into orchestrator.cli from outside it."""
    trees = _mark_packages(root, _trees(root))
    found = []
    for name, tree in trees.items():
        imported = _imports(name, tree, top_level_only=False)
        for room, banned in NEVER.items():
            if name == room or name.startswith(room + "."):
                bad = sorted(n for n in imported if n.startswith(banned))
                found += [f"{name} imports {n}" for n in bad]
        if not name.startswith("orchestrator.cli"):
            found += [f"{name} imports {n}" for n in sorted(imported) if n.startswith("orchestrator.cli")]
    return found


def run_folder_reads(root: Path) -> list[str]:
    """Run-folder file names and readers of trainers.rundir/contract used outside store/ and results/."""
    found = []
    for path in sorted((root / "orchestrator").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(READERS):
            continue
        used = set()
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) in {"rundir", "contract"}:
                used.add(node.attr)
            elif isinstance(node, ast.ImportFrom) and node.module in {"trainers.rundir", "trainers.contract"}:
                used.update(alias.name for alias in node.names)
        bad = (used & RUN_FOLDER_READS) - WRITERS.get(rel, set())
        found += [f"{rel} reads run-folder files ({', '.join(sorted(bad))}); ask orchestrator.store"] if bad else []
    return found


def torch_free(root: Path) -> list[str]:
    """sweep/ and store/ import nothing heavy at any level, and only the trainer's torch-free contract,
    which in turn loads nothing heavy at import time (followed through every module it imports)."""
    trees = _mark_packages(root, _trees(root))
    found = []
    for name, tree in trees.items():
        if name.startswith(TORCH_FREE_ROOMS):
            for imported in sorted(_imports(name, tree, top_level_only=False)):
                found += _heavy(name, imported, trees)
    for name in sorted(TORCH_FREE_TRAINERS & set(trees)):
        for imported in sorted(_closure(name, trees)):
            found += [f"{name} loads {imported} at import time"] if imported.split(".")[0] in HEAVY else []
            if imported.startswith("trainers.") and _module_of(imported, trees) not in TORCH_FREE_TRAINERS:
                found.append(f"{name} loads {_module_of(imported, trees)} at import time")
    return found


def _heavy(name: str, imported: str, trees: dict[str, ast.Module]) -> list[str]:
    if imported.split(".")[0] in HEAVY:
        return [f"{name} imports {imported}"]
    module = _module_of(imported, trees)
    if module.startswith("trainers") and module not in TORCH_FREE_TRAINERS:
        return [f"{name} imports {module} (trainer code outside its torch-free contract)"]
    return []


def _module_of(imported: str, trees: dict[str, ast.Module]) -> str:
    while imported and imported not in trees and "." in imported:
        imported = imported.rpartition(".")[0]
    return imported


def _closure(start: str, trees: dict[str, ast.Module]) -> set[str]:
    """Every name imported at import time by `start` and, transitively, by our modules it imports."""
    seen: set[str] = set()
    todo, names = [start], set()
    while todo:
        module = todo.pop()
        if module in seen or module not in trees:
            continue
        seen.add(module)
        for imported in _imports(module, trees[module], top_level_only=True):
            names.add(imported)
            todo.append(_module_of(imported, trees))
    return names


def wings(root: Path) -> list[str]:
    """Every trainers module is in the contract or a wing; wings import only the wings WINGS allows
    them, and the contract imports no wing (at any level: a lazy import still drags torch along)."""
    trees = _mark_packages(root, _trees(root))
    found = []
    for name, tree in trees.items():
        if not name.startswith("trainers."):
            continue
        own = next((wing for wing in WINGS if name == wing or name.startswith(wing + ".")), None)
        if own is None and name not in TORCH_FREE_TRAINERS:
            found.append(f"{name} is in no wing (add it to the torch-free contract or move it into a wing)")
        allowed = (own, *WINGS[own]) if own else ()
        bad = set()
        for imported in _imports(name, tree, top_level_only=False):
            wing = next((w for w in WINGS if imported == w or imported.startswith(w + ".")), None)
            bad |= {_module_of(imported, trees)} if wing is not None and wing not in allowed else set()
        found += [f"{name} imports {module}" for module in sorted(bad)]
    return found


def function_lengths(root: Path, folders: tuple[str, ...] = (*PACKAGES, "bench", "tests")) -> list[str]:
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(_parse(path)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        found.append(f"{path.relative_to(root)}:{node.name} ({lines} lines)")
    return found


def file_lengths(root: Path) -> list[str]:
    found = []
    for path in sorted((root / "orchestrator").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > OVER_400_TODO.get(rel, MAX_FILE_LINES):
            found.append(f"{rel} ({lines} lines)")
    return found


def run_file_keys(root: Path) -> list[str]:
    """Dotted run-file keys in string literals (docstrings aside) outside trainers/contract.py."""
    found = []
    for path in sorted((root / "orchestrator").rglob("*.py")):
        tree = _parse(path)
        docs = {id(node.body[0].value) for node in ast.walk(tree) if _has_docstring(node)}  # type: ignore[attr-defined]
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and id(node) not in docs else None
            if isinstance(text, str) and RUN_FILE_KEY.match(text):
                found.append(f"{path.relative_to(root)}:{node.lineno} {text!r}")
    return found


def _has_docstring(node: ast.AST) -> bool:
    body = getattr(node, "body", None)
    first = body[0] if isinstance(body, list) and body else None
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)


def hidden_formatting(root: Path) -> list[str]:
    """`# fmt: skip` / `# fmt: off` comments: code hidden from the formatter (wide constructors: use
    keywords), in the packages, the tests and the benches; a string that names them is not one."""
    found = []
    for folder in (*PACKAGES, "tests", "bench"):
        for path in sorted((root / folder).rglob("*.py")) if (root / folder).is_dir() else []:
            with path.open("rb") as source:
                comments = [t for t in tokenize.tokenize(source.readline) if t.type == tokenize.COMMENT]
            found += [
                f"{path.relative_to(root)}:{t.start[0]}"
                for t in comments
                if re.match(r"#\s*fmt:\s*(skip|off)", t.string)
            ]
    return found


RULES: dict[str, Callable[[Path], list[str]]] = {
    "cycles": cycles,
    "directions": directions,
    "run_folder_reads": run_folder_reads,
    "torch_free": torch_free,
    "wings": wings,
    "function_lengths": function_lengths,
    "file_lengths": file_lengths,
    "run_file_keys": run_file_keys,
    "hidden_formatting": hidden_formatting,
}


# ------------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_tree_keeps_the_rule(rule: str) -> None:
    assert RULES[rule](REPO) == []


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n" + text + "\n")


def _long_function(name: str, lines: int) -> str:
    return f"def {name}() -> int:\n    x = 0\n" + "    x += 1\n" * (lines - 3) + "    return x\n"


PLANTINGS: dict[str, tuple[str, str, str]] = {
    # rule: (file to plant in, text appended, what the finding names)
    "cycles": ("orchestrator/sweep/errors.py", "def _f() -> None:\n    from .spec import SweepSpec  # noqa\n", " -> "),
    "directions": (
        "orchestrator/sweep/plan.py",
        "def _f() -> None:\n    import importlib\n    importlib.import_module('orchestrator.results.reader')\n",
        "orchestrator.sweep.plan imports orchestrator.results.reader",
    ),
    "run_folder_reads": (
        "orchestrator/launch/status.py",
        "from trainers.rundir import read_json  # noqa\n",
        "orchestrator/launch/status.py reads run-folder files (read_json)",
    ),
    "torch_free": ("trainers/rules.py", "from trainers.model import build  # noqa\n", "trainers.model.build"),
    "function_lengths": (
        "trainers/model/losses.py",
        _long_function("_planted", 70),
        "trainers/model/losses.py:_planted (70 lines)",
    ),
    "wings": (
        "trainers/model/heads.py",
        "def _f() -> None:\n    from trainers.loop import metrics  # noqa\n",
        "trainers.model.heads imports trainers.loop.metrics",
    ),
    "file_lengths": ("orchestrator/sweep/values.py", "\n" * 400, "orchestrator/sweep/values.py"),
    "run_file_keys": ("orchestrator/launch/local.py", "_KEY = 'test.top1'\n", "'test.top1'"),
    "hidden_formatting": ("orchestrator/sweep/values.py", "_X = (1, 2)  # fmt: skip\n", "orchestrator/sweep/values.py"),
}
MORE_PLANTINGS = {  # the other ways around the same rules
    "relative cycle": ("cycles", "orchestrator/sweep/errors.py", "from . import spec  # noqa\n"),
    "function-level sweep -> store": (
        "directions",
        "orchestrator/sweep/yamlio.py",
        "def _g() -> None:\n    from orchestrator import store  # noqa\n",
    ),
    "launch -> results": ("directions", "orchestrator/launch/base.py", "from ..results import reader  # noqa\n"),
    "torch inside a sweep function": (
        "torch_free",
        "orchestrator/sweep/plan.py",
        "def _t() -> None:\n    import torch  # noqa\n",
    ),
    "data wing -> model wing": (
        "wings",
        "trainers/data/transforms.py",
        "from trainers.model.tasks import TaskSpec  # noqa\n",
    ),
    "relative runtime -> loop": ("wings", "trainers/runtime/memory.py", "from ..loop import checkpoint  # noqa\n"),
    "contract -> wing, lazily": (
        "wings",
        "trainers/rundir.py",
        "def _w() -> None:\n    from trainers.runtime import heartbeat  # noqa\n",
    ),
    "module outside the wings": ("wings", "trainers/helpers.py", "X = 1\n"),
    "rundir attribute read": (
        "run_folder_reads",
        "orchestrator/cli/views.py",
        "from trainers import rundir\n_P = rundir.METRICS\n",
    ),
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.gz", "*.json"))
    for folder in ("bench", "tests"):
        (root / folder).mkdir()
    return root


@pytest.mark.parametrize("rule", sorted(PLANTINGS))
def test_each_rule_fires_on_a_planted_violation(scratch: Path, rule: str) -> None:
    file, text, named = PLANTINGS[rule]
    _planted(scratch, rule, file, text, named)


@pytest.mark.parametrize("case", sorted(MORE_PLANTINGS))
def test_rules_see_through_other_ways_around(scratch: Path, case: str) -> None:
    rule, file, text = MORE_PLANTINGS[case]
    _planted(scratch, rule, file, text, "")


def _planted(scratch: Path, rule: str, file: str, text: str, named: str) -> None:
    target = scratch / file
    before = target.read_text() if target.exists() else None  # None: the planting is a new file
    assert RULES[rule](scratch) == [], "the copy starts clean"
    try:
        _append(target, text) if before is not None else target.write_text(text)
        found = RULES[rule](scratch)
    finally:
        target.write_text(before) if before is not None else target.unlink()
    assert found and any(named in line for line in found), f"{rule} missed the planted violation: {found}"


def test_torch_free_rooms_load_no_torch_in_a_fresh_interpreter() -> None:
    """Every module of sweep/ and store/ and the trainer's torch-free contract imported in a fresh
    interpreter: no torch, timm or trainer model code loaded."""
    names = sorted(n for n in _modules(REPO) if n.startswith(TORCH_FREE_ROOMS) or n in TORCH_FREE_TRAINERS)
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"heavy, allowed = {sorted(HEAVY)!r}, {sorted(TORCH_FREE_TRAINERS)!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy"
        " or (m.startswith('trainers') and m not in allowed)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"torch-free rooms loaded: {result.stdout.strip()}"


def test_cli_plan_and_collect_modules_do_not_load_torch() -> None:
    code = (
        "import sys\n"
        "from orchestrator.cli.main import main\n"
        "import orchestrator.launch, orchestrator.results.collect, orchestrator.results.tables\n"
        "import orchestrator.launch.job, orchestrator.launch.slurm, orchestrator.results.report\n"
        "import orchestrator.checks.preflight, orchestrator.checks.complexity, orchestrator.results.reader\n"
        "assert main(['plan', 'sweeps/demo.yaml']) == 0\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision', 'pandas') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout
