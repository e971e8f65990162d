"""Cost before submit from a site's declared throughput: matching, train sizes, unknowns, the budget."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dataset_fixtures as fixtures
import pytest
from config_helpers import COST_RUNS
from tables_fixture import write_csv

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.results import cost
from orchestrator.sweep.plan import plan, smoke_plan
from orchestrator.sweep.site import SiteError, ThroughputEntry, load_site
from orchestrator.sweep.spec import load_spec
from trainers import rundir
from trainers.config import DatasetConfig
from trainers.datasets import sizes

SITE = """
throughput:
  - {backbone: test_resnet, image_size_px: 16, images_per_s: 500, device: NVIDIA A100-SXM4-80GB}
  - {backbone: test_resnet, image_size_px: 16, images_per_s: 900, device: NVIDIA A100-SXM4-80GB, precision: bf16}
"""


def _site(tmp_path: Path, text: str = SITE) -> str:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return f"site={path}"


def test_declared_entries_match_backbone_size_and_the_most_specific_wins(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    entries = load_site(Path(_site(tmp_path).removeprefix("site="))).throughput
    [run, *_] = plan(load_spec(write_spec(), COST_RUNS))
    assert cost.match(entries, run) == entries[0], "precision auto: only the entry without a precision fits"
    [bf16, *_] = plan(load_spec(write_spec(), [*COST_RUNS, "defaults.precision=bf16"]))
    assert cost.match(entries, bf16) == entries[1]
    [bigger, *_] = plan(load_spec(write_spec(), [*COST_RUNS, "defaults.data.image_size_px=32"]))
    assert cost.match(entries, bigger) is None, "another input size: no match, the speed is never scaled"
    batch = ThroughputEntry(backbone="test_resnet", image_size_px=16, images_per_s=1, device="x", batch_per_device=8)
    assert cost.match([batch], run) is None, "the runs' batch is 32 on one device"


def test_site_estimate_uses_the_train_split_size_and_says_where_it_came_from(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = load_spec(write_spec(), [*COST_RUNS, _site(tmp_path)])
    runs = plan(spec)
    train = sizes.train_images(runs[0].config.data.dataset)
    assert train is not None and train > 1000
    costs = cost.estimate(spec, runs)
    assert [c.source for c in costs] == [cost.SITE] * 3
    assert costs[0].hours == pytest.approx(2 * 3 * train / 500 / 3600), "2 seeds x 3 epochs at 500 images/s"
    assert costs[0].unit == "GPU-hours" and costs[0].note == "NVIDIA A100-SXM4-80GB"
    capped = load_spec(write_spec(), [*COST_RUNS, _site(tmp_path), "defaults.max_steps_per_epoch=2"])
    assert cost.estimate(capped, plan(capped))[0].hours == pytest.approx(2 * 3 * 2 * 32 / 500 / 3600)
    assert "over 3 site-declared cells" in cost.summary(costs)


def test_a_smoke_measurement_wins_over_the_declaration(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = load_spec(write_spec(), [*COST_RUNS, _site(tmp_path)])
    runs = plan(spec)
    for smoke in smoke_plan(runs)[:2]:  # the first cell's two seeds
        path = store.run_path(store.sweep_root(spec, smoke=True), smoke.run_id)
        write_csv(path / rundir.HISTORY, [{"epoch": 1, "train_images_per_s": 100.0}])
        rundir.write_json(path / rundir.METRICS, {"provenance": {"device": "cpu", "num_processes": 1}})
        rundir.write_json(path / rundir.SPLIT, {"info": {"uncapped_sizes": {"train": 1000}}})
    first, second, _ = cost.estimate(spec, runs)
    assert first.source == cost.MEASURED and first.unit == "CPU-hours"
    assert first.hours == pytest.approx(2 * 3 * 1000 / 100 / 3600)
    assert second.source == cost.SITE


def test_unknown_without_an_entry_or_a_readable_train_split(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    other = SITE.replace("test_resnet", "resnet50")
    spec = load_spec(write_spec(), [*COST_RUNS, _site(tmp_path, other)])
    [first, *_] = cost.estimate(spec, plan(spec))
    assert first.hours is None and first.source is None
    assert "no smoke measurement or site throughput for test_resnet at 16 px" in first.note
    missing = "grid.dataset=[{name: imagefolder, root: /nonexistent/data}]"
    spec = load_spec(write_spec(), [*COST_RUNS, _site(tmp_path), missing])
    [first, *_] = cost.estimate(spec, plan(spec))
    assert first.hours is None and first.source == cost.SITE and "train split size" in first.note


def test_train_sizes_are_the_trainers_and_need_no_torch(tmp_path: Path) -> None:
    from trainers.config import DataConfig
    from trainers.datasets import build_splits

    hier = DatasetConfig(name="digits", task="hierarchical", novel_subclasses=["9"])
    folder = DatasetConfig(name="imagefolder", root=str(fixtures.make_imagefolder(tmp_path / "img", per_class=20)))
    for dataset in (DatasetConfig(), hier, folder):
        built = build_splits(DataConfig(dataset=dataset, image_size_px=16))
        assert sizes.train_images(dataset) == len(built.train), dataset
    code = "import sys; from trainers.datasets import sizes; from trainers.config import DatasetConfig as D; "
    code += "assert sizes.train_images(D()) > 1000; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_throughput_entries_are_validated_with_file_and_field(tmp_path: Path) -> None:
    cases = {
        "- {backbone: r50, image_size_px: 224, images_per_s: 0, device: A100}": "throughput.0.images_per_s",
        "- {backbone: r50, image_size_px: 224, images_per_s: 9, device: A100, gpus: 2}": "throughput.0.gpus: unknown",
        "- {backbone: r50, image_size_px: 224, images_per_s: 9}": "throughput.0.device",
        "- {backbone: r50, image_size_px: 224, images_per_s: 9, device: A, precision: fp8}": "throughput.0.precision",
    }
    path = tmp_path / "site.yaml"
    for entry, where in cases.items():
        path.write_text(f"throughput:\n  {entry}\n")
        with pytest.raises(SiteError, match=f"site file {path}: {where}"):
            load_site(path)
    twice = "- {backbone: r50, image_size_px: 224, images_per_s: 9, device: A}"
    path.write_text(f"throughput:\n  {twice}\n  {twice}\n")
    # Site-file errors redact the refused value's strings (a site file may hold secrets): the entries
    # and the field are named, the backbone string is not echoed.
    with pytest.raises(SiteError, match="throughput: entries 0 and 1 both declare <value> at 224 px") as refused:
        load_site(path)
    assert "r50" not in str(refused.value)


def test_max_gpu_hours_at_submit_uses_the_declared_throughput(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(write_spec())
    base = ["submit", path, *COST_RUNS, _site(tmp_path), "--dry-run", "--skip-data-check"]
    assert main([*base, "budget={max_gpu_hours: 1e-9}"]) == 2
    assert "over max_gpu_hours" in capsys.readouterr().err
    assert main([*base, "budget={max_gpu_hours: 1000}"]) == 0
    assert "over 3 site-declared cells" in capsys.readouterr().out
    undeclared = ["submit", path, *COST_RUNS, _site(tmp_path, SITE.replace("test_resnet", "resnet50"))]
    assert main([*undeclared, "--dry-run", "--skip-data-check", "budget={max_gpu_hours: 1000}"]) == 2, "fail closed"
    assert "3 of 3 cells have no estimate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("hours", "text"),
    [
        (1234.4, "1,234"),
        (999.6, "1,000"),
        (99.4, "99.4"),
        (12.34, "12.3"),
        (1.234, "1.23"),
        (0.01234, "0.0123"),
        (0.00001, "<0.001"),
        (0.0, "0"),
    ],
)
def test_hours_read_as_people_read_them(hours: float, text: str) -> None:
    # `.3g` printed a sweep of 1,234 device-hours as `1.23e+03`, a smoke cell's 0.00001 as `1e-05`.
    assert cost.hours_text(hours) == text


def test_a_large_sweep_s_estimate_is_no_scientific_notation(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    site = SITE.replace("images_per_s: 500", "images_per_s: 0.002")  # thousands of hours
    spec = load_spec(write_spec(), [*COST_RUNS, _site(tmp_path, site)])
    summary = cost.summary(cost.estimate(spec, plan(spec)))
    assert "e+" not in summary and "," in summary.split("estimated compute: ")[1].split(" ")[0], summary
