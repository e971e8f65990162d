"""Hostile text from a folder name, a dataset's files or a site file reaches the terminal escaped, and
`--json` stays JSON: a --variance-from folder named with an OSC sequence was printed raw by the adaptive
estimate, a class folder's ESC and BEL reached stderr in matplotlib's missing-glyph warnings and sat raw
in report.md, and a site's 1e-320 images/s made `plan --json` print `Infinity`, which JSON has not (such a
site is refused now, and `--json` writes any non-finite number as null)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from test_plan_power_flags import SITE, _finished, _plan, plan_adaptive_from

HOSTILE = "fin\x1b]0;pwned\x07\x1b[31m[bold]x[link=file:x]\rished"


def _reject(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def test_adaptive_estimate_escapes_the_variance_folder(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _finished(write_spec, tmp_path).rename(tmp_path / HOSTILE)
    code, out, err = plan_adaptive_from(folder, write_spec, tmp_path, capsys)
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    line = next(x for x in out.splitlines() if "GPU-hours: minimum" in x)
    assert "finished sweep" in line and "[bold]x[link=file:x]" in line


def test_a_tiny_site_throughput_is_refused_in_one_line_not_printed_as_infinity(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1e-320 images/s made inf device-hours (`plan --json` printed `Infinity`): the site file is refused."""
    site = tmp_path / "site.yaml"
    site.write_text(SITE.replace("images_per_s: 1000", "images_per_s: 1e-320"))
    code, out, err = _plan(capsys, str(write_spec()), f"site={site}", "--json")
    assert code != 0 and "Infinity" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "images_per_s" in lines[0] and "0.001" in lines[0], err
    site.write_text(SITE.replace("images_per_s: 1000", "images_per_s: 0.001"))
    code, out, err = _plan(capsys, str(write_spec()), f"site={site}", "--json")
    assert code == 0, err
    obj = json.loads(out, parse_constant=_reject)
    assert obj["estimates"] and all(cell["hours"] > 0 for cell in obj["estimates"])


def test_describe_chart_warns_without_raw_control_characters(tmp_path: Path) -> None:
    import pandas as pd

    from orchestrator.cli.datasets import bar_chart

    counts = pd.DataFrame(
        {"level": ["class"] * 2, "class": ["a\x1b]0;pwned\x07b", "c\rd"], "train": [1, 2], "val": [1, 1]}
        | {"test": [1, 1], "total": [3, 4]}
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert bar_chart(counts, "title\x1b[2J").startswith(b"\x89PNG")
    shown = " ".join(str(w.message) for w in caught)
    assert not any(char in shown for char in "\x1b\x07\r"), shown


def test_describe_escapes_class_folder_names_on_screen_and_in_report_md(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """report.md held a class folder's ESC and BEL raw (`cat report.md` ran them) and its `|` split the row."""
    import dataset_fixtures as fx

    from orchestrator.cli.main import main

    names = ["cat\x1b]0;pwned\x07|x", "[bold]dog[link=file:y]", "owl\rOVER"]
    for label, name in enumerate(names):
        for i in range(10):
            fx.write_image(tmp_path / "ds" / name / f"i{i}.png", label, i)
    target = f"{{name: imagefolder, root: {tmp_path / 'ds'}}}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["datasets", "describe", target, "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert not any(char in captured.out + captured.err for char in "\x1b\x07\r")
    assert "[bold]dog[link=file:y]" in captured.out
    report = (tmp_path / "out" / "report.md").read_text()
    assert not any(char in report for char in "\x1b\x07\r")
    rows = [line for line in report.splitlines() if line.startswith("| class |")]
    header = next(line for line in report.splitlines() if line.startswith("| level | class |"))
    assert rows and all(row.replace("\\|", "").count("|") == header.count("|") for row in rows[:3])


def test_emit_writes_nested_nan_and_infinity_as_null(capsys: pytest.CaptureFixture[str]) -> None:
    """pydantic writes NaN as null only in `Any` fields; typed floats kept NaN and json.dumps wrote it."""
    from orchestrator.cli import jsonout
    from orchestrator.cli.jsonout_profile import ProfileOut

    budget = {"max_gflops_increase_pct": float("nan"), "max_params_increase_pct": 5.0}
    obj = ProfileOut(
        sweep="s", cells=[], distinct_models=0, seconds=float("inf"), profile_csv=None, budget=budget, over_budget=[]
    )
    assert jsonout.emit(lambda: (obj, 0)) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=_reject)
    assert out["seconds"] is None and out["budget"] == {"max_gflops_increase_pct": None, "max_params_increase_pct": 5.0}
