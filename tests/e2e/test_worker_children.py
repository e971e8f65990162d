"""Warm local workers through the CLI: a newcomer's ImageFolder sweep with loader workers and an
augmentation row completes; a failed run's log and `status` say what failed and where; and no
process of a worker survives its parent killed, Ctrl-C, or the worker's own crash.

Each test runs `orchestrate` as a real process (in a session of its own, as a terminal would
start it) and reads the process table with psutil.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image
from polling import wait_for

from orchestrator.launch.worker import LOG_ERR
from trainers import rundir

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("circle", "square", "triangle")

# What a newcomer writes from the README: their own class-per-folder images, a flip row, and the
# loader settings left alone except one loader worker (the default is CPUs - 1: 1 on 2 cores).
SWEEP = """
name: shapes
output_dir: out
defaults:
  data: {{image_size_px: 32, batch_size: 8, num_workers: 1{extra}}}
  epochs: {epochs}
grid:
  backbone: [test_resnet]
  dataset: [{datasets}]
  seed: [0]
modifiers:
  flip: {{data.augment: {{hflip_p: 0.5}}}}
ablations:
  + Flip: [flip]
"""


def _images(root: Path, broken: bool = False) -> Path:
    """3 classes x 12 small PNGs; with `broken`, every other file is not an image at all."""
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(12):
            path = root / name / f"{i}.png"
            if broken and i % 2 == 0:
                path.write_bytes(b"not a png")
            else:
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
    return root


def _sweep(tmp_path: Path, datasets: dict[str, Path], epochs: int = 1, extra: str = "") -> Path:
    entries = ", ".join(f"{{name: imagefolder, root: {root}, label: {label}}}" for label, root in datasets.items())
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.format(datasets=entries, epochs=epochs, extra=extra))
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli(*args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)


def _status_files(tmp_path: Path) -> list[dict[str, object]]:
    return [rundir.read_json(path) or {} for path in sorted((tmp_path / "out" / "runs").glob(f"*/{rundir.STATUS}"))]


def test_newcomer_imagefolder_sweep_with_loader_workers_and_a_failure(tmp_path: Path) -> None:
    good, broken = _images(tmp_path / "shapes"), _images(tmp_path / "broken", broken=True)
    sweep = _sweep(tmp_path, {"Shapes": good, "Broken": broken})
    result = _run("submit", str(sweep), "--executor", "local", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr  # one run failed, as it should
    assert "daemonic" not in result.stdout + result.stderr
    by_state = {str(s["state"]): s for s in _status_files(tmp_path)}
    assert sorted(by_state) == ["completed", "failed"], by_state
    failed = by_state["failed"]
    log = Path(str(failed["log_err"])).read_text()
    assert Path(str(failed["log_err"])).name == LOG_ERR
    assert "Traceback (most recent call last)" in log and "BadDataError" in log
    status = _run("status", str(sweep), cwd=tmp_path)
    flat = " ".join(status.stdout.split())  # rich folds the table's cells over lines
    assert "1 completed" in flat and "1 failed" in flat
    assert "BadDataError" in flat.replace(" ", "")
    assert "loaders.py:" in flat.replace(" ", "") and " in " in flat, status.stdout  # file:line in function


def _default_sigint() -> None:
    """Ctrl-C's disposition as a terminal's foreground job has it. A job a non-interactive shell
    started with `&` (a CI runner's, say) inherits SIGINT ignored, and Python keeps an ignored
    SIGINT ignored: the test's Ctrl-C would then never arrive (it failed so in CI, not in a shell)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_long_run(tmp_path: Path) -> tuple[subprocess.Popen[bytes], psutil.Process, list[psutil.Process]]:
    """`orchestrate submit` of a long run with persistent loader workers; returns the CLI, its
    worker, and the worker's descendants once it has some (its loader workers)."""
    shapes = _images(tmp_path / "shapes")
    sweep = _sweep(tmp_path, {"Shapes": shapes}, epochs=10_000, extra=", persistent_workers: true")
    log = (tmp_path / "cli.log").open("wb")
    cli = subprocess.Popen(
        _cli("submit", str(sweep), "--executor", "local"),
        cwd=tmp_path,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
        preexec_fn=_default_sigint,
    )

    def worker_with_children() -> tuple[psutil.Process, list[psutil.Process]] | None:
        for status in _status_files(tmp_path):
            if status.get("state") == "running" and isinstance(status.get("pid"), int):
                worker = psutil.Process(int(status["pid"]))  # type: ignore[call-overload]
                children = worker.children(recursive=True)
                if children:
                    return worker, children
        assert cli.poll() is None, (tmp_path / "cli.log").read_text()
        return None

    try:
        worker, children = wait_for(worker_with_children, 600, "the run's loader workers to start")  # type: ignore[misc]
    except BaseException:
        cli.kill()
        raise
    return cli, worker, children


@contextmanager
def _cleanup(cli: subprocess.Popen[bytes], processes: list[psutil.Process]) -> Iterator[None]:
    """Whatever the test finds, leave no process of it behind for the next test."""
    try:
        yield
    finally:
        for process in [psutil.Process(cli.pid), *processes] if cli.poll() is None else processes:
            with suppress(psutil.NoSuchProcess):
                process.kill()


def _all_gone(processes: list[psutil.Process]) -> bool:
    """Every process has ended (a zombie not yet reaped by init has ended)."""
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def test_killing_the_parent_leaves_no_worker_or_loader_worker(tmp_path: Path) -> None:
    cli, worker, children = _start_long_run(tmp_path)
    with _cleanup(cli, [worker, *children]):
        os.kill(cli.pid, signal.SIGKILL)  # no handler, no atexit, no finally runs in the parent
        cli.wait(timeout=60)
        wait_for(lambda: _all_gone([worker, *children]), 60, "the worker and its loader workers to die")


def test_ctrl_c_stops_the_workers_and_the_run_reads_interrupted(tmp_path: Path) -> None:
    cli, worker, children = _start_long_run(tmp_path)
    with _cleanup(cli, [worker, *children]):
        os.killpg(cli.pid, signal.SIGINT)  # what the terminal does on Ctrl-C: the foreground group
        assert cli.wait(timeout=120) == 130, (tmp_path / "cli.log").read_text()
        wait_for(lambda: _all_gone([worker, *children]), 60, "the worker and its loader workers to die")
    status = _run("status", str(tmp_path / "sweep.yaml"), cwd=tmp_path)
    assert "1 interrupted" in status.stdout, status.stdout


def test_a_crashed_worker_leaves_no_loader_worker_and_fails_only_its_run(tmp_path: Path) -> None:
    cli, worker, children = _start_long_run(tmp_path)
    with _cleanup(cli, children):
        worker.kill()  # as a segfault or the OOM killer would
        wait_for(lambda: _all_gone(children), 60, "the dead worker's loader workers to die")
        assert cli.wait(timeout=300) == 1, (tmp_path / "cli.log").read_text()
    assert "worker process died" in (tmp_path / "cli.log").read_text()
    [status] = _status_files(tmp_path)
    assert status["state"] == "failed" and "worker process died" in str(status["error"])
