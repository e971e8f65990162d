"""`orchestrate plan` expected to refuse: the one line it printed (shared by the hostile-spec tests)."""

from __future__ import annotations

import pytest

from orchestrator.cli.main import main


def plan_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `orchestrate plan` expecting a refusal; the one line it printed."""
    assert main(["plan", *argv, "--skip-data-check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err
