"""One typed model for a cluster (sites/*.yaml and slurm/profiles/*.yaml), and its loader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.sweep import site
from orchestrator.sweep.spec import SpecError, load_spec

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("path", [*sorted((REPO / "slurm" / "profiles").glob("*.yaml")), REPO / "sites/example.yaml"])
def test_repository_site_and_profile_files_load_as_one_model(path: Path) -> None:
    loaded = site.load_site(path)
    assert isinstance(loaded, site.Site)
    if "profiles" in path.parts:
        assert loaded.slurm is not None and loaded.slurm.partition


def test_site_slurm_section_is_the_profile_unless_one_is_named(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "datasets:\n  d: {name: digits}\nslurm:\n  partition: gpu\n  account: lab\n  timeout_min: 600\n"
    )
    spec = load_spec(write_spec(site="s.yaml", slurm={"timeout_min": 30}))
    config = site.resolve_slurm(spec.slurm, None, spec.site)
    assert (config.partition, config.account, config.timeout_min) == ("gpu", "lab", 30)
    (tmp_path / "other.yaml").write_text("slurm: {partition: big}\n")
    assert site.resolve_slurm(spec.slurm, str(tmp_path / "other.yaml"), spec.site).partition == "big"


def test_spec_sbatch_flags_add_to_the_profiles(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    """A spec's additional_parameters join the profile's (the spec's value wins for an option both
    set, however it is spelled): the spec's mail-type used to drop the profile's reservation."""
    flags = "{reservation: r1, mail_type: END, exclusive: true}"
    (tmp_path / "p.yaml").write_text(f"slurm:\n  additional_parameters: {flags}\n")
    spec = load_spec(write_spec(slurm={"additional_parameters": {"mail-type": "FAIL", "comment": "x"}}))
    config = site.resolve_slurm(spec.slurm, str(tmp_path / "p.yaml"))
    assert config.additional_parameters == {"reservation": "r1", "exclusive": True, "mail-type": "FAIL", "comment": "x"}
    for slurm in ({"timeout_min": 30}, {"additional_parameters": {}}):  # an empty mapping drops nothing either
        alone = load_spec(write_spec(slurm=slurm))
        assert site.resolve_slurm(alone.slurm, str(tmp_path / "p.yaml")).additional_parameters == {
            "reservation": "r1",
            "mail_type": "END",
            "exclusive": True,
        }


def test_site_dataset_entries_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("datasets:\n  d: {name: imagefolder, root: data, val_fraction: 2}\n")
    with pytest.raises(site.SiteError, match=r"s.yaml: datasets.d.val_fraction: Input should be less than 1$"):
        site.load_site(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("datasets: [a, b]\n", r"datasets: Input should be a valid dictionary"),
        ("checkpoints:\n  1: /x.pth\n", r"checkpoints.1.\[key\]: Input should be a valid string"),
        ("datasets:\n  d: [1]\n", r"datasets.d must be a mapping with at least `name`"),
        ("slurm: {partition: 'a b'}\n", r"slurm.partition: name .* contains a newline"),
    ],
)
def test_site_file_problems_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(site.SiteError, match=message) as info:
        site.load_site(path)
    assert "\n" not in str(info.value)


def test_site_file_that_is_a_folder_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(site.SiteError, match=r"is a folder, not a file"):
        site.load_site(tmp_path)
    path = tmp_path / "latin1.yaml"
    path.write_bytes("datasets: {d: {name: caf\xe9}}\n".encode("latin-1"))
    with pytest.raises(site.SiteError, match=r"latin1.yaml is not UTF-8 text"):
        site.load_site(path)


def test_a_file_that_is_not_a_site_file_is_never_quoted(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    """`site: /etc/shadow`: the error names the file, not its lines."""
    secret = tmp_path / "shadow"
    secret.write_text("root: $6$SECRETHASH$abc:19000:0:99999:7:::\ndaemon: '*:19000:0:99999:7:::'\n")
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(site=str(secret)))
    assert "SECRETHASH" not in str(info.value) and "daemon" not in str(info.value)
    assert "shadow" in str(info.value)
    secret.write_text("datasets:\n  d: {name: digits, root: [SECRETHASH]}\n")
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(site=str(secret)))
    assert "SECRETHASH" not in str(info.value) and "datasets.d.root" in str(info.value)
    secret.write_text("root:*:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n")  # keys: lines ending in ':'
    with pytest.raises(SpecError, match=r"shadow: <key>: unknown key") as info:
        load_spec(write_spec(site=str(secret)))
    assert "20228" not in str(info.value) and "root:" not in str(info.value)


def test_eval_dataset_option_uses_the_one_dataset_parser() -> None:
    from orchestrator.cli import modes

    assert modes._dataset("{name: digits, task: hierarchical}") == {"name": "digits", "task": "hierarchical"}
    assert modes._dataset("digits") == {"name": "digits"}
    assert not hasattr(modes, "parse_dataset")
