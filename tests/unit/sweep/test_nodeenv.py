"""The node environment block (`slurm.env`): allow-lists, rendering, golden batch scripts, dry-run.

The golden files under tests/golden/ are the exact sbatch scripts submitit writes for each kind
(its own renderer, and its own executor where `srun` exists). Regenerate them after an intended
change with ORCHESTRATE_UPDATE_GOLDEN=1 and read the diff.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.launch import slurm as slurm_launch
from orchestrator.launch import slurmcli
from orchestrator.sweep import image_digest, node_storage, nodeenv, site, yamlio
from orchestrator.sweep.node_storage import NETWORK_FILESYSTEMS as NETWORK
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SpecError, load_spec

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
FOLDER = "/shared/results/demo/slurm"  # the submitit folder every golden script names
ARRAY_TASKS = 4
EPOCH_NS = 1_700_000_000_000_000_000  # fixed modification time of the files of test images


def _images(tmp_path: Path) -> dict[str, Path]:
    """A fake SIF, a squashfs and a directory image with fixed content and times (stable digests)."""
    images = tmp_path / "images"
    tree = images / "ch-torch"
    for sub in ("usr/bin", "etc", "results"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    files = {images / "torch.sif": b"SIF fake image", images / "torch.sqsh": b"hsqs fake", tree / "etc/os": b"x\n"}
    for path, data in files.items():
        path.write_bytes(data)
        os.utime(path, ns=(EPOCH_NS, EPOCH_NS))
    return {"sif": images / "torch.sif", "sqsh": images / "torch.sqsh", "dir": tree}


def _recipes(images: dict[str, Path]) -> dict[str, tuple[dict[str, object], int]]:
    """kind -> (slurm block, GPUs per node) of each golden script."""
    return {
        "none": ({}, 0),
        "venv": ({"env": {"kind": "venv", "path": "/shared/envs/orch"}}, 0),
        "conda": ({"env": {"kind": "conda", "name": "torch24", "executable": "/opt/miniforge3/bin/conda"}}, 1),
        "modules": (
            {
                "env": {
                    "kind": "modules",
                    "purge": True,
                    "init": "/usr/share/lmod/lmod/init/bash",
                    "use": ["/shared/modulefiles"],
                    "load": ["cuda/12.4", "orchestrate/1.0"],
                },
                "setup": ["nvidia-smi -L"],
            },
            1,
        ),
        "apptainer": (
            {"env": {"kind": "apptainer", "image": str(images["sif"]), "binds": ["/shared/data:/data:ro"]}},
            1,
        ),
        "apptainer-uri-cpu": ({"env": {"kind": "apptainer", "image": "docker://pytorch/pytorch:2.4.0"}}, 0),
        "pyxis": (
            {"env": {"kind": "pyxis", "image": "nvcr.io#nvidia/pytorch:24.05-py3", "mounts": ["/shared:/shared"]}},
            4,
        ),
        "pyxis-squashfs": (
            {"env": {"kind": "pyxis", "image": str(images["sqsh"]), "mount_home": False, "no_user_site": False}},
            1,
        ),
        "charliecloud": ({"env": {"kind": "charliecloud", "image": str(images["dir"]), "binds": ["/shared"]}}, 0),
        # the other kinds of array: one run across 2 nodes x 4 ranks; 4 runs packed into one 4-GPU task
        "multinode": ({"nodes": 2, "tasks_per_node": 4, "cpus_per_task": 8, "mem_gb": 64}, 4),
        "packed": ({"runs_per_task": 4, "pack_gpus": True, "cpus_per_task": 8}, 4),
    }


def _script(block: dict[str, object], gpus: int) -> tuple[str, dict[str, object], str]:
    config = site.SlurmConfig.model_validate({"partition": "gpu", "gpus_per_node": gpus, **block})
    params = slurmcli.executor_parameters(config, "orch-demo")
    python = slurmcli.node_command(config).python
    return slurmcli.sbatch_header(Path(FOLDER), params, ARRAY_TASKS, python), params, python


KINDS = ["none", "venv", "conda", "modules", "apptainer", "apptainer-uri-cpu", "pyxis", "pyxis-squashfs"]
KINDS += ["charliecloud"]
ARRAYS = ["multinode", "packed"]  # the other kinds of array, with no env block


@pytest.mark.parametrize("kind", [*KINDS, *ARRAYS])
def test_golden_batch_script(kind: str, tmp_path: Path) -> None:
    block, gpus = _recipes(_images(tmp_path))[kind]
    script, _, _ = _script(block, gpus)
    # Paths of this test's images and of this interpreter are placeholders in the golden file.
    text = script.replace(str(tmp_path), "/shared").replace(slurmcli.task_command(Path(FOLDER)).split()[0], "PYTHON")
    golden = GOLDEN / f"{kind}.sbatch"
    if os.environ.get("ORCHESTRATE_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden.name} differs (ORCHESTRATE_UPDATE_GOLDEN=1 regenerates it)"


@pytest.mark.skipif(shutil.which("srun") is None, reason="submitit's SlurmExecutor needs srun on PATH")
@pytest.mark.parametrize("kind", ["apptainer", "pyxis", "charliecloud", "multinode", "packed"])
def test_submitit_writes_the_same_script(kind: str, tmp_path: Path) -> None:
    """What submitit's own executor writes for an array equals the preview (and so the golden)."""
    import submitit

    block, gpus = _recipes(_images(tmp_path))[kind]
    preview, params, python = _script(block, gpus)
    executor = submitit.SlurmExecutor(folder=FOLDER, python=python)
    executor.update_parameters(**params)
    executor.parameters["map_count"] = ARRAY_TASKS  # what submitit sets for an array (batch())
    assert executor._make_submission_file_text(executor._submitit_command_str, "uid") == preview


