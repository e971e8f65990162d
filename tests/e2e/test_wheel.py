"""The installable distribution: the wheel built from this checkout, installed into a fresh venv
outside the repository, plans, trains one run and collects from a folder outside the repository.

No network: the wheel is built without build isolation (the setuptools at hand), and the fresh
venv sees the heavy dependencies this interpreter already has (torch, timm, ...) through a .pth
line, so pip resolves the wheel's requirements (the torch/torchvision ranges included) against
them with --no-index. Only the wheel itself is installed into the venv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from orchestrator import examples

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ONE_RUN = [
    "grid.backbone=[test_resnet]",
    "grid.seed=[0]",
    "ablations={Baseline: []}",
    "defaults.epochs=1",
    "defaults.data.dataset={name: digits, max_samples: 128}",
    "defaults.torch_threads=1",
]


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    return _completed(command, cwd, env).stdout


def _completed(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _fresh_venv(root: Path) -> Path:
    """A venv without system site packages whose sys.path ends with this interpreter's site-packages."""
    # No pip (nor the old setuptools ensurepip brings): this interpreter's pip installs into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site_dir = next((root / "lib").glob("python3*/site-packages"))
    (site_dir / "zz_heavy_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "bin"


def _source_copy(dest: Path) -> Path:
    """What the wheel is built from (the working tree, uncommitted changes included), with the
    example links kept as links to the copied files."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".*")
    for name in ("orchestrator", "trainers", "sweeps", "sites", "slurm/profiles"):
        shutil.copytree(REPO / name, dest / name, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    return dest


def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path: Path) -> None:
    version = re.search(r'^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert version is not None
    meta = {"version": version.group(1)}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # ORCHESTRATE_WARM_DIR: the warm process its `collect` starts is the session's, stopped at its end.
    env.update({k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TMPDIR", "ORCHESTRATE_WARM_DIR")})
    # Everything below lives in another git repository (a user's project): its commit is not ours.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "-C", str(tmp_path), *identity, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    dist = tmp_path / "dist"
    source = _source_copy(tmp_path / "src")  # setuptools writes build/ and *.egg-info beside the sources
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        tmp_path,
        env,
    )
    wheel = next(dist.glob("orchestrate_sweeps-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for name in examples.FILES:
        assert f"orchestrator/examples/{name}" in names, name
    assert not [n for n in names if n.startswith(("tests/", "sweeps/", "results/"))]

    bin_dir = _fresh_venv(tmp_path / "venv")
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    pip = [sys.executable, "-m", "pip", "--python", str(bin_dir / "python")]
    _run([*pip, "install", "--no-index", str(wheel)], tmp_path, env)
    assert _run([str(bin_dir / "orchestrate"), "--version"], tmp_path, env).strip() == f"orchestrate {meta['version']}"

    work = tmp_path / "work"
    work.mkdir()
    _run([str(bin_dir / "orchestrate"), "examples", "proj"], work, env)
    spec = "proj/sweeps/demo.yaml"
    plan = _run([str(bin_dir / "orchestrate"), "plan", spec, *ONE_RUN, "--all"], work, env)
    assert "1 runs ->" in plan.replace("\n", " ")
    submitted = _completed([str(bin_dir / "orchestrate"), "submit", spec, *ONE_RUN, "--executor", "local"], work, env)
    # Nothing after the command's own lines: the process that imported torch (and triton with it)
    # once ended with nanobind's 40-line "leaked instances" report (orchestrator.cli.process).
    assert "leaked" not in submitted.stderr, submitted.stderr[-3000:]
    _run([str(bin_dir / "orchestrate"), "collect", spec, *ONE_RUN], work, env)

    out = work / "proj" / "results" / "demo"
    (metrics_file,) = out.glob("runs/*/metrics.json")
    provenance = json.loads(metrics_file.read_text())["provenance"]
    assert provenance["environment"]["tool_version"] == meta["version"]
    assert provenance["git_commit"] is None  # not a checkout of this tool: the version says what ran
    assert str(tmp_path / "venv") in provenance["environment"]["interpreter"]
    table = (out / "tables" / "table.md").read_text()
    assert f"Code version(s): version {meta['version']}." in table
