"""Jobs on the real dev cluster through a node environment: Lmod and Charliecloud (installed from
Debian packages by slurm/dev-cluster/start.sh), read back from each run's provenance.

No mocks: `orchestrate submit` writes the batch script, sbatch runs it on a node, the node enters
the environment and trains; metrics.json says which environment that was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_slurm import PROFILE, REPO, cluster, wait_for

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.launch.status import sweep_status
from orchestrator.sweep import yamlio
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec
from trainers import rundir

pytestmark = pytest.mark.slurm
__all__ = ["cluster"]  # the module fixture that fails when the dev cluster is down

LMOD_INIT = "/usr/share/lmod/lmod/init/bash"
ONE_RUN = """
name: {name}
output_dir: {out}
defaults:
  data: {{image_size_px: 16, batch_size: 32, num_workers: 0, dataset: {{name: digits, max_samples: 128}}}}
  optim: {{name: adam, lr: 3e-3}}
  epochs: 1
  torch_threads: 1
grid: {{backbone: [resnet10t], seed: [0]}}
slurm: {{cpus_per_task: 1, timeout_min: 20}}
"""


def _run_and_read(tmp_path: Path, name: str, env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Submit a one-run sweep with `slurm.env` = env through the CLI, wait, return its provenance."""
    data = yamlio.loads(ONE_RUN.format(name=name, out=tmp_path / name))
    data["slurm"]["env"] = env
    path = tmp_path / f"{name}.yaml"
    path.write_text(yamlio.dumps(data))
    assert main(["submit", str(path), "--executor", "slurm", "--profile", PROFILE, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert main(["submit", str(path), "--executor", "slurm", "--profile", PROFILE]) == 0
    spec = load_spec(path)
    (run,) = plan(spec)

    def finished() -> str | None:
        state = sweep_status([run], spec.output_path).runs[0].state
        return state if state in {"completed", "failed"} else None

    state = wait_for(finished, 600, f"the {name} run to finish")
    folder = store.run_path(spec.output_path, run.run_id)
    logs = "".join(p.read_text(errors="replace")[-3000:] for p in (spec.output_path / store.SUBMITIT_DIR).glob("*.err"))
    assert state == "completed", f"{name}: {state}; job stderr:\n{logs}"
    metrics = rundir.read_json(folder / rundir.METRICS)
    assert metrics is not None
    provenance: dict[str, Any] = metrics["provenance"]["environment"]
    status = rundir.read_json(folder / rundir.STATUS) or {}
    assert (status.get("interpreter"), status.get("env_kind")) == (provenance["interpreter"], provenance["kind"])
    provenance["_dry_run"] = dry
    return provenance


def test_lmod_module_provides_the_interpreter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A modulefile written here puts the project's venv on PATH; the job's `python` is that venv's only
    through the module (the submitting shell's PATH, which sbatch hands to the job, lacks it)."""
    if not Path(LMOD_INIT).is_file():
        pytest.fail(f"{LMOD_INIT} missing: slurm/dev-cluster/start.sh installs Lmod")
    venv_bin = Path(sys.executable).parent
    path = [d for d in os.environ["PATH"].split(os.pathsep) if Path(d).resolve() != venv_bin.resolve()]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    modulefiles = tmp_path / "modulefiles" / "orchenv"
    modulefiles.mkdir(parents=True)
    lua = [f'prepend_path("PATH", "{venv_bin}")', f'setenv("VIRTUAL_ENV", "{sys.prefix}")']
    (modulefiles / "1.0.lua").write_text("\n".join(lua) + "\n")
    env = {
        "kind": "modules",
        "init": LMOD_INIT,
        "purge": True,
        "use": [str(tmp_path / "modulefiles")],
        "load": ["orchenv/1.0"],
        "python": "python",
    }
    found = _run_and_read(tmp_path, "lmod", env, capsys)
    assert "module load orchenv/1.0" in found["_dry_run"]
    assert found["kind"] == "modules" and found["modules"] == "orchenv/1.0"
    assert found["interpreter"] == str(venv_bin / "python") and found["prefix"] == sys.prefix
    assert found["container"] is None and len(found["packages_sha256"]) == 64 and found["torch"]


def _image_tree(tmp_path: Path) -> tuple[Path, list[str]]:
    """A directory image with mount points for the host's /usr, the base interpreter, the venv, the
    code and the test's folder (bound in), and the binds that fill them."""
    image = tmp_path / "image"
    binds = sorted({"/usr", sys.base_prefix, sys.prefix, str(REPO), str(tmp_path)})
    for folder in ["etc", "tmp", "proc", "sys", "dev", "home", "root", *(b.lstrip("/") for b in binds)]:
        (image / folder).mkdir(parents=True, exist_ok=True)
    for name in ("passwd", "group", "hosts", "resolv.conf"):  # ch-run binds its own over these
        (image / "etc" / name).touch()
    for link in ("bin", "lib", "lib64", "sbin"):  # Debian's merged /usr
        (image / link).symlink_to(f"usr/{link}")
    return image, binds


@pytest.mark.parametrize("form", ["directory", "squashfs"])
def test_charliecloud_image(form: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ch-run of a directory image, and of the same tree as a squashfs file (mounted by ch-run through
    squashfuse), as the job's user: root here, which Charliecloud 0.31 maps into its user namespace."""
    for command in ("ch-run", "mksquashfs"):
        if shutil.which(command) is None:
            pytest.fail(f"{command} missing: slurm/dev-cluster/start.sh installs it")
    image, binds = _image_tree(tmp_path)
    if form == "squashfs":
        squashfs = tmp_path / "image.sqfs"
        squash = ["mksquashfs", str(image), str(squashfs), "-quiet", "-noappend"]
        subprocess.run(squash, check=True, capture_output=True)
        image = squashfs
    env = {"kind": "charliecloud", "image": str(image), "binds": binds, "python": sys.executable}
    found = _run_and_read(tmp_path, f"charliecloud-{form}", env, capsys)
    assert "ch-run --set-env=PYTHONNOUSERSITE=1 -b /" in found["_dry_run"]
    assert f" {image} -- {sys.executable} -u -m submitit.core._submit " in found["_dry_run"]
    assert found["kind"] == "charliecloud" and found["container"] == "charliecloud", "ch-run's CH_RUNNING seen"
    digest = "sha256:" + hashlib.sha256(image.read_bytes()).hexdigest() if form == "squashfs" else "tree-sha256:"
    assert found["image"] == str(image) and found["image_digest"].startswith(digest)
    assert found["user_site_disabled"] is True and found["interpreter"] == sys.executable


def test_venv_by_path(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`kind: venv`: the job sources the venv's activate script and runs its bin/python."""
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    found = _run_and_read(tmp_path, "venv", {"kind": "venv", "path": sys.prefix}, capsys)
    assert f"source {sys.prefix}/bin/activate" in found["_dry_run"]
    assert found["kind"] == "venv" and found["interpreter"] == f"{sys.prefix}/bin/python"
    assert found["prefix"] == sys.prefix and found["container"] is None
