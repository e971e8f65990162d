"""`orchestrate datasets describe --out DIR` replaces only files it wrote there itself: a user's
report.md or CSV of the same name was silently replaced; now every output is checked first and a
user's file is refused (one line, exit 2) before anything is written. Reruns still replace
describe's own files (recorded with their hash in `.describe-written.json`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import dataset_fixtures as fx
import pytest

from orchestrator.cli.main import main

MANIFEST = ".describe-written.json"  # describe's record of what it wrote in --out


def _describe(capsys: pytest.CaptureFixture[str], out: Path, *fields: str) -> tuple[int, str]:
    code = main(["datasets", "describe", "digits", *fields, "--out", str(out)])
    return code, capsys.readouterr().err


def _refused(code: int, err: str, path: Path) -> None:
    assert code == 2 and err.count("\n") == 1, err
    assert str(path) in err and "not written by datasets describe" in err and "choose another --out" in err


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("report.md", "# my notes on digits\n"),
        ("imbalance.csv", "mine,1\n"),  # refused before class_counts.csv and report.md are written
    ],
)
def test_users_file_is_kept_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text(text)
    code, err = _describe(capsys, out)
    _refused(code, err, out / name)
    assert (out / name).read_text() == text
    assert [p.name for p in out.iterdir()] == [name]  # no CSV, no chart, no record


def test_rerun_over_its_own_outputs_replaces_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _describe(capsys, out)[0] == 0
    first = (out / "class_counts.csv").read_bytes()
    assert _describe(capsys, out)[0] == 0  # the same report again
    assert _describe(capsys, out, "test_fraction=0.3")[0] == 0  # another split: every file's content changes
    assert (out / "class_counts.csv").read_bytes() != first
    (out / "report.md").write_text((out / "report.md").read_text() + "\nmy note\n")  # edited since: the user's
    code, err = _describe(capsys, out)
    _refused(code, err, out / "report.md")
    assert (out / "report.md").read_text().endswith("\nmy note\n")


def test_folder_without_record_takes_identical_files_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder described before the record existed: its files hold the very bytes describe writes
    again (nothing lost), so a rerun works; a different report there is refused."""
    out = tmp_path / "out"
    assert _describe(capsys, out)[0] == 0
    (out / MANIFEST).unlink()
    assert _describe(capsys, out)[0] == 0 and (out / MANIFEST).is_file()
    (out / MANIFEST).unlink()
    code, err = _describe(capsys, out, "test_fraction=0.3")
    _refused(code, err, out / "class_counts.csv")


def test_unreadable_or_foreign_record_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / MANIFEST)
    code, err = _describe(capsys, out)
    assert code == 2 and err.count("\n") == 1 and MANIFEST in err and "move it aside" in err, err
    (out / MANIFEST).unlink()
    (out / MANIFEST).write_text('{"files": ["report.md"]}\n')
    code, err = _describe(capsys, out)
    assert code == 2 and "not describe's record" in err, err
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST]


def test_stale_own_file_sizes_removed_users_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Describing an in-memory dataset where a file-based one was described removes describe's own
    file_sizes.csv (it would describe another dataset); a user's file of that name stays."""
    root = fx.make_foodx251(tmp_path / "food")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="stratified split impossible"):
        assert main(["datasets", "describe", "foodx251", "--root", str(root), "--out", str(out)]) == 0
    assert (out / "file_sizes.csv").is_file()
    assert _describe(capsys, out)[0] == 0
    assert not (out / "file_sizes.csv").exists()
    (out / "file_sizes.csv").write_text("mine\n")
    assert _describe(capsys, out)[0] == 0
    assert (out / "file_sizes.csv").read_text() == "mine\n"


def test_sweep_checks_every_folder_before_writing_any(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = fx.make_cub200(tmp_path / "cub")
    spec = write_spec(
        "name: two\noutput_dir: {out}\ngrid:\n  backbone: [resnet10t]\n"
        f"  dataset: [digits, {{{{name: cub200, root: {root}}}}}]\n  seed: [0]\n"
    )
    out = tmp_path / "described"
    (out / "cub200").mkdir(parents=True)
    (out / "cub200" / "class_counts.csv").write_text("mine\n")
    with pytest.warns(UserWarning, match="stratified split impossible"):  # the tiny cub200 fixture
        assert main(["datasets", "describe", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out / "cub200" / "class_counts.csv") in err and err.count("\n") == 1, err
    assert sorted(p.name for p in out.iterdir()) == ["cub200"]  # digits (described first) not written either
    assert (out / "cub200" / "class_counts.csv").read_text() == "mine\n"


def test_two_datasets_of_one_folder_name_are_refused(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels that slug to one folder name: the second report replaced the first's files."""
    spec = write_spec(
        "name: two\noutput_dir: {out}\ngrid:\n  backbone: [resnet10t]\n"
        "  dataset: [{{name: digits, label: Digits A}}, {{name: digits, label: digits-a, val_fraction: 0.2}}]\n"
        "  seed: [0]\n"
    )
    out = tmp_path / "described"
    assert main(["datasets", "describe", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'Digits A' and 'digits-a' both describe into" in err and err.count("\n") == 1, err
    assert not out.exists()
