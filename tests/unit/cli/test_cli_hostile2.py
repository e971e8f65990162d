"""A confused or hostile researcher at the command line, second round.

- `datasets describe --out DATA/a/report` wrote class_counts.png into class `a` of the dataset it
  described (the next read counted it as a training image), and a sweep whose `output_dir` lay
  inside its ImageFolder root planned clean (its run folders and report figures would become a class).
- `orchestrate completion bash | head -1` ended in a BrokenPipeError traceback.
- `orchestrate plan SPEC >&-` (stdout closed) ended in an AttributeError traceback at import,
  and `2>&-` turned a clean usage error (2) into a silent crash (1).
- Ctrl-C during `plan --json` printed "interrupted: ... submit again" on stdout, after no object.
- `submit --workers 0` (or -3) ran one worker without a word; `--max-runs -1` refused every sweep
  as exceeding "the cap of -1".
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import dataset_fixtures as fx
import pytest

from orchestrator.cli import commands
from orchestrator.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[3]

SPEC_IN_DATA = """
name: inside
output_dir: {out}
defaults:
  data: {{image_size_px: 16, batch_size: 8, num_workers: 0}}
  optim: {{name: adam, lr: 1e-3}}
  epochs: 1
grid:
  backbone: [resnet10t]
  dataset: [{{name: imagefolder, root: {root}}}]
  seed: [0]
ablations:
  Baseline: []
"""


def _images(root: Path) -> Path:
    for label, name in enumerate(("a", "b")):
        for i in range(10):
            fx.write_image(root / name / f"i{i}.png", label, i)
    return root


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("where", ["ds/a/report", "ds", "outside-link/report"])
def test_describe_refuses_an_out_folder_inside_the_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    data = _images(tmp_path / "ds")
    (tmp_path / "outside-link").symlink_to(data / "a")  # resolved once, then compared: still inside
    before = _files(data)
    target = f"{{name: imagefolder, root: {data}}}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["datasets", "describe", target, "--out", str(tmp_path / where)])
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2 and "--out" in line and "inside the folder of dataset" in line and str(data) in line
    assert _files(data) == before  # nothing written into the dataset


def test_describe_beside_the_dataset_still_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _images(tmp_path / "ds")
    target = f"{{name: imagefolder, root: {data}}}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["datasets", "describe", target, "--out", str(tmp_path / "ds-report")]) == 0
    assert (tmp_path / "ds-report" / "class_counts.png").is_file()


@pytest.mark.parametrize("extra", [[], ["--skip-data-check"], ["--json"]])
def test_plan_refuses_an_output_dir_inside_a_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    data = _images(tmp_path / "ds")
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC_IN_DATA.format(out=data / "results", root=data))
    code = main(["plan", str(spec), *extra])
    captured = capsys.readouterr()
    line = _one_line_error(captured.err)
    assert code == 2 and captured.out == ""
    assert "output_dir" in line and str(spec) in line and "inside the folder of dataset 'imagefolder'" in line


def test_plan_accepts_an_output_dir_beside_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _images(tmp_path / "ds")
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC_IN_DATA.format(out=tmp_path / "ds-results", root=data))  # a sibling sharing the prefix
    assert main(["plan", str(spec)]) == 0, capsys.readouterr().err


class _ClosedPipe(io.StringIO):
    """stdout whose reader has gone (`| head -1`)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("argv", [["completion", "bash"], ["schema"], ["datasets", "list", "--json"]])
def test_a_closed_pipe_ends_the_command_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(argv) == 1
    assert capsys.readouterr().err == ""


def test_ctrl_c_under_json_leaves_stdout_empty(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "_plan_json", interrupted)
    assert main(["plan", str(write_spec()), "--json"]) == 130
    captured = capsys.readouterr()
    assert captured.out == "" and "interrupted" in captured.err and "submit again" not in captured.err


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "s.yaml", "--workers", "0"],
        ["submit", "s.yaml", "--workers", "-3"],
        ["plan", "s.yaml", "--max-runs", "-1"],
        ["collect", "--max-runs", "0"],
        ["plan", "s.yaml", "--max-runs", "many"],
    ],
)
def test_counts_below_one_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and argv[-2] in err and repr(argv[-1]) in err


