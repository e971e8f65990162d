"""`orchestrate plan/submit` check dataset files before anything runs; `orchestrate datasets
describe` writes class counts, imbalance, file sizes and a bar chart."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import dataset_fixtures as fx
import pytest

from orchestrator.cli.main import main

SPEC = """
name: dscheck
output_dir: {out}
defaults:
  data: {{image_size_px: 16, batch_size: 8, num_workers: 0}}
  epochs: 1
grid:
  backbone: [resnet10t]
  dataset: [digits, {{name: cub200, root: ROOT}}]
  seed: [0, 1]
"""


def _spec(write_spec: Callable[..., Path], root: Path) -> Path:
    return write_spec(SPEC.replace("ROOT", str(root)))


def test_plan_fails_on_missing_root_naming_the_grid_value(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(write_spec, tmp_path / "nowhere")
    assert main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"error: {spec}: grid.dataset[1]: dataset 'cub200': root {tmp_path / 'nowhere'} does not exist" in err
    assert main(["submit", str(spec), "--dry-run"]) == 2  # nothing is submitted either
    assert main(["plan", str(spec), "--skip-data-check"]) == 0


def test_plan_fails_on_listed_but_missing_image(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = fx.make_cub200(tmp_path / "cub")
    spec = _spec(write_spec, root)
    assert main(["plan", str(spec)]) == 0
    next((root / "images" / fx.CUB_CLASSES[2]).iterdir()).unlink()
    assert main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "grid.dataset[1]: dataset 'cub200': 1 image(s) listed in" in err


def test_describe_writes_tables_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = fx.make_foodx251(tmp_path / "food")
    out = tmp_path / "report"
    with pytest.warns(UserWarning, match="stratified split impossible"):
        assert main(["datasets", "describe", "foodx251", "--root", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "class counts" in printed and "macaron" in printed
    assert {p.name for p in out.iterdir()} == {
        "class_counts.csv",
        "imbalance.csv",
        "file_sizes.csv",
        "report.md",
        "class_counts.png",
        ".describe-written.json",  # what describe wrote, so a rerun replaces only those
    }
    with (out / "class_counts.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["class"] for r in rows] == fx.FOOD_CLASSES
    assert [int(r["test"]) for r in rows] == [2, 2, 2] and sum(int(r["total"]) for r in rows) == 24
    assert all(abs(float(r["test_pct"]) - 100 / 3) < 1e-6 for r in rows)
    with (out / "file_sizes.csv").open() as handle:
        sizes = {r["class"]: r for r in csv.DictReader(handle)}
    food_files = list((root / "train_set").iterdir()) + list((root / "val_set").iterdir())
    assert int(sizes["(all)"]["count"]) == 24
    assert float(sizes["(all)"]["max"]) == max(p.stat().st_size for p in food_files)
    assert (out / "class_counts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_describe_hierarchical_digits_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "digits"
    assert main(["datasets", "describe", "digits", "task=hierarchical", "--out", str(out)]) == 0
    with (out / "class_counts.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["level"] for r in rows].count("super") == 2 and [r["level"] for r in rows].count("sub") == 10
    assert sum(int(r["total"]) for r in rows if r["level"] == "super") == 1797
    with (out / "imbalance.csv").open() as handle:
        ratios = {(r["level"], r["split"]): float(r["imbalance_ratio"]) for r in csv.DictReader(handle)}
    assert 1.0 <= ratios[("sub", "train")] < 1.2  # digits are nearly balanced
    assert not (out / "file_sizes.csv").exists()  # in memory: no files to size
    assert main(["datasets", "describe", "digits", "tsak=single"]) == 2
    assert "tsak: unknown key" in capsys.readouterr().err


def test_describe_refuses_odd_outputs_before_writing_and_bad_field_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out a file was a FileExistsError traceback, a report.md folder an IsADirectoryError after the
    CSVs were written; the PNG's fixed temp name could be a planted link (its target overwritten);
    a field value that is no YAML was a ParserError traceback."""
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    (tmp_path / "out" / "report.md").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / ".class_counts.png.tmp").symlink_to(victim)
    cases = [
        (["--out", str(afile)], "not a folder"),
        (["--out", str(tmp_path / "out")], "report.md: not a plain file"),
        (["x=[unclosed"], "x=[unclosed: invalid YAML value"),
    ]
    for extra, says in cases:
        assert main(["datasets", "describe", "digits", *extra]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    assert afile.read_text() == "mine\n" and [p.name for p in (tmp_path / "out").iterdir()] == ["report.md"]
    assert main(["datasets", "describe", "digits", "--out", str(tmp_path / "out2")]) == 0
    assert victim.read_text() == "precious\n" and (tmp_path / "out2" / "class_counts.png").stat().st_size > 1000
