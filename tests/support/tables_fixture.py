"""Fixture run folders for table and report tests: what the trainer leaves behind, written by hand."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from orchestrator import store
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec
from trainers import rundir
from trainers.rundir import State

DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC

HOSTILE_SPEC = """
name: hostile_render
output_dir: {out}
defaults: {{data: {{image_size_px: 16, batch_size: 8}}, epochs: 1}}
grid:
  backbone: [test_resnet]
  dataset: [{{name: digits, label: {dataset}}}]
  seed: [0, 1]
modifiers:
  aug: {{data.augment: {{hflip_p: 0.25}}}}
ablations:
  Baseline: []
  {row}: [aug]
tables:
  - {{name: table, formats: [md, tex, html, csv]{template}}}
"""
"""A two-row spec whose row label, dataset label and table template (YAML text) the hostile-input
tests and bench/fuzz_render.py fill in; `{out}` is its output folder."""


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    rundir.write_text(path, buffer.getvalue())


def fake_run(
    spec: SweepSpec,
    run: RunSpec,
    top1: float | None,
    *,
    gflops: float = 1.0,
    params_m: float = 2.0,
    state: State = State.COMPLETED,
    commit: str = "abcdef1234567890",
    dirty: bool = False,
    device: str = "NVIDIA A100-SXM4-80GB",
    processes: int = 1,
    wall_s: float = 3600.0,
    day: int = 0,
    extra_test: dict[str, Any] | None = None,
    classes: list[str] | None = None,
    epochs: int = 0,
    root: Path | None = None,
) -> Path:
    """A run folder as the trainer leaves it: config, status with times, metrics, and optionally
    history.csv (`epochs` rows), confusion_matrix.csv and per_class.csv (`classes`)."""
    path = store.run_path(root or store.sweep_root(spec), run.run_id)
    store.prepare(run, path)
    if state is State.COMPLETED and top1 is not None:
        test = {"top1": top1, "macro_f1": top1 - 0.01, **(extra_test or {})}
        metrics = {
            "test": test,
            "complexity": {"gflops": gflops, "params_m": params_m},
            "provenance": {"git_commit": commit, "git_dirty": dirty, "device": device, "num_processes": processes},
            "timing": {"wall_s": wall_s},
        }
        rundir.write_json(path / rundir.METRICS, metrics)
    status = rundir.update_status(path, state).dump()
    status["started_at"] = T0 + day * DAY
    if state in (State.COMPLETED, State.FAILED):
        status["finished_at"] = T0 + day * DAY + wall_s
    rundir.write_json(path / rundir.STATUS, status)
    if epochs:
        _fake_history(path, run, epochs)
    if classes and state is State.COMPLETED:
        _fake_tables(path, classes)
    return path


def _fake_history(path: Path, run: RunSpec, epochs: int) -> None:
    """history.csv with `epochs` rows that improve with the epoch and differ by seed."""
    rows = [
        {
            "epoch": e + 1,
            "train_loss": 2.0 / (e + 1) + 0.01 * run.seed,
            "val_loss": 2.2 / (e + 1) + 0.02 * run.seed,
            "val_top1": min(0.99, 0.5 + 0.1 * e - 0.04 * run.seed),
            "val_macro_f1": min(0.98, 0.45 + 0.1 * e - 0.04 * run.seed),
            "lr": 1e-3,
            "epoch_s": 1.0,
        }
        for e in range(epochs)
    ]
    write_csv(path / rundir.HISTORY, rows)


def _fake_tables(path: Path, classes: list[str]) -> None:
    """confusion_matrix.csv and per_class.csv of the test split."""
    n = len(classes)
    matrix = [
        {
            "true \\ predicted": name,
            **{other: (8 if i == j else (1 if j == (i + 1) % n else 0)) for j, other in enumerate(classes)},
        }
        for i, name in enumerate(classes)
    ]
    write_csv(path / "confusion_matrix.csv", matrix)
    per_class = [
        {"class": name, "precision": 0.8, "recall": 0.8, "f1": 0.5 + 0.4 * i / max(1, n - 1), "support": 9 + i}
        for i, name in enumerate(classes)
    ]
    write_csv(path / "per_class.csv", per_class)


REPORT_SPEC = """
name: report_fixture
output_dir: {out}
defaults: {data: {image_size_px: 16, batch_size: 8}, epochs: 1}
grid:
  backbone: [test_resnet]
  dataset: [{name: digits, label: Digits}]
  seed: [0, 1, 2]
