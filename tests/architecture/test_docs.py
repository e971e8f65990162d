"""The docs stay true: README is short, every file they name exists, every YAML example validates,
and the shell examples marked `<!-- test: run -->` run as written."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from orchestrator.sweep import yamlio
from orchestrator.sweep.plan import plan
from orchestrator.sweep.site import Site, SlurmConfig
from orchestrator.sweep.spec import SweepSpec, spec_from_dict
from trainers.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
MAX_README_LINES = 200
# Paths in backticks that name a file of this repository (outputs under results/ are made by runs).
_REPO_PATH = re.compile(r"`((?:sweeps|sites|slurm|bench|tests|orchestrator|trainers|docs)/[\w./-]*\w)`")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_RUN_MARK = "<!-- test: run -->"


def _blocks(text: str, language: str) -> Iterator[str]:
    for match in _FENCE.finditer(text):
        if match.group(1) == language:
            yield match.group(2)


def test_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; the details belong in docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_named_files_exist(page: Path) -> None:
    text = page.read_text()
    named = set(_REPO_PATH.findall(text))
    links = {m for m in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)}
    missing = [p for p in named if not (REPO / p).exists() and "*" not in p and "<" not in p]
    missing += [link for link in links if not (page.parent / link).exists() and not _generated(page, link)]
    assert not missing, f"{page.relative_to(REPO)} names files that are not in the repository: {sorted(missing)}"


GENERATED = {"reference/cli.md", "reference/spec.md", "reference/site.md", "reference/trainer.md"}


def _generated(page: Path, link: str) -> bool:
    """A page the docs build generates from the code (docs/hooks/reference.py)."""
    target = (page.parent / link).resolve()
    return target.is_relative_to(REPO / "docs") and str(target.relative_to(REPO / "docs")) in GENERATED


def _yaml_examples() -> Iterator[tuple[str, str]]:
    for page in PAGES:
        for index, block in enumerate(_blocks(page.read_text(), "yaml")):
            yield f"{page.relative_to(REPO)}#{index}", block


def _demo() -> dict[str, Any]:
    raw = yamlio.load_file(REPO / "sweeps" / "demo.yaml", "sweep")
    assert isinstance(raw, dict)
    return raw


def _check_example(raw: Any, where: str) -> None:
    """Validate a YAML example by what its keys are: a sweep (or part of one), a site file, a
    profile, or a trainer config (as `defaults`). Parts are merged into the demo sweep and planned."""
    assert isinstance(raw, dict), f"{where}: not a mapping"
    keys = set(raw)
    if keys <= set(SweepSpec.model_fields):
        spec = copy.deepcopy(_demo()) | raw
        spec.pop("site", None)  # an example's site file lives on the reader's cluster
        if "seeds" in raw and "grid" not in raw:  # adaptive seeds replace the demo's seed axis
            spec["grid"] = {k: v for k, v in spec["grid"].items() if k != "seed"}
        if "per_backbone" in raw and "grid" not in raw:  # a fragment about other backbones than the demo's
            spec["grid"]["backbone"] = list(raw["per_backbone"])
        assert plan(spec_from_dict(spec, where))
    elif keys <= set(Site.model_fields):
        Site.model_validate(raw)
    elif keys <= set(SlurmConfig.model_fields):
        SlurmConfig.model_validate(raw)
    elif keys <= set(TrainConfig.model_fields):
        assert plan(spec_from_dict(_demo() | {"defaults": raw}, where))
    else:
        raise AssertionError(f"{where}: keys {sorted(keys)} are not a sweep, site, profile or trainer config")


@pytest.mark.parametrize(("where", "block"), list(_yaml_examples()), ids=lambda item: str(item)[:40])
def test_yaml_examples_validate(where: str, block: str) -> None:
    _check_example(yamlio.loads(block), where)


def _runnable(page: Path) -> list[str]:
    text = page.read_text()
    scripts = []
    for part in text.split(_RUN_MARK)[1:]:
        match = _FENCE.search(part)
        assert match is not None and match.start() < 5, f"{page}: {_RUN_MARK} not followed by a code block"
        scripts.append(match.group(2))
    return scripts


def _shapes(root: Path) -> None:
    """A tiny three-class ImageFolder dataset with visibly different classes."""
    for index, name in enumerate(["circle", "square", "triangle"]):
        (root / name).mkdir(parents=True)
        for i in range(20):
            colour = (index * 100 + i, 255 - index * 80, (i * 37) % 256)
            Image.new("RGB", (24, 24), colour).save(root / name / f"{i:03d}.png")


@pytest.mark.slow
def test_getting_started_runs_as_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _shapes(home / "data" / "shapes")
    work = tmp_path / "work"
    work.mkdir()
    script = "set -euo pipefail\n" + "\n".join(_runnable(REPO / "docs" / "getting-started" / "your-dataset.md"))
    env = {**os.environ, "HOME": str(home), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = work / "results" / "shapes" / "tables" / "table.md"
    assert table.is_file(), done.stdout[-2000:]
    text = table.read_text()
    assert "+ Augmentation" in text and "Baseline" in text
    assert "9 completed" in done.stdout or "completed" in done.stdout
