"""Every `orchestrate ...` line in README and docs parses with today's parser, and those that can run
here without training or outside data (plan, status, datasets of bundled data, schema, completion,
examples, local dry runs) run as written and exit 0. Option names that drift fail here."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
_FENCE = re.compile(r"^```(bash|sh|console|shell)\n(.*?)^```", re.S | re.M)
# Placeholders the docs use for a user's own files, and what stands in for them when parsing.
_PLACEHOLDERS = {"RUN_DIR": "runs/x", "IMAGES_DIR": "images", "FILE.tsv": "out.tsv", "NAME": "name", "DIR": "d"}
# Commands that run here as written: read-only, or writing only under the working folder; no training.
_RUNS_HERE = {"plan", "status", "schema", "completion", "examples", "--version", "datasets"}


def _command_lines() -> Iterator[tuple[str, str]]:
    """(page:line, command) for each `orchestrate` command in a shell block, comments and pipes cut."""
    for page in PAGES:
        for match in _FENCE.finditer(page.read_text()):
            for number, raw in enumerate(match.group(2).splitlines()):
                line = raw.removeprefix("$ ").split("  #")[0]
                for part in re.split(r"&&|\|(?!\w)|>", line):
                    part = part.strip()
                    if part.startswith("orchestrate "):
                        yield f"{page.relative_to(REPO)}:{number}", part


def _argv(command: str) -> list[str]:
    """The command's arguments, optional `[...]` parts dropped and placeholders filled in."""
    text = re.sub(r"\[[^\]]*\]", "", command).removeprefix("orchestrate ")
    words = shlex.split(text)
    return [_PLACEHOLDERS.get(word, word) for word in words]


COMMANDS = list(_command_lines())


def test_the_docs_have_commands_to_check() -> None:
    assert len(COMMANDS) > 30


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_parses(where: str, command: str) -> None:
    parser = build_parser()
    argv = _argv(command)
    if argv == ["--version"]:
        return
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `{command}` does not parse")
    unknown = [item for item in extra if "=" not in item or item.startswith("-")]
    assert not unknown, f"{where}: `{command}`: unknown arguments {unknown}"
    assert isinstance(args, argparse.Namespace)


def _runnable() -> list[tuple[str, str]]:
    keep = []
    for where, command in COMMANDS:
        argv = _argv(command)
        local_dry_run = argv[0] == "submit" and "--dry-run" in argv and "slurm" not in argv
        user_data = any(word.startswith(("~", "/", "$")) or "site:" in word or "cub" in word for word in argv)
        # a sweep the page's reader wrote first (that page runs as written in test_docs.py)
        user_data |= any(word.endswith(".yaml") and not (REPO / word).is_file() for word in argv)
        if (argv[0] in _RUNS_HERE or local_dry_run) and not user_data and "--watch" not in argv:
            keep.append((where, command))
    return keep


RUNNABLE = [  # `datasets describe` reads and draws a whole dataset: seconds, so it runs with the slow tests
    pytest.param(where, command, id=where, marks=[pytest.mark.slow] if "describe" in command else [])
    for where, command in _runnable()
]


def test_some_commands_run_here() -> None:
    assert {_argv(p.values[1])[0] for p in RUNNABLE} >= {"plan", "status", "completion", "datasets"}


@pytest.mark.parametrize(("where", "command"), RUNNABLE)
def test_command_runs_as_written(
    where: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder in ("sweeps", "sites", "slurm"):  # the repository's layout, in a folder the command may write to
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("dev-cluster"))
    monkeypatch.chdir(tmp_path)
    try:
        code = main(_argv(command))
    except SystemExit as exc:  # --version, completion: argparse exits 0 after printing
        code = int(exc.code or 0)
    output = capsys.readouterr()
    assert code == 0, f"{where}: `{command}` exited {code}: {output.err[-500:]}"
    assert output.out.strip(), f"{where}: `{command}` printed nothing"