modifiers:
  aug: {data.augment: {hflip_p: 0.25}}
  dropout: {model.head_dropout: 0.45}
ablations:
  Baseline: []
  + Augmentation: [aug]
  + Augmentation + Dropout: [aug, dropout]
budget: {max_gflops_increase_pct: 5}
tables:
  - {name: table, metric: top1}
  - {name: f1, metric: [top1, macro_f1], columns: [dataset, metric]}
"""
CLASSES = [str(d) for d in range(10)]


def report_fixture(folder: Path) -> tuple[SweepSpec, list[RunSpec]]:
    """A small finished-ish sweep: Baseline 3 seeds, + Augmentation 2 seeds and one running,
    + Augmentation + Dropout not started. Histories, confusion matrices, per-class tables."""
    from orchestrator.sweep.plan import plan
    from orchestrator.sweep.spec import load_spec

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report_fixture.yaml"
    path.write_text(REPORT_SPEC.replace("{out}", str(folder / "results")))
    spec = load_spec(path)
    runs = plan(spec)
    store.write_snapshot(spec, spec.output_path)
    for run in runs:
        if run.ablation == "Baseline":
            fake_run(spec, run, 0.95 + 0.01 * run.seed, epochs=8, classes=CLASSES, day=run.seed)
        elif run.ablation == "+ Augmentation":
            state = State.RUNNING if run.seed == 2 else State.COMPLETED
            fake_run(spec, run, 0.97 + 0.005 * run.seed, epochs=5 if run.seed == 2 else 8, classes=CLASSES, state=state)
    return spec, runs


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 4000) -> Path:
    """A headless-Chromium screenshot of a local HTML file (no network: file:// only)."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise FileNotFoundError("chromium not found; `make report-tools` installs Debian's chromium package")
    command = [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={width},{height}",
        f"--screenshot={png}",
        html.resolve().as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return png


if __name__ == "__main__":
    # `make report-screenshot`: build the fixture sweep's report and screenshot it.
    import sys

    from orchestrator.results import collect

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/report-screenshot").resolve()
    spec, _ = report_fixture(out)
    written = collect.write_tables(spec, spec.output_path, report=True)
    assert written.report_path is not None
    png = screenshot(written.report_path, out / "report.png")
    print(f"report: {written.report_path}\nscreenshot: {png}")


FOUR_RUNS_SPEC = """
name: {name}
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [resnet10t], dataset: [digits], seed: [0, 1]}}
modifiers: {{aug: {{data.augment: {{rotate_deg: 10}}}}}}
ablations: {{Baseline: [], + Aug: [aug]}}
tables: [{{formats: [md, csv]}}]
"""
"""Baseline and + Aug, 2 seeds each: the hostile-read tests and the results fuzzer break its run folders."""


def finished_sweep(spec_path: Path, **run_kwargs: Any) -> tuple[SweepSpec, list[RunSpec]]:
    """The spec file's runs planned, its snapshot written and every run finished (top-1 0.90, 0.91, ...)."""
    from orchestrator.sweep.plan import plan
    from orchestrator.sweep.spec import load_spec

    spec = load_spec(spec_path)
    runs = plan(spec)
    store.write_snapshot(spec, spec.output_path)
    for index, run in enumerate(runs):
        fake_run(spec, run, 0.90 + 0.01 * index, **run_kwargs)
    return spec, runs
