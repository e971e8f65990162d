"""The HTML report on fixture run folders: content, local images only, and a headless-Chromium
screenshot that must show the rendered plots."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tables_fixture import fake_run, report_fixture, screenshot

from orchestrator import store
from orchestrator.results import collect, figures, folder_reads, outputs
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec, _ = report_fixture(tmp_path_factory.mktemp("report"))
    written = collect.write_tables(spec, spec.output_path, report=True)
    assert written.report_path == spec.output_path / "report" / "index.html"
    return written.report_path


def test_report_sections_and_local_images(report: Path) -> None:
    html = report.read_text()
    assert "9 planned runs: 5 completed, 3 missing, 1 running." in html
    assert html.count('<section class="cell"') == 3
    assert html.count('<figure class="table"') == 2
    # Issue 13: the delta carries its interval and the within-noise mark; 2 seeds are not significantly best.
    # Paired on the 2 seeds both cells have (the third ablation run is missing), not Welch on 3 against 2.
    assert '97.25 ± 0.35</span> <span class="delta">(+1.75 [-1.43, +4.93])</span><sup class="noise"' in html
    assert '<span class="seeds">(2/3 seeds)</span>' in html
    images = re.findall(r'<img src="([^"]+)"', html)
    # Baseline and + Augmentation: curves, confusion matrix, per-class F1; the dataset's class distribution;
    # and (issue 13) the ablation figure of the backbone/dataset pair.
    assert len(images) == 8
    assert "dots are seeds, diamonds the mean ± std over seeds as in the tables" in html
    for src in images:
        assert not src.startswith(("http:", "https:", "//")), src
        path = report.parent / src
        assert path.is_file() and path.stat().st_size > 2000, src
        with Image.open(path) as image:
            assert image.width > 200 and image.height > 150
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "no external assets"
    assert "No finished run yet: no plots." in html  # + Augmentation + Dropout never ran
    assert "<th>classes</th><td>10</td>" in html


def test_running_run_curves_are_included(report: Path) -> None:
    html = report.read_text()
    section = html.split("/ + Augmentation</h3>")[1].split("</section>")[0]
    assert 'class="state-running">running' in section
    assert "Training curves of 3 run(s)" in section, "the running seed's partial history is plotted too"
    assert "summed over 2 run(s)" in section, "only finished runs count in the confusion matrix"


def test_stale_images_are_removed(report: Path) -> None:
    stale = report.parent / "img" / "0000-old-cell-curves.png"
    stale.write_bytes(b"\x89PNG")
    sweep_root = report.parents[1]
    written = outputs.Outputs(sweep_root)  # a figure collect wrote itself (others are never deleted)
    written.record(stale, b"\x89PNG")
    written.save()
    [(spec, root)] = collect.resolve_target(sweep_root, [])
    collect.write_tables(spec, root, report=True)
    assert not stale.exists()


def test_screenshot_shows_tables_and_plots(report: Path, tmp_path: Path) -> None:
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.fail("chromium not found: `make report-tools` (run by `make test`) installs Debian's chromium")
    png = screenshot(report, tmp_path / "report.png", width=1400, height=2400)
    with Image.open(png) as image:
        assert image.size == (1400, 2400)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    dark_blue = int(((b > 100) & (r < 60) & (g < 110)).sum())  # the confusion heatmap's diagonal
    text = int(((r < 80) & (g < 80) & (b < 80)).sum())
    assert dark_blue > 2000, "the confusion-matrix PNG did not render"
    assert text > 20000, "the page looks empty"


LADDER = """
name: long_ladder
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [test_resnet], dataset: [digits], seed: [0, 1]}}
modifiers:
{modifiers}
ablations:
  Baseline: []
{rows}
"""


def test_a_long_ladder_draws_the_first_rows_and_says_so(write_spec: Callable[..., Path]) -> None:
    """An ablation figure widens with its rows: a ladder longer than MAX_ABLATION_ROWS draws the
    first ones (a 600-row ladder would have passed the renderer's largest image), and the report
    says so; the table keeps every row."""
    count = figures.MAX_ABLATION_ROWS + 5
    modifiers = "\n".join(f"  m{i}: {{{{model.head_dropout: 0.{i + 1:02d}}}}}" for i in range(count))  # .format
    rows = "\n".join(f"  + drop {i + 1}: [m{i}]" for i in range(count))
    spec = load_spec(write_spec(LADDER.replace("{modifiers}", modifiers).replace("{rows}", rows)))
    runs = plan(spec)
    store.write_snapshot(spec, spec.output_path)
    for run in runs:
        fake_run(spec, run, 0.9 + 0.001 * run.seed)
    written = collect.write_tables(spec, spec.output_path, report=True)
    assert written.report_path is not None
    html = written.report_path.read_text()
    assert f"Ablation figures show the first {figures.MAX_ABLATION_ROWS} of up to {count + 1} rows" in html
    (png,) = (written.report_path.parent / "img").glob("ablation-*.png")
    with Image.open(png) as image:
        width_px = image.size[0]
    assert width_px <= (1.2 * figures.MAX_ABLATION_ROWS + 2.0) * figures.DPI + 1
    assert written.markdown.count("| + drop ") == count, "the table holds every row"


def test_cell_figures_drawn_by_workers_are_the_figures_one_process_draws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cell figures on forked workers (each writes its own PNGs): the same files, bytes and page as
    drawn here, and every one recorded as collect's (a third collect removes none as foreign)."""
    spec, _ = report_fixture(tmp_path)
    img = spec.output_path / "report" / "img"
    got = {}
    for workers in ("1", "2"):
        monkeypatch.setenv(folder_reads.WORKERS_ENV, workers)
        written = collect.write_tables(spec, spec.output_path, report=True)
        assert written.report_path is not None
        page = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "TIME", written.report_path.read_text())
        got[workers] = (page, {p.name: p.read_bytes() for p in sorted(img.glob("*.png"))})
    assert got["2"] == got["1"]
    assert sum("-curves.png" in name for name in got["1"][1]) >= 2, "figures of several cells"
    assert all(outputs.Outputs(spec.output_path).ours(img / name) for name in got["2"][1])
