"""No working-directory state: output folders, profiles and site names resolve the same from any
folder (relative output_dir against the spec's folder; names through the profile search path)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import FAST_RUNS

from orchestrator import examples
from orchestrator.cli.main import main
from orchestrator.sweep import searchpath, site
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
PROFILE = "partition: from_{where}\ncpus_per_task: 1\n"


def test_relative_output_dir_is_relative_to_the_spec_file(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_file = write_spec(output_dir="out/here")
    default = write_spec(filename="plain.yaml", output_dir=None)
    for cwd in (tmp_path, REPO, Path("/tmp")):
        monkeypatch.chdir(cwd)
        assert load_spec(spec_file).output_path == tmp_path / "out" / "here"
        assert load_spec(default).output_path == tmp_path / "results" / "tiny"
        assert load_spec(spec_file, ["output_dir=../up"]).output_path == tmp_path.parent / "up"


def test_the_studies_write_to_the_repository_results_folder_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for path in sorted((REPO / "sweeps").glob("*.yaml")):
        spec = load_spec(path, max_runs=None)
        assert spec.output_path == (REPO / "results" / spec.name).resolve(), path.name


def test_a_relative_output_dir_too_high_up_is_refused_against_the_spec_folder(tmp_path: Path) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("name: s\noutput_dir: " + "../" * (len(tmp_path.parts) + 1) + "etc/x\n")
    with pytest.raises(SpecError, match=r"output_dir: .* resolves to /etc/x: not a folder for results"):
        load_spec(spec_file)


@pytest.fixture
def search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Three folders of the search path, each with a `mine` profile naming where it came from."""
    folders = {name: tmp_path / name for name in ("env_a", "env_b", "config", "specdir")}
    for name, folder in folders.items():
        folder.mkdir()
        (folder / "mine.yaml").write_text(PROFILE.format(where=name))
    (folders["config"] / "orchestrate").mkdir()
    profiles = folders["config"] / "orchestrate" / "profiles"
    profiles.mkdir()
    (profiles / "mine.yaml").write_text(PROFILE.format(where="config"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folders["config"]))
    monkeypatch.setenv(searchpath.ENV_PATH, f"{folders['env_a']}:{folders['env_b']}")
    monkeypatch.chdir(tmp_path)
    return folders


def _partition(name: str, spec_dir: Path | None) -> str | None:
    found = site.profile_file(name, spec_dir)
    return site.resolve_slurm(site.SlurmConfig(), found).partition


def test_profile_names_follow_the_search_path_in_order(
    search: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _partition("mine", search["specdir"]) == "from_env_a"
    (search["env_a"] / "mine.yaml").unlink()
    assert _partition("mine", search["specdir"]) == "from_env_b"
    monkeypatch.delenv(searchpath.ENV_PATH)
    assert _partition("mine", search["specdir"]) == "from_config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(search["env_b"]))  # no orchestrate/profiles there
    assert _partition("mine", search["specdir"]) == "from_specdir"
    assert _partition("dev", None) == "debug"  # shipped: the repository's slurm/profiles/dev.yaml
    with pytest.raises(SpecError, match=r"mine: no such cluster profile \(mine.yaml in none of .*names found: .*dev"):
        site.profile_file("mine", None)


def test_a_profile_in_the_working_directory_is_not_found_by_name(search: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "cwdonly.yaml").write_text(PROFILE.format(where="cwd"))
    with pytest.raises(SpecError, match="cwdonly: no such cluster profile"):
        site.profile_file("cwdonly", search["specdir"])
    assert site.profile_file("cwdonly.yaml", None) == str(tmp_path / "cwdonly.yaml")  # a path: the shell's


def test_site_names_follow_the_search_path(search: dict[str, Path], write_spec: Callable[..., Path]) -> None:
    (search["env_b"] / "lab.yaml").write_text("datasets:\n  d: {name: digits, label: From env}\n")
    spec = load_spec(write_spec(site="lab", grid={"dataset": ["site:d"], "seed": [0]}))
    assert spec.site == str(search["env_b"] / "lab.yaml")
    with pytest.raises(SpecError, match=r"site: nolab: no such site"):
        load_spec(write_spec(site="nolab"))


def test_submit_dry_run_finds_a_profile_beside_the_spec_from_another_folder(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = write_spec()
    (spec_file.parent / "lab.yaml").write_text("partition: lab_gpu\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    args = ["submit", str(spec_file), "--executor", "slurm", "--profile", "lab", "--dry-run", "--skip-data-check"]
    assert main(args) == 0
    assert "#SBATCH --partition=lab_gpu" in capsys.readouterr().out


def test_examples_are_shipped_and_copied_without_overwriting(tmp_path: Path) -> None:
    assert examples.path("sweeps/demo.yaml").read_text() == (REPO / "sweeps" / "demo.yaml").read_text()
    copied = examples.copy_to(tmp_path / "first")
    assert [p.relative_to(tmp_path / "first").as_posix() for p in copied] == list(examples.FILES)
    spec = load_spec(tmp_path / "first" / "sweeps" / "demo.yaml")
    assert spec.output_path == tmp_path / "first" / "results" / "demo"
    (tmp_path / "first" / "sites" / "example.yaml").write_text("# mine\n")
    with pytest.raises(FileExistsError):
        examples.copy_to(tmp_path / "first")
    assert (tmp_path / "first" / "sites" / "example.yaml").read_text() == "# mine\n"


def test_examples_into_a_file_or_over_a_file_folder_copy_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DEST a file was a NotADirectoryError traceback; DEST/sites a file copied sweeps/demo.yaml first,
    then refused, although nothing is copied when anything is in the way."""
    (tmp_path / "afile").write_text("mine\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "sites").write_text("mine\n")
    for dest in (tmp_path / "afile", tmp_path / "d"):
        assert main(["examples", str(dest)]) == 2
        err = capsys.readouterr().err
        assert "exists and is not a folder" in err and "nothing was copied" in err and err.count("\n") == 1
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["sites"]


@pytest.mark.slow
def test_plan_submit_status_collect_agree_from_any_folder(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real runs submitted from the spec's folder; status, submit and collect from two others."""
    spec_file = write_spec(output_dir="results/tiny")
    spec_arg = str(spec_file)
    overrides = [*FAST_RUNS, "ablations={Baseline: [], + Aug: [aug]}"]
    monkeypatch.chdir(spec_file.parent)
    assert main(["submit", "sweep.yaml", *overrides, "--executor", "local"]) == 0
    capsys.readouterr()
    for cwd in (tmp_path / "a" / "b", Path("/")):
        cwd.mkdir(parents=True, exist_ok=True)
        monkeypatch.chdir(cwd)
        assert main(["plan", spec_arg, *overrides]) == 0
        assert f"runs -> {tmp_path / 'results' / 'tiny'}" in capsys.readouterr().out.replace("\n", "")
        assert main(["status", spec_arg, *overrides]) == 0
        assert "2 runs: 2 completed" in capsys.readouterr().out
        assert main(["submit", spec_arg, *overrides, "--executor", "local"]) == 0
        assert "0 to run, 2 completed" in capsys.readouterr().out
        assert main(["collect", spec_arg, *overrides]) == 0
        assert (tmp_path / "results" / "tiny" / "tables" / "table.md").is_file()
        capsys.readouterr()
    assert not (tmp_path / "a" / "b" / "results").exists() and not Path("/results").exists()
