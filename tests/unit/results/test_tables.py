"""Tables on fixture run folders: the report-004 layout, seeds, deltas, bold, missing cells, every
format (LaTeX escaped and compiled), layouts, provenance, budget, profile fallback."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.checks import complexity as profile_cmd
from orchestrator.results import collect, reader, tables
from orchestrator.store import profile as profile_file
from orchestrator.sweep import budget
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import BudgetSpec, SpecError, SweepSpec, load_spec
from trainers.datasets.known import LabelShape, label_shape
from trainers.rundir import State

# Report 004's design on digits: three dataset columns (labels with LaTeX specials), the ablation ladder.
SPEC_004 = """
name: t004
output_dir: {out}
defaults: {data: {image_size_px: 16, batch_size: 8}, epochs: 1}
grid:
  backbone: [test_resnet]
  dataset:
    - {name: digits, label: CUB Birds}
    - {name: digits, label: CUB + FGVC_Aircraft, val_fraction: 0.2}
    - {name: digits, label: FoodX, val_fraction: 0.3}
  seed: [0]
modifiers:
  aug: {data.augment: {hflip_p: 0.25}}
  l2sp: {optim.weight_decay: 0.01}
  dropout: {model.head_dropout: 0.45}
  scra: {optim.lr: 0.002}
ablations:
  Baseline: []
  Baseline + Augmentation: [aug]
  Baseline + Augmentation + L2SP: [aug, l2sp]
  Baseline + Augmentation + Dropout + SCRA: [aug, dropout, scra]
