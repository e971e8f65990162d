"""The console script's process policy (orchestrator.cli.process): exit codes kept, collector frozen."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator, Sequence

import pytest

from orchestrator.cli.process import run_command
from orchestrator.sweep import gcpause


@pytest.fixture
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test process's objects back in the collector's care, before and after, and the paused
    blocks' policy as it was (run_command sets it for the process); no triton loaded, as in a
    command that imports no torch (other tests of the session may have imported it)."""
    monkeypatch.setattr(gcpause, "_FREEZE_AT_END", [False])
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


def test_run_command_exits_with_mains_code_and_freezes(unfrozen: None) -> None:
    seen: list[int] = []

    def main(argv: Sequence[str] | None) -> int:
        assert argv is None  # the console reads sys.argv itself
        seen.append(gc.get_freeze_count())
        return 3

    with pytest.raises(SystemExit) as exited:
        run_command(main)
    assert exited.value.code == 3
    assert seen and seen[0] > 0, "the start-up imports are frozen before the command runs"
    assert gc.get_freeze_count() > 0
    assert gcpause._FREEZE_AT_END == [True], "the command's paused blocks end frozen"


def test_run_command_freezes_when_main_raises(unfrozen: None) -> None:
    def main(argv: Sequence[str] | None) -> int:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        run_command(main)
    assert gc.get_freeze_count() > 0


def test_a_second_ctrl_c_while_the_first_is_reported_exits_130_without_a_traceback(unfrozen: None) -> None:
    """main() turns the first Ctrl-C into a line and 130; a second one landing while it prints that
    line escaped main() and Python printed a traceback over the terminal."""

    def main(argv: Sequence[str] | None) -> int:
        try:
            raise KeyboardInterrupt  # the first Ctrl-C
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # the second, inside main's handler

    with pytest.raises(SystemExit) as exited:
        run_command(main)
    assert exited.value.code == 130


def test_module_entry_keeps_the_exit_code() -> None:
    """`python -m orchestrator.cli` goes through run_command: a spec error is exit code 2, one line."""
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "plan", "no-such-spec.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "no-such-spec.yaml" in done.stderr


_EXIT_SCRIPT = """
import sys, types
from orchestrator.cli.process import run_command


class Cycle:
    def __init__(self):
        self.me = self

    def __del__(self):
        sys.stdout.write("finalised\\n")
        sys.stdout.flush()


def main(argv):
    if sys.argv[1] == "triton":
        sys.modules["triton"] = types.ModuleType("triton")  # as `import timm` brings it in
    sys.modules["held"] = types.ModuleType("held")
    sys.modules["held"].kept = Cycle()  # a module object in a cycle, as triton's are
    return 0


run_command(main)
"""


@pytest.mark.parametrize(("loaded", "finalised"), [("triton", True), ("nothing", False)])
def test_a_command_that_loaded_triton_is_finalised_as_usual(loaded: str, finalised: bool) -> None:
    """Module objects in reference cycles are finalised at exit after a command that imported
    triton (else nanobind printed its "leaked instances" report for triton's after the command's
    output); other commands keep the frozen collector's quick exit, which leaves them be."""
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, loaded], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert ("finalised" in done.stdout) is finalised
