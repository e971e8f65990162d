"""Issue 22, item 5: one path rule. An output folder is resolved once (`~`, symlinks), checked, and
that resolved folder is the one every step uses (the batch script's --output included)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.sweep import paths
from orchestrator.sweep.spec import SpecError, load_spec


def _climb(home: Path) -> str:
    return "~/" + "/".join([".."] * len(home.parts)) + "/etc/orch"


def test_tilde_climbing_out_of_a_shallow_home_is_refused(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "h"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assert main(["plan", str(write_spec(output_dir=_climb(home))), "--skip-data-check"]) == 2
    err = capsys.readouterr().err
    assert "output_dir:" in err and "resolves to /etc/orch" in err and err.count("\n") == 1


def test_tilde_is_expanded_where_it_is_used_not_only_where_it_is_checked(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(output_dir="~/out"))
    assert spec.output_path == home / "out"  # not <cwd>/~/out
    assert spec.snapshot()["spec"]["output_dir"] == str(home / "out")


def test_dry_run_writes_logs_under_the_checked_folder(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    path = write_spec(output_dir="~/sub/../out")
    assert main(["submit", str(path), "--dry-run", "--executor", "slurm", "--skip-data-check"]) == 0
    flat = capsys.readouterr().out.replace("\n", "")  # the console wraps long lines
    outputs = flat.split("#SBATCH --output=")[1:]
    assert outputs and all(out.startswith(f"{home / 'out'}/slurm/") for out in outputs), flat[:2000]


def test_symlinked_output_folder_is_checked_where_it_leads(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "to_etc").symlink_to("/etc")
    with pytest.raises(SpecError, match=r"output_dir: .* resolves to /etc/orch: not a folder for results"):
        load_spec(write_spec(output_dir=str(tmp_path / "to_etc" / "orch")))
    odd = tmp_path / "x;id"
    odd.mkdir()
    (tmp_path / "plain").symlink_to(odd)
    with pytest.raises(SpecError, match=r"output_dir: .* resolves to .*x;id.* has characters other than"):
        load_spec(write_spec(output_dir=str(tmp_path / "plain")))


def test_symlinked_output_folder_inside_an_ordinary_place_is_used_resolved(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert load_spec(write_spec(output_dir=str(tmp_path / "link" / "out"))).output_path == real / "out"


def test_output_path_cannot_differ_from_what_was_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one rule, on the function: the same input gives the same path at check and at use."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    os.makedirs(tmp_path / "a" / "b")
    for value in ("~/a/b/../c", "a/./b", str(tmp_path / "a")):
        assert paths.output_folder(value) == paths.resolve_user_path(value)
        assert paths.resolve_user_path(value).is_absolute()
