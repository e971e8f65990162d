"""Profile and spec values that rendered a batch script other than the one they meant.

Each case was accepted before: a relative container image (no digest, read from the job's folder),
one sbatch flag spelled twice (two `#SBATCH` lines, the later one winning), a setup item that opens
a compound command no later item closes (the job's own srun line read into it, a syntax error on
the node), a bind `SRC:ro` (a destination `ro`), and the test-only fault switch
named with quotes inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.launch import slurmcli
from orchestrator.sweep import site, yamlio
from orchestrator.sweep.spec import SpecError, load_spec


def _script(block: dict[str, object]) -> str:
    """The whole batch script submitit would write for `block` (one 2-task array)."""
    config = site.SlurmConfig.model_validate({"partition": "gpu", **block})
    params = slurmcli.executor_parameters(config, "orch-demo")
    python = slurmcli.node_command(config).python
    return slurmcli.sbatch_header(Path("/shared/results/demo/slurm"), params, 2, python)


def _profile_error(tmp_path: Path, block: dict[str, object]) -> str:
    """The one-line error of a cluster profile holding `block`."""
    profile = tmp_path / "site.yaml"
    profile.write_text(yamlio.dumps({"partition": "gpu", **block}))
    with pytest.raises(site.SiteError) as info:
        site.load_site(profile, "cluster profile")
    message = str(info.value)
    assert "\n" not in message and "site.yaml" in message
    return message


@pytest.mark.parametrize(
    "env",
    [
        {"kind": "apptainer", "image": "torch.sif"},
        {"kind": "apptainer", "image": "../images/torch.sif"},
        {"kind": "apptainer", "image": "ubuntu:22.04"},  # a file to apptainer; docker://ubuntu:22.04 is the image
        {"kind": "pyxis", "image": "./torch.sqsh"},
        {"kind": "pyxis", "image": "images/torch.sqsh"},
    ],
)
def test_relative_container_image_is_refused(env: dict[str, object], tmp_path: Path) -> None:
    message = _profile_error(tmp_path, {"env": env})
    assert "env: image: an image file must be an absolute path" in message


@pytest.mark.parametrize(
    "env",
    [
        {"kind": "apptainer", "image": "docker://pytorch/pytorch:2.4.0"},
        {"kind": "apptainer", "image": "oras://ghcr.io/x/y:1"},
        {"kind": "pyxis", "image": "nvcr.io#nvidia/pytorch:24.05-py3"},
        {"kind": "pyxis", "image": "ubuntu:22.04"},  # an enroot URI, pulled by pyxis
    ],
)
def test_image_uris_still_render(env: dict[str, object]) -> None:
    assert str(env["image"]) in _script({"env": env})


def test_one_flag_spelled_twice_is_refused(tmp_path: Path) -> None:
    flags = {"mail_type": "END", "mail-type": "FAIL"}
    message = _profile_error(tmp_path, {"additional_parameters": flags})
    assert "additional_parameters" in message and "one sbatch flag (--mail-type)" in message
    assert _script({"additional_parameters": {"mail-type": "FAIL"}}).count("--mail-type") == 1


def test_spec_flag_spelled_twice_names_the_spec(write_spec: Callable[..., Path]) -> None:
    path = write_spec(slurm={"additional_parameters": {"mail_user": "a@b.c", "mail-user": "d@e.f"}})
    with pytest.raises(SpecError, match=r"sweep\.yaml: slurm\.additional_parameters: .*one sbatch flag"):
        load_spec(path)


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        (["{"], "setup item 1 opens `{`"),
        (["module load cuda", "if test -d /scratch"], "setup item 2 opens `if`"),
        (["while true"], "opens `while`"),
        (["fi"], "setup item 1 closes `fi`"),
        (["{", "done"], "setup item 2 closes"),  # the profile's words are shown as <value>
    ],
)
def test_setup_item_left_open_is_refused(setup: list[str], says: str, tmp_path: Path) -> None:
    assert says in _profile_error(tmp_path, {"setup": setup})


def test_setup_compound_over_several_items_still_renders() -> None:
    setup = ["if test -d /scratch", "then export TMPDIR=/scratch", "fi"]
    assert "\nif test -d /scratch\nthen export TMPDIR=/scratch\nfi\n" in _script({"setup": setup})


@pytest.mark.parametrize(
    "env",
    [
        {"kind": "apptainer", "image": "docker://x/y:1", "binds": ["/data:ro"]},
        {"kind": "pyxis", "image": "nvcr.io#x/y:1", "mounts": ["/data:ro"]},
        {"kind": "charliecloud", "image": "/", "binds": ["/data:ro"]},
    ],
)
def test_bind_without_destination_is_refused(env: dict[str, object], tmp_path: Path) -> None:
    """`/data:ro` fits SRC:FLAGS, yet every runtime reads the second field as a destination `ro`."""
    assert "DST is an absolute path" in _profile_error(tmp_path, {"env": env})


def test_binds_with_destination_and_flags_still_render() -> None:
    env = {"kind": "apptainer", "image": "docker://x/y:1", "binds": ["/data", "/data:/d", "/data:/e:ro"]}
    assert "--bind /data --bind /data:/d --bind /data:/e:ro docker://x/y:1" in _script({"env": env})


def test_fault_switch_with_quotes_inside_is_refused(tmp_path: Path) -> None:
    message = _profile_error(tmp_path, {"setup": ['export ORCH_FAULT_INJ""ECT=crash']})
    assert "a test-only switch" in message