"""
# Report 004's Table 1 numbers (top-1 as fractions) for the cells that exist there; None = '-'.
TABLE_1 = {
    "Baseline": (0.8949, 0.8948, 0.7862),
    "Baseline + Augmentation": (0.8947, 0.8982, None),
    "Baseline + Augmentation + L2SP": (0.8942, 0.8978, None),
    "Baseline + Augmentation + Dropout + SCRA": (0.9040, 0.8999, 0.7944),
}


def load(write_raw: Callable[..., Path], text: str = SPEC_004, *overrides: str) -> tuple[SweepSpec, list[RunSpec]]:
    spec = load_spec(write_raw(text), list(overrides))
    return spec, plan(spec)


def build(
    spec: SweepSpec, runs: list[RunSpec], index: int = 0, profile: pd.DataFrame | None = None
) -> list[tables.Table]:
    frame = reader.collect_frame(store.sweep_root(spec), runs)
    return tables.ablation_tables(spec, frame, runs, spec.tables[index], profile)


def texts(table: tables.Table) -> dict[str, list[str]]:
    return {row.label: [cell.text for cell in row.cells] for row in table.rows}


@pytest.fixture
def write_raw(tmp_path: Path) -> Callable[..., Path]:
    """Write a sweep file as is (only `{out}` is replaced by tmp_path/out)."""

    def write(text: str, filename: str = "sweep.yaml") -> Path:
        path = tmp_path / filename
        path.write_text(text.replace("{out}", str(tmp_path / "out")))
        return path

    return write


@pytest.fixture
def table_1(write_raw: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    """Report 004's Table 1 as fixture runs (one seed), SCRA rows with SCRA's complexity."""
    spec, runs = load(write_raw)
    fill_table_1(spec, runs)
    return spec, runs


def fill_table_1(spec: SweepSpec, runs: list[RunSpec]) -> None:
    """Finished fixture runs with Table 1's accuracies, SCRA rows with SCRA's complexity."""
    datasets = ["CUB Birds", "CUB + FGVC_Aircraft", "FoodX"]
    for run in runs:
        value = TABLE_1[run.ablation][datasets.index(run.dataset)]
        scra = "SCRA" in run.ablation
        if value is not None:
            fake_run(spec, run, value, gflops=68.80 if scra else 68.72, params_m=196.881 if scra else 196.660)


def test_report_004_table_1(table_1: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = table_1
    [table] = build(spec, runs)
    assert table.title == "test_resnet: test top-1 (%)"
    assert table.columns == ["CUB Birds", "CUB + FGVC_Aircraft", "FoodX", "GFLOPs", "Params (M)"]
    one = " (1 seed, no interval)"  # issue 13: one seed gives no interval, and says so
    assert texts(table) == {
        "Baseline": [f"89.49{one}", f"89.48{one}", f"78.62{one}", "68.72", "196.660"],
        "Baseline + Augmentation": [f"89.47 (-0.02){one}", f"89.82 (+0.34){one}", "-", "68.72", "196.660"],
        "Baseline + Augmentation + L2SP": [f"89.42 (-0.07){one}", f"89.78 (+0.30){one}", "-", "68.72", "196.660"],
        "Baseline + Augmentation + Dropout + SCRA": [
            f"90.40 (+0.91){one}",
            f"89.99 (+0.51){one}",
            f"79.44 (+0.82){one}",
            "68.80 (+0.12%)",
            "196.881 (+0.11%)",
        ],
    }
    # Issue 13: bold only for a significantly best cell; one seed cannot be.
    assert not any(cell.best for row in table.rows for cell in row.cells)
    markdown = tables.render([table], "md", {"sweep": "t004"})
    assert f"| Baseline + Augmentation | 89.47 (-0.02){one} | 89.82 (+0.34){one} | - | 68.72 | 196.660 |" in markdown
    assert f"| 90.40 (+0.91){one} | 89.99 (+0.51){one} | 79.44 (+0.82){one} | 68.80 (+0.12%) | 196.881 (+0.11%) |" in (
        markdown
    )
    assert "1 seed per cell: no interval and no test" in markdown


def test_seeds_mean_std_incomplete_and_ties(write_raw: Callable[..., Path]) -> None:
    spec, runs = load(write_raw, SPEC_004, "grid.seed=[0,1,2]", "grid.dataset=[digits]")
    by = {(r.ablation, r.seed): r for r in runs}
    for seed, value in enumerate((0.90, 0.91, 0.92)):
        fake_run(spec, by[("Baseline", seed)], value)
    fake_run(spec, by[("Baseline + Augmentation", 0)], 0.93)  # 1 of 3 seeds
    fake_run(spec, by[("Baseline + Augmentation", 1)], 0.89)  # 2 of 3: mean 0.91 ties the baseline
    fake_run(spec, by[("Baseline + Augmentation + L2SP", 2)], 0.80, state=State.FAILED)  # failed counts as missing
    fake_run(spec, by[("Baseline + Augmentation + Dropout + SCRA", 0)], 0.85)
    [table] = build(spec, runs)
    rows = {row.label: row.cells[0] for row in table.rows}
    base, aug, l2sp = rows["Baseline"], rows["Baseline + Augmentation"], rows["Baseline + Augmentation + L2SP"]
    assert base.text == "91.00 ± 1.00" and base.n == 3 and base.n_expected == 3
    # Seeds 0,1 against 0,1,2: paired on the 2 shared seeds (+0.03 and -0.02: +0.50); not significant.
    assert aug.text == "91.00 ± 2.83 (+0.50 [-31.27, +32.27])° (2/3 seeds)"
    assert not base.best and not aug.best, "a tie is not significantly best"
    assert l2sp.empty and l2sp.text == "-"
    markdown = tables.render([table], "md", {"sweep": "t"})
    assert "| Baseline | 91.00 ± 1.00 |" in markdown
    assert "| Baseline + Augmentation | 91.00 ± 2.83 (+0.50 [-31.27, +32.27])° (2/3 seeds) |" in markdown
    assert "paired by seed (on the seeds both cells have, where one lacks some: 1; Welch, unpaired," in markdown
    # The SCRA row (1 seed against 3) has no test: Holm's family is the one comparison with a p-value.
    assert "t-test (Welch's unpaired), Holm-adjusted across the table's 1 tested comparison(s)" in markdown
    assert "| Baseline + Augmentation + L2SP | - | - | - |" in markdown
    assert "| Baseline + Augmentation + Dropout + SCRA | 85.00 (-6.00) (1/3 seeds, no interval) |" in markdown


def test_no_bold_when_every_row_ties(write_raw: Callable[..., Path]) -> None:
    spec, runs = load(write_raw, SPEC_004, "grid.dataset=[digits]")
    for run in runs:
        fake_run(spec, run, 0.5)
    [table] = build(spec, runs)
    assert not any(row.cells[0].best for row in table.rows)


def test_best_min_none_and_decimals(write_raw: Callable[..., Path]) -> None:
    text = SPEC_004 + "tables:\n  - {metric: loss, scale: 1, decimals: 3, best: min, complexity: false}\n"
    text += "  - {name: plain, metric: top1, best: none, delta: false}\n"
    spec, runs = load(write_raw, text, "grid.dataset=[digits]")
    for index, run in enumerate(runs):
        fake_run(spec, run, 0.9 - index / 100, extra_test={"loss": 0.5 + index / 10})
    [loss] = build(spec, runs, 0)
    assert loss.columns == ["digits"] and loss.title == "test_resnet: test loss"
    one = " (1 seed, no interval)"  # issue 13
    assert [row.cells[0].text for row in loss.rows] == [
        f"0.500{one}",
        f"0.600 (+0.100){one}",
        f"0.700 (+0.200){one}",
        f"0.800 (+0.300){one}",
    ]
    assert [row.cells[0].best for row in loss.rows] == [False] * 4, "issue 13: one seed is never significantly best"
    [plain] = build(spec, runs, 1)
    assert [row.cells[0].text for row in plain.rows][:2] == [f"90.00{one}", f"89.00{one}"]
    assert not any(cell.best for row in plain.rows for cell in row.cells)


def test_a_loss_is_not_shown_as_percent_unless_the_table_scales_it(write_raw: Callable[..., Path]) -> None:
    # The default scale shows fractions as percent: a loss of 0.5 was shown as 50.00 under "test loss".
    text = SPEC_004 + "tables:\n  - {metric: [top1, loss], columns: [metric], decimals: 3, complexity: false}\n"
    spec, runs = load(write_raw, text, "grid.dataset=[digits]")
    for index, run in enumerate(runs):
        fake_run(spec, run, 0.9 - index / 100, extra_test={"loss": 0.5 + index / 10})
    [table] = build(spec, runs, 0)
    assert table.columns == ["top-1 (%)", "loss"]
    assert [cell.mean for cell in table.rows[0].cells] == [pytest.approx(90.0), pytest.approx(0.5)]
    assert spec.tables[0].scale_of("loss") == 1.0 and spec.tables[0].scale_of("val.super.top1") == 100.0


def test_a_complexity_delta_compares_models_of_the_same_column(write_raw: Callable[..., Path]) -> None:
    # The baseline finished only on the second dataset (3.0 M params there); + Augmentation on both,
    # its first column's model having 2.0 M. Its shown 2.0 M was compared with the baseline's 3.0 M,
    # another dataset's head: -33.33% for the same architecture. No delta without a same-column baseline.
    spec, runs = load(
        write_raw, SPEC_004, "grid.dataset=[{name: digits, label: D1}, {name: digits, label: D2, val_fraction: 0.2}]"
    )
    for run in runs:
        if run.ablation not in ("Baseline", "Baseline + Augmentation"):
            continue
        if run.ablation == "Baseline" and run.dataset == "D1":
            continue
        params = 2.0 if run.dataset == "D1" else 3.0
        fake_run(spec, run, 0.9, gflops=params / 2, params_m=params)
    [table] = build(spec, runs)
    rows = {row.label: row.cells for row in table.rows}
    assert rows["Baseline"][-1].mean == pytest.approx(3.0)  # its only column
    aug = rows["Baseline + Augmentation"]
    assert aug[-1].mean == pytest.approx(2.0) and aug[-1].delta is None and aug[-2].delta is None
    # Both finished on D1: the delta is taken there.
    fake_run(
        spec, next(r for r in runs if r.ablation == "Baseline" and r.dataset == "D1"), 0.9, gflops=1.0, params_m=2.0
    )
    [table] = build(spec, runs)
    aug = {row.label: row.cells for row in table.rows}["Baseline + Augmentation"]
    assert aug[-1].delta == pytest.approx(0.0) and aug[-1].text == "2.000"


def test_latex_escaped_booktabs_and_bold(write_raw: Callable[..., Path]) -> None:
    text = SPEC_004.replace("label: CUB Birds", "label: 'CUB_200 & 50% #1 $x {y} ~^\\'")
    # Issue 13: bold needs a significant lead; 6 paired seeds all +10 or more give an exact sign-flip p of 2/64.
    spec, runs = load(write_raw, text, "grid.seed=[0,1,2,3,4,5]")
    for run in runs:
        fake_run(spec, run, 0.8 + 0.01 * run.seed + (0.1 + 0.001 * run.seed if "SCRA" in run.ablation else 0))
    [table] = build(spec, runs)
    latex = tables.render([table], "tex", {"sweep": "t_004"})
    assert r"CUB\_200 \& 50\% \#1 \$x \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{}" in latex
    assert "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex
    # Brackets braced: `\\` reads a following `[` as its argument.
    assert r"\textbf{92.75 $\pm$ 2.06} (+10.25 {[}+10.05, +10.45{]})" in latex
    assert r"\begin{tabular}{lrrrrr}" in latex
    assert "±" not in latex and "Δ" not in latex, "non-ASCII symbols are LaTeX commands"
    unescaped = latex.replace("\\%", "").replace("\\&", "")
    assert "%" not in unescaped.split("\n", 1)[1], "a bare % would comment out the rest of a line"


def _compile(tex_files: list[Path], folder: Path) -> subprocess.CompletedProcess[str]:
    body = "\n".join(f"\\input{{{path.name}}}" for path in tex_files)
    document = folder / "doc.tex"
    document.write_text(
        "\\documentclass{article}\n\\usepackage[margin=1cm,landscape]{geometry}\n\\usepackage{booktabs}\n"
        f"\\begin{{document}}\n{body}\n\\end{{document}}\n"
    )
    return subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_latex_tables_compile_with_pdflatex(write_raw: Callable[..., Path], tmp_path: Path) -> None:
    if shutil.which("pdflatex") is None:
        pytest.fail(
            "pdflatex not found: the LaTeX tables cannot be checked. `make report-tools` (run by `make test`) "
            "installs texlive-latex-base + texlive-latex-recommended (booktabs) from Debian packages."
        )
    text = SPEC_004.replace("label: CUB Birds", "label: 'CUB_200 & 50% #1 $x {y} ~^\\'")
    text += "budget: {max_gflops_increase_pct: 0.01}\n"
    text += "tables:\n  - {name: main}\n  - {name: wide, metric: [top1, macro_f1], group: backbone}\n"
    spec, runs = load(write_raw, text, "grid.seed=[0,1]")
    for run in runs[:-1]:
        fake_run(spec, run, 0.9 if "SCRA" in run.ablation else 0.8 + 0.01 * run.seed, gflops=1 + len(run.ablation))
    written = collect.write_tables(spec, spec.output_path)
    tex = [path for path in written.files if path.suffix == ".tex"]
    assert [p.name for p in tex] == ["main.tex", "wide.tex"]
    folder = tmp_path / "latex"
    folder.mkdir()
    for path in tex:
        shutil.copy(path, folder / path.name)
    done = _compile([folder / p.name for p in tex], folder)
    log_file = folder / "doc.log"
    log = log_file.read_text(errors="replace") if log_file.exists() else done.stdout
    assert done.returncode == 0, log[-3000:]
    assert (folder / "doc.pdf").stat().st_size > 1000
    assert "Undefined control sequence" not in log and "Missing $ inserted" not in log


def test_html_shows_control_characters_of_run_files_as_text(write_raw: Callable[..., Path]) -> None:
    """A device name from metrics.json with ANSI and OSC sequences reached table.html and the report
    raw (`cat` of the file ran them); autoescaping stops markup only."""
    spec, runs = load(write_raw)
    for run in runs[:3]:
        fake_run(spec, run, 0.5, device="X\x1b[31mANSI\x1b]0;TITLE\x07 \u202eGPU")
    written = collect.write_tables(spec, spec.output_path, report=True)
    html = (spec.output_path / "tables" / "table.html").read_text() + (written.report_path or Path()).read_text()
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", html)
    assert "X\\x1b[31mANSI\\x1b]0;TITLE\\x07 \\u202eGPU" in html


def test_html_is_escaped_and_csv_parses(write_raw: Callable[..., Path]) -> None:
    text = SPEC_004.replace("label: CUB Birds", "label: '<script>alert(1)</script>'")
    spec, runs = load(write_raw, text)
    for run in runs[:3]:
        fake_run(spec, run, 0.5)
    [table] = build(spec, runs)
    html = tables.render([table], "html", {"sweep": "a<b"})
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<title>a&lt;b</title>" in html
    frame = pd.read_csv(__import__("io").StringIO(tables.render([table], "csv")))
    columns = ["<script>alert(1)</script>", "CUB + FGVC_Aircraft", "FoodX", "GFLOPs", "Params (M)"]
    raw = ("mean", "std", "n", "delta", "low", "high", "p", "p_adjusted")  # issue 13: raw numbers beside the text
    assert list(frame.columns) == [
        "table",
        "group",
        "Ablation",
        *(f"{c}{s}" for c in columns for s in ["", *(f" {r}" for r in raw)]),
    ]
    assert frame.loc[0, "<script>alert(1)</script> mean"] == 50.0 and frame.loc[0, "<script>alert(1)</script> n"] == 1
    assert len(frame) == 4
    assert frame.loc[1, "FoodX"] == "-"


def test_several_metrics_as_column_groups(write_raw: Callable[..., Path]) -> None:
    text = SPEC_004 + "tables:\n  - {metric: [top1, macro_f1], columns: [dataset, metric]}\n"
    spec, runs = load(write_raw, text, "grid.dataset=[digits, {name: digits, label: two, val_fraction: 0.2}]")
    for run in runs:
        fake_run(spec, run, 0.9)
    [table] = build(spec, runs)
    assert table.columns == ["top-1 (%)", "macro F1 (%)", "top-1 (%)", "macro F1 (%)", "GFLOPs", "Params (M)"]
    assert [(s.label, s.width, s.first, s.last) for s in table.header_spans] == [
        ("", 1, 1, 1),
        ("digits", 2, 2, 3),
        ("two", 2, 4, 5),
        ("", 2, 6, 7),
    ]
    assert table.flat_columns[:2] == ["digits: top-1 (%)", "digits: macro F1 (%)"]
    assert texts(table)["Baseline"][:2] == ["90.00 (1 seed, no interval)", "89.00 (1 seed, no interval)"]
    latex = tables.render([table], "tex", {"sweep": "t"})
    assert r"\multicolumn{2}{c}{digits}" in latex and r"\cmidrule(lr){4-5}" in latex


def test_backbones_as_tables_or_row_groups(write_raw: Callable[..., Path]) -> None:
    spec, runs = load(write_raw, SPEC_004, "grid.backbone=[test_resnet,test_byobnet]", "grid.dataset=[digits]")
    for run in runs:
        fake_run(spec, run, 0.9 if run.backbone == "test_resnet" else 0.7 + 0.01 * len(run.ablation) / 10)
    split = build(spec, runs)
    assert [t.title for t in split] == ["test_resnet: test top-1 (%)", "test_byobnet: test top-1 (%)"]
    text = SPEC_004 + "tables:\n  - {group: backbone}\n"
    # Six seeds (issue 13): bold needs a significant lead, which one seed cannot show.
    overrides = ("grid.backbone=[test_resnet,test_byobnet]", "grid.dataset=[digits]", "grid.seed=[0,1,2,3,4,5]")
    spec, runs = load(write_raw, text, *overrides)
    for run in runs:
        row = list(spec.ablations).index(run.ablation)
        fake_run(spec, run, 0.9 - 0.01 * row + 0.001 * run.seed if run.backbone == "test_resnet" else 0.7)
    [grouped] = build(spec, runs)
    assert [(r.group, r.label, r.first_in_group) for r in grouped.rows][:5] == [
        ("test_resnet", "Baseline", True),
        ("test_resnet", "Baseline + Augmentation", False),
        ("test_resnet", "Baseline + Augmentation + L2SP", False),
        ("test_resnet", "Baseline + Augmentation + Dropout + SCRA", False),
        ("test_byobnet", "Baseline", True),
    ]
    # Bold per group: the best test_resnet row; test_byobnet's rows all tie, so none of them.
    assert [r.cells[0].best for r in grouped.rows] == [True, False, False, False, False, False, False, False]
    markdown = tables.render([grouped], "md", {"sweep": "t"})
    assert "| **test_byobnet** | | | |" in markdown


def test_extra_axis_rows_delta_against_same_axis_baseline(write_raw: Callable[..., Path]) -> None:
    text = SPEC_004 + "tables:\n  - {complexity: false}\n"
    spec, runs = load(write_raw, text, "grid.dataset=[digits]", "grid.optim.momentum=[0.2,0.5]")
    for run in runs:
        row = list(spec.ablations).index(run.ablation)
        # Top-1 stays within [0, 1]: beyond it a value is broken, not a score (issue 13).
        fake_run(spec, run, 0.4 + run.config.optim.momentum + 0.01 * row)
    [table] = build(spec, runs)
    got = texts(table)
    assert got["Baseline (momentum=0.2)"] == ["60.00 (1 seed, no interval)"]
    assert got["Baseline (momentum=0.5)"] == ["90.00 (1 seed, no interval)"]
    assert got["Baseline + Augmentation (momentum=0.5)"] == ["91.00 (+1.00) (1 seed, no interval)"]
    assert table.row_header == "Ablation, momentum"
    text = SPEC_004 + "tables:\n  - {rows: [ablation], columns: [momentum]}\n"
    spec, runs = load(write_raw, text, "grid.dataset=[digits]", "grid.optim.momentum=[0.2,0.5]")
    [table] = build(spec, runs)
    assert table.columns[:2] == ["momentum=0.2", "momentum=0.5"]


def test_layout_errors_name_the_table(write_raw: Callable[..., Path]) -> None:
    spec, runs = load(write_raw, SPEC_004 + "tables:\n  - {rows: [ablation, colour]}\n")
    with pytest.raises(SpecError, match=r"rows: unknown dimension 'colour'; valid: backbone, dataset, ablation"):
        build(spec, runs)
    text = SPEC_004 + "tables:\n  - {split: []}\n"
    spec, runs = load(write_raw, text, "grid.backbone=[test_resnet,test_byobnet]")
    with pytest.raises(SpecError, match=r"cells would pool backbone values \(test_resnet, test_byobnet\)"):
        build(spec, runs)
    spec, runs = load(write_raw, SPEC_004 + "tables:\n  - {metric: [top1, macro_f1], columns: [dataset]}\n")
    with pytest.raises(SpecError, match="several metrics need `metric`"):
        build(spec, runs)


def test_spec_tables_block_is_validated(write_raw: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match=r"tables.0.formats.0: Input should be 'md', 'tex', 'html' or 'csv'"):
        load_spec(write_raw(SPEC_004 + "tables:\n  - {formats: [pdf]}\n"))
    with pytest.raises(
        SpecError, match=r"tables.0.colums: unknown key \(did you mean 'columns'\?\); valid keys: name, title, metric"
    ):
        load_spec(write_raw(SPEC_004 + "tables:\n  - {colums: [dataset]}\n"))
    with pytest.raises(SpecError, match="table name 'table' is used twice"):
        load_spec(write_raw(SPEC_004 + "tables:\n  - {metric: top1}\n  - {metric: macro_f1}\n"))
    with pytest.raises(SpecError, match=r"budget.max_gflops_increase_pct: Input should be greater than or equal to 0"):
        load_spec(write_raw(SPEC_004 + "budget: {max_gflops_increase_pct: -1}\n"))


def test_metric_labels() -> None:
    assert tables.metric_label("top1") == "top-1 (%)"
    assert tables.metric_label("super.macro_f1") == "super-class macro F1 (%)"
    assert tables.metric_label("sub.top1") == "sub-class top-1 (%)"
    assert tables.metric_label("val.top1") == "val top-1 (%)"
    assert tables.metric_label("exact_match") == "exact match (%)"
    assert tables.metric_label("loss", scale=1) == "loss"
    assert tables.metric_column("micro_f1") == "test.micro_f1"
    assert tables.metric_column("val.super.top1") == "val.super.top1"


def test_provenance_footnote_and_warnings(write_raw: Callable[..., Path]) -> None:
    spec, runs = load(write_raw, SPEC_004, "grid.dataset=[digits]")
    fake_run(spec, runs[0], 0.9, commit="1111111111aaaa", day=0, wall_s=7200, processes=4)
    fake_run(spec, runs[1], 0.9, commit="2222222222bbbb", dirty=True, day=3, wall_s=3600)
    fake_run(spec, runs[2], 0.9, device="cpu", wall_s=1800, day=1)
    [table] = build(spec, runs)
    notes = "\n".join(table.notes)
    assert "Code version(s): 1111111111, 2222222222 (uncommitted changes), abcdef1234." in notes
    assert "Runs from 2026-01-01 to 2026-01-04." in notes
    assert "NVIDIA A100-SXM4-80GB (2 runs), cpu (1 runs)" in notes
    assert "Compute: 9.00 GPU-hours, 0.50 CPU-hours." in notes
    assert table.warnings == [
        "cells come from 3 code versions (1111111111, 2222222222 (uncommitted changes), abcdef1234).",
        "partial table, 1 run(s) not in it: missing (1): test_resnet/digits/+aug+dropout+scra/s0",
    ]


def test_pretrained_checkpoint_warning(write_raw: Callable[..., Path], tmp_path: Path) -> None:
    text = SPEC_004.replace("defaults: {data:", f"defaults: {{model: {{pretrained_path: {tmp_path}/a.pth}}, data:")
    text = text.replace("  scra: {optim.lr: 0.002}\n", f"  scra: {{model.pretrained_path: {tmp_path}/b.pth}}\n")
    spec, runs = load(write_raw, text, "grid.dataset=[digits]")
    for run in runs:
        fake_run(spec, run, 0.9)
    [table] = build(spec, runs)
    assert table.warnings == [
        f"test_resnet runs come from 2 pretrained checkpoints ({tmp_path}/a.pth, {tmp_path}/b.pth)."
    ]


def test_budget_marks_cells_over_it(table_1: tuple[SweepSpec, list[RunSpec]], write_raw: Callable[..., Path]) -> None:
    spec, runs = load(write_raw, SPEC_004 + "budget: {max_gflops_increase_pct: 0.1}\n")
    fill_table_1(spec, runs)
    [table] = build(spec, runs)
    scra = table.rows[-1].cells
    assert scra[3].over_budget and scra[3].text == "68.80 (+0.12%)†"
    assert not scra[4].over_budget, "no params budget was set"
    assert "† over the compute budget: GFLOPs more than 0.1% above the baseline row." in table.notes
    assert r"68.80 (+0.12\%)\textsuperscript{\dag}" in tables.render([table], "tex", {"sweep": "t"})
    spec5, runs5 = table_1
    [within] = build(spec5.model_copy(update={"budget": BudgetSpec(max_gflops_increase_pct=5)}), runs5)
    assert not any(cell.over_budget for row in within.rows for cell in row.cells)


def test_profile_fills_complexity_of_cells_not_run(write_raw: Callable[..., Path]) -> None:
    shaped = "modifiers.scra={model.head.hidden_dims: [16]}"  # a stand-in that changes the model, as SCRA does
    spec, runs = load(write_raw, SPEC_004, "grid.dataset=[digits]", shaped)
    fake_run(spec, runs[0], 0.9, gflops=1.0, params_m=2.0)

    def counter(cfg: object, shape: LabelShape | None) -> dict[str, float]:
        assert shape == LabelShape("single", 10), "digits has a known class count"
        return {"gflops": 3.0, "params_m": 4.0}

    profiled = profile_cmd.profile_runs(runs, counter)
    assert len(profiled) == 2, "augmentation, L2SP and dropout leave the model as it is; SCRA does not"
    frame = profile_cmd.to_frame(runs, profiled, spec)
    [table] = build(spec, runs, profile=frame)
    got = texts(table)
    assert got["Baseline"] == ["90.00 (1 seed, no interval)", "1.00", "2.000"], "a finished run's own numbers win"
    assert got["Baseline + Augmentation"] == ["-", "3.00 (+200.00%)", "4.000 (+100.00%)"]


def test_complexity_key_ignores_training_only_fields(write_raw: Callable[..., Path]) -> None:
    from orchestrator.sweep.plan import smoke_variant

    _, runs = load(write_raw, SPEC_004, "grid.seed=[0,1]", "modifiers.scra={model.head.hidden_dims: [16]}")
    keys = {(r.dataset, r.ablation): budget.complexity_key(r.config) for r in runs}
    assert budget.complexity_key(runs[0].config) == budget.complexity_key(runs[1].config)  # seeds
    assert budget.complexity_key(smoke_variant(runs[0].config)) == keys[(runs[0].dataset, runs[0].ablation)]
    assert keys[("CUB Birds", "Baseline")] == keys[("CUB Birds", "Baseline + Augmentation")], "augmentation"
    assert keys[("CUB Birds", "Baseline")] == keys[("CUB Birds", "Baseline + Augmentation + L2SP")], "L2SP"
    assert keys[("CUB Birds", "Baseline")] != keys[("CUB Birds", "Baseline + Augmentation + Dropout + SCRA")]
    [run] = [r for r in runs if r.ablation == "Baseline" and r.dataset == "CUB Birds" and r.seed == 0]
    dropout = run.config.model_copy(update={"model": run.config.model.model_copy(update={"head_dropout": 0.5})})
    assert budget.complexity_key(dropout) == keys[("CUB Birds", "Baseline")], "dropout adds no FLOPs or params"


def test_write_tables_formats_and_custom_template(write_raw: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "rows.txt.j2").write_text(
        "{% for t in tables %}{% for row in t.rows %}{{ row.label }}={{ row.cells[0].text }};{% endfor %}{% endfor %}\n"
    )
    text = SPEC_004 + "tables:\n  - {formats: [md, tex, html, csv], template: templates/rows.txt.j2}\n"
    text += "  - {name: f1, metric: macro_f1, formats: [csv]}\n"
    spec, runs = load(write_raw, text, "grid.dataset=[digits]")
    for run in runs:
        fake_run(spec, run, 0.9)
    store.write_snapshot(spec, spec.output_path)
    written = collect.write_tables(spec, spec.output_path)
    names = sorted(p.name for p in written.files)
    assert names == ["f1.csv", "f1.md", "table.csv", "table.html", "table.md", "table.rows.txt", "table.tex"]
    custom = (spec.output_path / "tables" / "table.rows.txt").read_text()
    assert custom.startswith("Baseline=90.00 (1 seed, no interval);Baseline + Augmentation=90.00 (+0.00) (1 seed")
    assert "macro F1 (%)" in written.markdown and "top-1 (%)" in written.markdown
    # From the output folder alone (sweep.yaml) no template is taken (a results folder is not code):
    # the tables are the same, with a warning saying how to render it.
    [(snapshot, root)] = collect.resolve_target(spec.output_path, [])
    again = collect.write_tables(snapshot, root)
    warning = "**Warning:** custom template templates/rows.txt.j2 not rendered: collect the spec file to render it"
    assert warning in again.markdown.splitlines()
    lines = [line for line in again.markdown.splitlines() if line and line != warning]
    assert lines == [line for line in written.markdown.splitlines() if line]
    assert "table.rows.txt" not in [p.name for p in again.files]


def test_missing_metric_is_a_warning_not_a_crash(write_raw: Callable[..., Path]) -> None:
    spec, runs = load(write_raw, SPEC_004 + "tables:\n  - {metric: super.macro_f1}\n", "grid.dataset=[digits]")
    fake_run(spec, runs[0], 0.9)
    [table] = build(spec, runs)
    assert table.warnings[0] == "no run reports test.super.macro_f1"
    assert table.warnings[1].startswith("partial table, 3 run(s) not in it: missing (3): ")
    assert all(row.cells[0].empty for row in table.rows)


def test_profile_and_plan_check_budget_then_collect_uses_it(
    write_raw: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli.main import main

    text = SPEC_004.replace("  scra: {optim.lr: 0.002}", "  scra: {data.image_size_px: 24}")
    text += "budget: {max_gflops_increase_pct: 5}\n"
    path = write_raw(text)
    assert main(["profile", str(path), "grid.dataset=[digits]"]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 cells, 2 distinct models profiled" in out
    # 24 px instead of 16: about twice the FLOPs (strided stages round the feature maps up).
    assert re.search(
        r"over budget: test_resnet/digits/Baseline \+ Augmentation \+ Dropout \+ SCRA: GFLOPs \+1\d\d\.\d\d%", out
    )
    assert out.count("over budget") == 1
    spec = load_spec(path, ["grid.dataset=[digits]"])
    profile = pd.read_csv(profile_file.profile_path(spec))
    assert list(profile["over_budget"]) == [False, False, False, True]
    assert 1.9 < profile["complexity.gflops"].iloc[3] / profile["complexity.gflops"].iloc[0] < 2.3
    # `plan` checks the budget too; rows that have not run still get their complexity columns.
    assert main(["plan", str(path), "grid.dataset=[digits]"]) == 0
    assert "over budget" in capsys.readouterr().out
    l2sp = next(run for run in plan(spec) if run.ablation == "Baseline + Augmentation + L2SP")
    fake_run(spec, l2sp, 0.5)  # one finished run: with none, collect writes nothing (issue 21)
    written = collect.write_tables(spec, spec.output_path)
    row = [line for line in written.markdown.splitlines() if line.startswith("| Baseline + Augmentation + Dropout")]
    assert row and re.search(r"\| - \| [0-9.]+ \(\+1\d\d\.\d\d%\)† \| 0\.374 \|$", row[0]), row


def test_known_label_shapes() -> None:
    from trainers.config import DatasetConfig

    def shape(**data: object) -> LabelShape | None:
        return label_shape(DatasetConfig.model_validate(data))

    assert shape(name="cub200") == LabelShape("single", 200)
    assert shape(name="foodx251").describe() == "251"
    assert shape(name="combined", parts=["cub200", "fgvc_aircraft"]) == LabelShape("single", 300)
    assert shape(name="fgvc_aircraft", task="hierarchical", super_level="manufacturer") == LabelShape(
        "hierarchical", 100, 30
    )
    hier = shape(name="digits", task="hierarchical", novel_subclasses=["9"])
    assert hier == LabelShape("hierarchical", 9, 2, True) and hier.describe() == "2 / 9+novel"
    assert shape(name="digits", task="multilabel") == LabelShape("multilabel", 4)
    assert shape(name="imagefolder", root="/x") is None, "read from disk"
    declared = {"super_classes": 3, "classes": 87, "novel_slot": True}
    assert shape(name="hierarchical_csv", root="/x", label_shape=declared) == LabelShape("hierarchical", 87, 3, True)
    assert shape(name="multilabel", root="/x", label_shape={"classes": 14}).describe() == "14 labels"
    assert shape(name="combined", parts=["cub200", {"name": "imagefolder", "root": "/x"}]) is None


def test_collect_finds_smoke_runs_from_any_folder(write_raw: Callable[..., Path]) -> None:
    from orchestrator.sweep.plan import smoke_plan

    spec, runs = load(write_raw, SPEC_004, "grid.dataset=[digits]")
    smoke_root = spec.output_path / "smoke"
    for run in smoke_plan(runs):
        fake_run(spec, run, 0.5, root=smoke_root)
    store.write_snapshot(spec, smoke_root)  # only smoke runs were ever submitted
    for target, smoke in ((spec.output_path, False), (spec.output_path, True), (smoke_root, False)):
        [(found, root)] = collect.resolve_target(target, [])
        written = collect.write_tables(found, root, smoke=smoke)
        assert written.table_path == smoke_root / "tables" / "table.md"
        assert "| Baseline | 50.00 (1 seed, no interval) |" in written.markdown and "(smoke)" in written.markdown