def test_container_kinds_keep_user_site_out(tmp_path: Path) -> None:
    recipes = _recipes(_images(tmp_path))
    for kind in ("apptainer", "pyxis", "charliecloud"):
        script, _, _ = _script(*recipes[kind])
        assert "PYTHONNOUSERSITE=1" in script, kind
    assert "--nv" in _script(*recipes["apptainer"])[0], "GPUs requested: --nv by default"
    assert "--nv" not in _script(*recipes["apptainer-uri-cpu"])[0], "no GPUs: no --nv"
    forced = {"env": {"kind": "apptainer", "image": "docker://x/y:1", "nv": True}}
    assert "--nv" in _script(forced, 0)[0]


def test_image_digests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = _images(tmp_path)
    assert image_digest.image_digest(str(images["sif"])) == "sha256:" + hashlib.sha256(b"SIF fake image").hexdigest()
    assert image_digest.image_digest("docker://pytorch/pytorch:2.4.0") is None
    tree = image_digest.image_digest(str(images["dir"]))
    assert tree is not None and tree.startswith("tree-sha256:")
    (images["dir"] / "etc/os").write_bytes(b"changed, longer\n")
    assert image_digest.image_digest(str(images["dir"])) != tree, "a changed file changes the directory digest"
    monkeypatch.setattr(image_digest, "MAX_TREE_ENTRIES", 0)
    bounded = image_digest.image_digest(str(images["dir"]))
    assert bounded is not None and bounded.startswith("tree-sha256-first0:")
    with pytest.raises(ValueError, match="No such file"):
        image_digest.image_digest(str(tmp_path / "missing.sif"))
    os.mkfifo(tmp_path / "fifo.sif")  # hashing a FIFO or /dev/zero never ended: refused
    for odd in (tmp_path / "fifo.sif", Path("/dev/zero")):
        with pytest.raises(ValueError, match="neither a file nor a folder"):
            image_digest.image_digest(str(odd))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"kind": "venv", "path": "envs/orch"}, "path: path must be an absolute path"),
        ({"kind": "venv", "pth": "/x"}, "pth: unknown key; valid keys of this kind: kind, path"),
        ({"kind": "docker", "image": "x"}, "env.kind must be one of venv, conda, modules"),
        ({"kind": "conda"}, "set exactly one of `name` and `prefix`"),
        ({"kind": "conda", "name": "x; rm -rf ~"}, "name: name must be letters"),
        ({"kind": "modules", "load": ["cuda/12.4\nrm -rf ~"]}, "load: module name must be"),
        ({"kind": "modules", "load": []}, "load: List should have at least 1 item"),
        ({"kind": "apptainer", "image": "/img.sif", "binds": ["/data:/data$(id)"]}, "binds: bind must be"),
        ({"kind": "apptainer", "image": "/img.sif", "python": "python3 -c 'x'"}, "python: python must be"),
        ({"kind": "pyxis", "image": "nvcr.io#x`id`"}, "image: image must be"),
        ({"kind": "charliecloud", "image": "docker://x"}, "image: image must be an absolute path"),
        ({"kind": "charliecloud", "image": "/img", "binds": ["/a:/b:ro"]}, "bind takes SRC"),
        ({"kind": "apptainer", "image": "--writable"}, "image: image must be"),
        ({"kind": "modules", "load": ["--force"]}, "load: module name must be"),
        ({"kind": "conda", "name": "-n"}, "name: name must be"),
    ],
)
def test_env_strings_are_allow_listed(env: dict[str, object], message: str, tmp_path: Path) -> None:
    profile = tmp_path / "site.yaml"
    profile.write_text(yamlio.dumps({"partition": "gpu", "env": env}))
    with pytest.raises(site.SiteError, match=r"site\.yaml: env: ") as info:
        site.load_site(profile, "cluster profile")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_spec_env_overrides_the_profile_and_not_the_run_ids(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    profile = tmp_path / "site.yaml"
    profile.write_text("partition: gpu\nenv: {kind: conda, name: torch24}\n")
    plain = load_spec(write_spec())
    assert isinstance(site.resolve_slurm(plain.slurm, str(profile)).env, nodeenv.CondaEnv), "the profile's env"
    with_env = load_spec(write_spec(slurm={"env": {"kind": "venv", "path": "/shared/envs/orch"}}))
    config = site.resolve_slurm(with_env.slurm, str(profile))
    assert isinstance(config.env, nodeenv.VenvEnv) and config.partition == "gpu", "the spec's env wins, whole"
    assert [r.run_id for r in plan(with_env)] == [r.run_id for r in plan(plain)], "env is not part of run ids"


def test_spec_env_error_names_file_and_field(write_spec: Callable[..., Path]) -> None:
    path = write_spec(slurm={"env": {"kind": "venv", "path": "rel/venv"}})
    with pytest.raises(SpecError, match=r"sweep.yaml: slurm.env: path: path must be an absolute path"):
        load_spec(path)


def test_dry_run_prints_each_task_command(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _images(tmp_path)["dir"]
    env = f"slurm.env={{kind: charliecloud, image: {image}, binds: [/shared]}}"
    assert main(["submit", str(write_spec()), "--executor", "slurm", "--dry-run", env]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("each task runs: "))
    assert f"ch-run --set-env=PYTHONNOUSERSITE=1 -b /shared {image} -- python3 -u -m submitit.core._submit" in line
    assert "export ORCHESTRATE_ENV_IMAGE_DIGEST=tree-sha256:" in out


def test_dry_run_refuses_a_missing_image(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = f"slurm.env={{kind: apptainer, image: {tmp_path}/nope.sif}}"
    assert main(["submit", str(write_spec()), "--executor", "slurm", "--dry-run", env]) == 2
    err = capsys.readouterr()
    assert "slurm.env: image " in err.out + err.err and "nope.sif" in err.out + err.err


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a second filesystem (/dev/shm)")
def test_unshared_interpreter_rule(tmp_path: Path) -> None:
    """Output on another filesystem (tmpfs), HOME elsewhere: the interpreter's folder is not shared."""
    prefix = os.path.realpath(sys.prefix)
    if node_storage._fstype(prefix, node_storage._mounts()) in NETWORK or prefix.startswith(("/usr/", "/dev/shm/")):
        pytest.skip("this interpreter is shared by the rule whatever the output folder")
    assert sys.prefix in node_storage.unshared_interpreter(Path("/dev/shm/results"), home=str(tmp_path))
    assert sys.prefix not in node_storage.unshared_interpreter(Path(prefix) / "results", home=str(tmp_path)), "same fs"
    assert sys.prefix not in node_storage.unshared_interpreter(Path("/dev/shm/results"), home=prefix), "under $HOME"


def test_dry_run_warning_only_without_env(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_storage, "unshared_interpreter", lambda output, home=None: [sys.prefix])
    spec = str(write_spec())
    assert main(["submit", spec, "--executor", "slurm", "--dry-run"]) == 0
    assert f"warning: jobs run {sys.executable}" in " ".join(capsys.readouterr().out.split())
    env = "slurm.env={kind: venv, path: /shared/envs/orch}"
    assert main(["submit", spec, "--executor", "slurm", "--dry-run", env]) == 0
    assert "warning: jobs run" not in capsys.readouterr().out, "an env block: the user said where Python is"


def test_provenance_reads_what_the_script_exports(tmp_path: Path) -> None:
    """The node side: what the batch script exported, plus what the interpreter itself says."""
    import json
    import subprocess
    from importlib import metadata

    from trainers.runtime import envinfo

    assert (envinfo.ENV_KIND, envinfo.ENV_IMAGE, envinfo.ENV_IMAGE_DIGEST) == (
        nodeenv.ENV_KIND,
        nodeenv.ENV_IMAGE,
        nodeenv.ENV_IMAGE_DIGEST,
    ), "the script exports what the node reads"
    exports = {
        envinfo.ENV_KIND: "apptainer",
        envinfo.ENV_IMAGE: "/shared/images/torch.sif",
        envinfo.ENV_IMAGE_DIGEST: "sha256:" + "ab" * 32,
        "APPTAINER_CONTAINER": "/shared/images/torch.sif",  # what apptainer sets inside its containers
        "PYTHONNOUSERSITE": "1",
    }
    code = "import json; from trainers.runtime import envinfo; print(json.dumps(envinfo.environment()))"
    env = {**os.environ, **exports, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    assert (found["kind"], found["image"], found["image_digest"]) == tuple(exports[k] for k in list(exports)[:3])
    assert found["container"] == "apptainer" and found["user_site_disabled"] is True
    assert found["interpreter"] == sys.executable and found["torch"] and found["packages_count"] > 10
    packages, tool = envinfo.installed_packages()
    assert f"torch=={metadata.version('torch')}" in packages and packages == sorted(packages)
    assert found["packages_sha256"] == hashlib.sha256("\n".join(packages).encode()).hexdigest()
    assert tool is None or tool == found["tool_version"]


def _readme_recipes() -> list[str]:
    """The YAML blocks of the docs' "Your cluster's environment" section (docs/how-to/cluster.md)."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "how-to" / "cluster.md").read_text()
    section = text.split("### Your cluster's environment", 1)[1].split("\n### ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```yaml\n")[1:]]


def test_readme_recipes_parse_and_plan(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every recipe is a cluster profile (or a spec fragment) that loads, plans and renders; the
    example images do not exist here, so their digests are a placeholder."""
    monkeypatch.setattr(nodeenv, "image_digest", lambda image: "sha256:" + "0" * 64 if image[0] == "/" else None)
    recipes = _readme_recipes()
    assert len(recipes) >= 8, "venv, conda, modules, apptainer, pyxis, charliecloud, one GPU, GPU type"
    kinds = set()
    for index, recipe in enumerate(recipes):
        data = yamlio.loads(recipe)
        profile = tmp_path / f"recipe{index}.yaml"
        profile.write_text("partition: gpu\n" if "defaults" in data else recipe)
        spec = load_spec(write_spec(), [f"defaults.{k}={v}" for k, v in data.get("defaults", {}).items()])
        config = site.resolve_slurm(spec.slurm, str(profile))
        runs = plan(spec)
        job = slurm_launch.job_resources(config, runs[0])
        params = slurmcli.executor_parameters(job, "orch-tiny")
        script = slurmcli.sbatch_header(tmp_path, params, len(runs), slurmcli.node_command(job).python)
        if config.env is not None:
            kinds.add(config.env.kind)
            assert f"export ORCHESTRATE_ENV_KIND={config.env.kind}" in script
        if "defaults" in data:
            assert "#SBATCH --gpus-per-node=1" in script and "#SBATCH --ntasks-per-node=1" in script
        if "constraint" in data:
            assert "#SBATCH --constraint='a100|h100'" in script
    assert kinds == set(nodeenv.KINDS)


def test_output_folder_must_be_bound_into_containers(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    out = Path("/shared/results/demo")

    def unbound(env: dict[str, object], output: Path = out) -> str | None:
        return node_storage.unbound_output(nodeenv.parse(env), output, home=home)

    image = {"image": "docker://x/y:1"}
    assert unbound({"kind": "apptainer", **image}) is not None
    assert unbound({"kind": "apptainer", **image, "binds": ["/shared/results"]}) is None
    assert unbound({"kind": "apptainer", **image, "binds": ["/scratch/r:/shared"]}) is None, "a destination counts"
    assert unbound({"kind": "apptainer", **image}, Path(home) / "results") is None, "apptainer binds $HOME"
    pyxis = {"kind": "pyxis", **image, "mount_home": False}
    message = unbound(pyxis, Path(home) / "results")
    assert message is not None and "not under a bind of the pyxis container" in message
    charliecloud = {"kind": "charliecloud", "image": "/img", "binds": ["/data"]}
    assert unbound(charliecloud) is not None and unbound(charliecloud, Path("/tmp/results")) is None
    assert unbound({"kind": "venv", "path": "/envs/x"}) is None, "not a container: the node's own filesystem"
