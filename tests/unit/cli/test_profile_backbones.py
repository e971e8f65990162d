"""`orchestrate profile` checks backbone names as `plan` does, before any model is built."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.checks import complexity
from orchestrator.cli.main import main

HUB = "grid.backbone=[hf-hub:timm/resnet18.a1_in1k]"


def _no_model(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a model was built (timm would look the hf-hub: name up on the Hub)")


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model built (the path by which timm downloads an `hf-hub:` name) fails the test."""
    monkeypatch.setattr(complexity, "profile_frame", _no_model)
    monkeypatch.setattr(complexity, "profile_runs", _no_model)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and should one slip through, no network either


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("json", [[], ["--json"]], ids=["human", "json"])
def test_profile_refuses_an_hf_hub_backbone_as_plan_does(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str], no_models: None, json: list[str]
) -> None:
    """It built the model: timm tried the Hub (no network on clusters; weights come from a spec's local
    file) and the cells came out "not profiled", exit 0, a profile.csv written."""
    path = write_spec()
    code, out, plan_err = _run(capsys, "plan", str(path), HUB, "--skip-data-check")
    assert (code, out) == (2, "")
    assert "grid.backbone[0]: 'hf-hub:timm/resnet18.a1_in1k' is not a timm" in plan_err
    code, out, err = _run(capsys, "profile", str(path), HUB, *json)
    assert (code, out, err) == (2, "", plan_err)
    assert len(err.strip().splitlines()) == 1
    assert not (path.parent / "out" / "profile.csv").exists()


def test_profile_refuses_an_unknown_tag_before_building(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str], no_models: None
) -> None:
    code, out, err = _run(capsys, "profile", str(write_spec()), "grid.backbone=[resnet10t.no_such_tag]")
    assert (code, out) == (2, "") and "has no tag 'no_such_tag'" in err
