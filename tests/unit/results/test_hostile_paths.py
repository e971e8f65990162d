"""Issue 22, item 5: one path rule. An output folder is resolved once (`~`, symlinks), checked, and
that resolved folder is the one every step uses (the batch script's --output included)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.results import collect, outputs
from orchestrator.sweep import paths
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SpecError, SweepSpec, load_spec


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


# --------------------------------------------- item 11: collect writes only inside its results folder


SPEC = """
name: writes
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [resnet10t], dataset: [digits], seed: [0, 1]}}
tables: [{{formats: [md, csv]}}]
"""


@pytest.fixture
def collected(write_spec: Callable[..., Path]) -> SweepSpec:
    spec = load_spec(write_spec(SPEC))
    store.write_snapshot(spec, spec.output_path)
    for index, run in enumerate(plan(spec)):
        fake_run(spec, run, 0.9 + 0.01 * index, epochs=2, classes=["a", "b"])
    return spec


def test_symlinked_tables_folder_is_refused(collected: SweepSpec, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (collected.output_path / "tables").symlink_to(elsewhere)
    with pytest.raises(SpecError, match=r"tables: a symbolic link; collect writes only inside"):
        collect.write_tables(collected, collected.output_path)
    assert list(elsewhere.iterdir()) == []


def test_symlinked_report_img_is_refused_and_nothing_there_deleted(collected: SweepSpec, tmp_path: Path) -> None:
    elsewhere = tmp_path / "pictures"
    elsewhere.mkdir()
    (elsewhere / "holiday.png").write_bytes(b"png")
    (collected.output_path / "report").mkdir()
    (collected.output_path / "report" / "img").symlink_to(elsewhere)
    with pytest.raises(SpecError, match=r"img: a symbolic link; collect writes only inside"):
        collect.write_tables(collected, collected.output_path, report=True)
    assert [p.name for p in elsewhere.iterdir()] == ["holiday.png"]


def test_files_collect_did_not_write_are_neither_replaced_nor_deleted(collected: SweepSpec) -> None:
    root = collected.output_path
    collect.write_tables(collected, root, report=True)
    img = root / "report" / "img"
    ours = sorted(p.name for p in img.iterdir())
    assert ours and (root / outputs.MANIFEST).is_file()
    collect.write_tables(collected, root, report=True)  # its own files: replaced freely
    (img / "theirs.png").write_bytes(b"not ours")
    # Refused with every other output, before anything is written (the report's own check comes later).
    with pytest.raises(SpecError, match=r"theirs\.png: exists and was not written by collect"):
        collect.write_tables(collected, root, report=True)
    assert (img / "theirs.png").read_bytes() == b"not ours"
    (img / "theirs.png").unlink()
    (root / "tables" / "table.md").write_text("my own notes\n")  # edited after collect wrote it
    with pytest.raises(SpecError, match=r"table\.md: exists and was not written by collect \(or was edited since\)"):
        collect.write_tables(collected, root)
    assert (root / "tables" / "table.md").read_text() == "my own notes\n"


def test_stale_figures_of_collect_are_removed_and_only_those(collected: SweepSpec) -> None:
    root = collected.output_path
    collect.write_tables(collected, root, report=True)
    img = root / "report" / "img"
    stale = img / "old-cell.png"
    stale.write_bytes(b"old")
    written = outputs.Outputs(root)
    written.record(stale, b"old")
    written.save()
    collect.write_tables(collected, root, report=True)
    assert not stale.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="needs to give a file to another user (root)")
def test_another_users_folder_collected_before_the_manifest_is_not_overwritten(collected: SweepSpec) -> None:
    root = collected.output_path
    (root / "tables").mkdir()
    (root / "tables" / "table.md").write_text("their table\n")
    os.chown(root / "tables" / "table.md", 4242, 4242)
    with pytest.raises(SpecError, match=r"table\.md: exists and was not written by collect"):
        collect.write_tables(collected, root)
    assert (root / "tables" / "table.md").read_text() == "their table\n"


def test_a_legacy_folder_of_this_user_is_taken_over(collected: SweepSpec) -> None:
    """Collected before the manifest existed: the user's own files are collect's (that is how they were made)."""
    root = collected.output_path
    collect.write_tables(collected, root, report=True)
    (root / outputs.MANIFEST).unlink()
    collect.write_tables(collected, root, report=True)
    assert (root / outputs.MANIFEST).is_file()