def _cli(argv: list[str], close: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`python -m orchestrator.cli ARGV` with descriptor `close` (1 or 2) closed, as `>&-` / `2>&-` do;
    the other stream is captured through a file."""
    log = tmp_path / "log.txt"
    with log.open("w") as sink:
        keep = {1: 2, 2: 1}[close]

        def shut() -> None:
            os.dup2(sink.fileno(), keep)
            os.close(close)

        done = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *argv], cwd=ROOT, preexec_fn=shut, check=False, text=True
        )
    done.stdout = log.read_text()
    return done


def test_closed_stdout_or_stderr_is_no_crash(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    done = _cli(["plan", str(write_spec()), "--json"], 1, tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stdout, done.stdout
    done = _cli(["plan", str(tmp_path / "missing.yaml")], 2, tmp_path)
    assert done.returncode == 2 and done.stdout == ""


def _bytes_named(root: Path) -> Path:
    """An ImageFolder whose class folders are named `b<0xff>` (not UTF-8) and `é`."""
    for label, name in enumerate((os.fsdecode(b"b\xff"), "é")):
        for i in range(10):
            fx.write_image(root / name / f"i{i}.png", label, i)
    return root


def test_describe_of_a_class_folder_named_in_bytes_writes_its_escape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CSV encoding, pandas' to_json and matplotlib each failed on the name's lone surrogate: a traceback."""
    data = _bytes_named(tmp_path / "ds")
    target = f"{{name: imagefolder, root: {data}}}"
    for out, extra in (("plain", []), ("json", ["--json"])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(["datasets", "describe", target, "--out", str(tmp_path / out), *extra]) == 0
        captured = capsys.readouterr()
        assert "\udcff" not in captured.out + captured.err  # the lone surrogate, printed as raw 0xff
        assert "b\\udcff" in (captured.out if out == "plain" else captured.err)
        assert "b\\udcff" in (tmp_path / out / "class_counts.csv").read_text(encoding="utf-8")
        assert (tmp_path / out / "class_counts.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads(captured.out)["datasets"][0]["classes"] == ["b\\udcff", "é"]


@pytest.mark.parametrize("encoding", ["ascii", ""])
def test_the_console_escapes_what_its_encoding_cannot_write(tmp_path: Path, encoding: str) -> None:
    """PYTHONIOENCODING=ascii ended `init` in a UnicodeEncodeError at `é`; a UTF-8 stdout wrote the
    non-UTF-8 folder name's raw 0xff byte to the terminal."""
    data = _bytes_named(tmp_path / "ds")
    env = {**os.environ, "PYTHONIOENCODING": encoding, "LC_ALL": "C.UTF-8"}
    argv = [sys.executable, "-m", "orchestrator.cli", "init", "--root", str(data), "--out", str(tmp_path / "s.yaml")]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, check=False)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    assert b"\xff" not in done.stdout and b"b\\udcff" in done.stdout
    assert (b"\\xe9" if encoding == "ascii" else "é".encode()) in done.stdout


def test_init_escapes_the_class_folder_names_it_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rich.markup.escape left an OSC title sequence, a CSI colour and a bidi override in a class name raw."""
    names = ["a\x1b]0;pwned\x07\x1b[31mred", "b\u202egpj.exe", "[bold]c"]
    for label, name in enumerate(names):
        for i in range(8):
            fx.write_image(tmp_path / "ds" / name / f"i{i}.png", label, i)
    assert main(["init", "--root", str(tmp_path / "ds"), "--out", str(tmp_path / "s.yaml")]) == 0
    out = capsys.readouterr().out
    assert not any(char in out for char in "\x1b\x07\u202e"), out
    assert "b\\u202egpj.exe" in out and "[bold]c" in out
