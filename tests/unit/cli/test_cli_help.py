"""Every `--help` shows its defaults and an example, and `submit` says where runs execute first."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.cli.main import build_parser, main
from orchestrator.launch.local import LocalLauncher
from orchestrator.launch.slurm import SlurmLauncher
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

ROOT = Path(__file__).resolve().parents[3]


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_help_has_an_example_of_itself(name: str) -> None:
    text = _commands()[name].format_help()
    assert "example" in text, f"`orchestrate {name} --help` has no example"
    examples = [line.split("orchestrate ", 1)[1] for line in text.splitlines() if "orchestrate " in line]
    assert any(example.split()[0] == name for example in examples), f"{name}: the example runs another command"


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_with_a_default_says_it(name: str) -> None:
    command = _commands()[name]
    formatter = command._get_formatter()
    for action in command._actions:
        if action.default in (None, False, argparse.SUPPRESS, []) or not action.option_strings:
            continue
        shown = formatter._expand_help(action) if action.help else ""
        assert "default" in shown and str(action.default).split(".")[0] in shown.replace(",", ""), (
            f"{name} {action.option_strings[0]}: help does not show its default {action.default!r}: {shown!r}"
        )


def test_plan_example_runs_as_written(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    line = _commands()["plan"].epilog or ""
    argv = shlex.split(line.split("orchestrate ", 1)[1])
    assert main(argv) == 0
    assert "test_resnet/digits/base/s1" in capsys.readouterr().out


def _spec() -> object:
    return load_spec(ROOT / "sweeps" / "demo.yaml")


def test_local_launcher_says_this_machine_and_how_to_use_slurm() -> None:
    where = LocalLauncher(_spec(), Console(), workers=3).where()  # type: ignore[arg-type]
    assert where.startswith("runs execute here: on this machine")
    assert "3 at a time" in where and "--executor slurm" in where
    assert "in this process" in LocalLauncher(_spec(), Console(), debug=True).where()  # type: ignore[arg-type]


def test_slurm_launcher_names_partition_resources_and_environment() -> None:
    spec = load_spec(ROOT / "sweeps" / "demo.yaml", ["slurm.partition=gpu", "slurm.gpus_per_node=2"])
    where = SlurmLauncher(spec, Console()).where()
    assert where.startswith("runs execute on SLURM: partition gpu, 1 node(s) x 2 GPU(s)")
    assert "this interpreter" in where


def test_slurm_launcher_sizes_the_jobs_by_the_runs_distributed_blocks() -> None:
    """A run asking GPUs through `distributed` gets them in its job (job_resources): the line says
    so, not the slurm block's 0 (it said '1 node(s) x 0 GPU(s)' over jobs of one GPU each)."""
    spec = load_spec(ROOT / "sweeps" / "demo.yaml", ["defaults.distributed.gpus_per_node=1"])
    assert "1 node(s) x 1 GPU(s)," in SlurmLauncher(spec, Console()).where(plan(spec))
    mixed = load_spec(ROOT / "sweeps" / "demo.yaml", ["per_backbone.test_resnet.distributed.gpus_per_node=2"])
    assert "1 node(s) x 0 GPU(s) or 1 node(s) x 2 GPU(s)," in SlurmLauncher(mixed, Console()).where(plan(mixed))


def test_submit_prints_where_before_anything_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(ROOT)
    # the model checks on the meta device are tested elsewhere; here only the order of the lines
    monkeypatch.setattr("orchestrator.cli.submit._submit_checks", lambda *args: None)
    code = main(["submit", "sweeps/demo.yaml", "--dry-run", f"output_dir={tmp_path}", "--skip-data-check"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    where = next(i for i, line in enumerate(lines) if line.startswith("runs execute here: on this machine"))
    planned = next(i for i, line in enumerate(lines) if "runs planned" in line)
    assert where < planned


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "1e308", "0.5", "x"])
@pytest.mark.parametrize("command", [["status", "s.yaml", "--watch"], ["submit", "s.yaml", "--follow"]])
def test_poll_intervals_are_seconds_from_one_to_a_day(
    command: list[str], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """nan and -1 failed in time.sleep with a traceback, inf and 1e308 overflowed it, 0 polled busily."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--interval", value])
    assert exit_info.value.code == 2 and "argument --interval" in capsys.readouterr().err
    assert build_parser().parse_args([*command, "--interval", "2.5"]).interval == 2.5


@pytest.mark.parametrize("value", ["nan", "0", "1", "1.5", "-0.2"])
def test_predict_threshold_lies_between_zero_and_one(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "run", "images", "--threshold", value])
    assert "argument --threshold" in capsys.readouterr().err
