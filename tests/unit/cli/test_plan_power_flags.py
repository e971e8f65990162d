"""`plan --detect DELTA --variance-from FOLDER`: bad flags are one line on stderr before the plan is printed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.cli import power
from orchestrator.cli.main import main
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

SITE = """
throughput:
  - {backbone: resnet10t, image_size_px: 16, images_per_s: 1000, device: NVIDIA H100}
"""
ADAPTIVE = "seeds={initial: 3, max: 7, step: 2, stop: {halfwidth: 0.5}}"


def _plan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["plan", *argv, "--skip-data-check"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one stderr line of a refused plan: exit 2 (as argparse's usage errors) and no plan printed."""
    code, out, err = _plan(capsys, *argv)
    assert (code, out) == (2, ""), err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err


def _finished(write_spec: Callable[..., Path], tmp_path: Path) -> Path:
    """A finished sweep's output folder (sweep.yaml and three seeds of completed runs), as submit leaves it."""
    spec = load_spec(write_spec(filename="finished.yaml"), [f"output_dir={tmp_path / 'finished'}", "grid.seed=[0,1,2]"])
    for run in plan(spec):
        fake_run(spec, run, 0.8 + 0.01 * run.seed + (0.02 * (run.seed % 2) if run.ablation != "Baseline" else 0))
    store.write_snapshot(spec, spec.output_path)
    return spec.output_path


def test_variance_from_without_detect_is_a_usage_error(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was ignored without a word (the plan printed, exit 0): only --detect and adaptive seeds read it."""
    folder = _finished(write_spec, tmp_path)
    err = _refused(capsys, str(write_spec()), "--variance-from", str(folder))
    assert "--variance-from is read only by --detect DELTA and by adaptive seeds" in err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "absent", "no such folder"),
        (lambda tmp: _touch(tmp / "a_file.yaml"), "not a folder"),
        (lambda tmp: _mkdir(tmp / "empty"), "no sweep.yaml in it; is this a sweep's output folder"),
    ],
    ids=["missing", "file", "not-a-sweep"],
)
def test_a_bad_variance_folder_is_refused_before_the_plan_is_printed(
    write_spec: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], Path],
    message: str,
) -> None:
    """It was read after the plan and its cost had been printed (a file was even read as a sweep file)."""
    folder = make(tmp_path)
    err = _refused(capsys, str(write_spec()), "--detect", "1.0", "--variance-from", str(folder))
    assert f"plan: --variance-from {folder}: {message}" in err
    err = _refused(capsys, str(write_spec()), "--detect", "1.0", "--variance-from", str(folder), "--json")
    assert message in err


def test_an_unreadable_variance_folder_is_refused(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _finished(write_spec, tmp_path)
    real = os.access
    monkeypatch.setattr(power.os, "access", lambda path, mode: Path(path) != folder and real(path, mode))
    err = _refused(capsys, str(write_spec()), "--detect", "1.0", "--variance-from", str(folder))
    assert "folder not readable (permission denied)" in err


def test_a_broken_snapshot_in_the_variance_folder_is_refused_first(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _finished(write_spec, tmp_path)
    (folder / store.SWEEP_FILE).write_text("spec: [")
    err = _refused(capsys, str(write_spec()), "--detect", "1.0", "--variance-from", str(folder))
    assert "sweep.yaml" in err


def test_detect_reads_the_finished_sweep(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _finished(write_spec, tmp_path)
    code, out, err = _plan(capsys, str(write_spec()), "--detect", "1.0", "--variance-from", str(folder))
    assert code == 0, err
    table = out.split("seeds to detect", 1)[1]
    assert "finished sweep" in table and folder.name in table


def test_adaptive_seeds_read_it_without_detect(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Adaptive seeds' expected device-hours use the finished sweep's spread: no --detect needed there."""
    code, out, err = plan_adaptive_from(_finished(write_spec, tmp_path), write_spec, tmp_path, capsys)
    assert code == 0, err
    line = " ".join(next(x for x in out.splitlines() if "GPU-hours: minimum" in x).split())
    assert "if no delta is real" in line and "finished sweep" in line


@pytest.mark.parametrize("delta", ["nan", "inf", "-inf", "0", "-1", "1e999", "x"])
def test_detect_takes_only_a_finite_delta_above_zero(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str], delta: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["plan", str(write_spec()), f"--detect={delta}"])
    captured = capsys.readouterr()
    assert exited.value.code == 2 and captured.out == ""
    assert f"argument --detect: {delta!r} " in captured.err.splitlines()[-1]


def _touch(path: Path) -> Path:
    path.write_text("name: x\n")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def plan_adaptive_from(
    folder: Path, write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """`plan` of an adaptive-seeds sweep with a site's throughput and `--variance-from folder`."""
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    path = write_spec()
    path.write_text(path.read_text().replace("  seed: [0, 1]\n", ""))
    return _plan(capsys, str(path), ADAPTIVE, f"site={site}", "--variance-from", str(folder))
