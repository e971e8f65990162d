"""Preflight: what used to fail on the GPU node after queueing is refused by `plan`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.checks import preflight
from orchestrator.cli.main import main
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SpecError, load_spec
from trainers import rules
from trainers.model import regimes


def _preflight(path: Path, overrides: list[str], data: bool = True) -> None:
    spec = load_spec(path, overrides)
    preflight.check(spec, plan(spec), str(path), data=data)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("defaults.loss.l2sp=0.01", r"loss.l2sp anchors to pretrained weights"),
        ("defaults.regime=linear_probe", r"regime linear_probe needs model.pretrained_path"),
        ("defaults.regime=pretrained_eval", r"regime pretrained_eval needs model.pretrained_path"),
        ("defaults.loss.name=bce", r"loss.name 'bce' is multilabel only; single tasks use cross_entropy"),
        ("defaults.data.augment={color_jitter: [0.1, 0.1, 0.1, 0.9]}", r"color_jitter hue 0.9: must be in \[0, 0.5\]"),
        ("defaults.model.head={hidden_dims: [-1]}", r"hidden_dims \[-1\]: widths must be >= 1"),
        ("defaults.early_stopping.metric=val_top_1", r"early_stopping.metric 'val_top_1': not a validation metric"),
        ("grid.seed=[4294967296]", r"seed 4294967296: must be in \[0, 2\^32\)"),
        ("grid.seed=[-1]", r"seed -1: must be in \[0, 2\^32\)"),
    ],
)
def test_node_only_rules_fail_at_plan(write_spec: Callable[..., Path], override: str, message: str) -> None:
    with pytest.raises(SpecError, match=r"sweep.yaml: run .*" + message):
        _preflight(write_spec(), [override], data=False)


def test_pretrained_files_resolve_against_the_spec_folder(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "r.pth").write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory is not the spec's folder
    path = write_spec()
    spec = load_spec(path, ["defaults.model.pretrained_path=ckpt/r.pth"])
    assert spec.defaults["model"]["pretrained_path"] == str(tmp_path / "ckpt" / "r.pth")
    preflight.check(spec, plan(spec), str(path), data=False)
    with pytest.raises(SpecError, match=r"model.class_map_path: file .*missing.json does not exist"):
        _preflight(
            path,
            [
                "defaults.regime=pretrained_eval",
                "defaults.model={pretrained_path: ckpt/r.pth, class_map_path: missing.json}",
            ],
        )


@pytest.mark.parametrize(("kind", "says"), [("fifo", "is not a regular file"), ("folder", "is a folder, not a file")])
def test_a_checkpoint_that_is_no_file_says_what_it_is(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, says: str
) -> None:
    """A FIFO or a folder at pretrained_path was reported as "does not exist"."""
    odd = tmp_path / "odd.pth"
    os.mkfifo(odd) if kind == "fifo" else odd.mkdir()
    assert main(["plan", str(write_spec()), f"defaults.model.pretrained_path={odd}"]) == 2
    err = capsys.readouterr().err
    assert f"model.pretrained_path: checkpoint file {odd} {says}" in err and err.count("\n") == 1


@pytest.mark.parametrize("kind", ["loop", "dangling"])
def test_a_link_that_leads_nowhere_says_so_for_a_checkpoint_and_a_dataset_root(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """A symbolic-link loop or a dangling link was reported as "does not exist"."""
    first, second = tmp_path / "first", tmp_path / "second"
    second.symlink_to(first)
    first.symlink_to(second if kind == "loop" else tmp_path / "gone")
    says = "is a symbolic link that leads nowhere (dangling, or a loop of links)"
    assert main(["plan", str(write_spec()), f"defaults.model.pretrained_path={second}"]) == 2
    err = capsys.readouterr().err
    assert f"model.pretrained_path: checkpoint file {second} {says}" in err and err.count("\n") == 1
    root = f"grid.dataset=[{{name: imagefolder, root: {second}}}]"
    assert main(["plan", str(write_spec()), root]) == 2
    err = capsys.readouterr().err
    assert f"grid.dataset[0]: dataset 'imagefolder': root {second} {says}" in err and err.count("\n") == 1


def test_missing_checkpoint_is_a_plan_error_on_the_command_line(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(write_spec()), "defaults.model.pretrained_path=nope.pth"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.pretrained_path: checkpoint file" in err and "nope.pth" in err


def test_trainer_and_plan_share_the_rules() -> None:
    assert regimes.check_regime is rules.check_regime


def test_validation_metric_names_match_what_the_trainer_reports() -> None:
    from trainers.loop.metrics import metric_names
    from trainers.model.tasks import TaskSpec

    for kind, extra in (("single", {}), ("hierarchical", {"super_class_names": tuple("ABCDEFG")}), ("multilabel", {})):
        task = TaskSpec(kind=kind, class_names=tuple("abcdefg"), **extra)  # type: ignore[arg-type]
        assert set(metric_names(task)) == set(rules.VAL_METRICS[kind]), kind
