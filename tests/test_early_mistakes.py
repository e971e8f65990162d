"""Mistakes caught early, with the fix in the message (issue 21, part 7): "did you mean" for
unknown keys anywhere a user writes one, and the plan-time checks that need no torch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.sweep.site import SiteError, load_site
from orchestrator.sweep.spec import SpecError, load_spec


def plan_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `orchestrate plan` expecting a refusal; the one line it printed."""
    assert main(["plan", *argv, "--skip-data-check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# ------------------------------------------------------------------------------- did you mean


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"defaults": {"optim": {"lrr": 0.1}}}, "defaults.optim.lrr: unknown key (did you mean 'lr'?); valid keys: "),
        ({"defaults": {"epoch": 2}}, "defaults.epoch: unknown key (did you mean 'epochs'?); valid keys: "),
        ({"nme": "x"}, "nme: unknown key (did you mean 'name'?); valid keys: name, "),
        ({"slurm": {"partiton": "gpu"}}, "slurm.partiton: unknown key (did you mean 'partition'?)"),
        ({"tables": [{"colums": ["dataset"]}]}, "tables.0.colums: unknown key (did you mean 'columns'?)"),
        (
            {"modifiers": {"aug": {"data.augmnet.hflip_p": 0.5}}},
            "modifiers.aug.data.augmnet: unknown key (did you mean 'augment'?)",
        ),
        (
            {"defaults": {"data": {"augment": {"hflip": 0.5}}}},
            "defaults.data.augment.hflip: unknown key (did you mean 'hflip_p'?)",
        ),
        (
            {"grid": {"model.head_dropot": [0.1, 0.2]}},
            "grid.model.head_dropot[0]: unknown key (did you mean 'head_dropout'?)",
        ),
        ({"grid": {"bakcbone": ["resnet10t"]}}, "grid.bakcbone: unknown axis (did you mean 'backbone'?)"),
        (
            {"per_backbone": {"resnet10": {"epochs": 2}}},
            "per_backbone.resnet10: not a backbone of the grid (did you mean 'resnet10t'?)",
        ),
        (
            {"ablations": {"Baseline": [], "+ Aug": ["agu"]}},
            "ablations.+ Aug: unknown modifier 'agu' (did you mean 'aug'?); defined: aug, dropout",
        ),
    ],
)
def test_unknown_names_say_what_was_meant(
    write_spec: Callable[..., Path], changes: dict[str, object], expected: str
) -> None:
    path = write_spec(**changes)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert "\n" not in message


def test_misspelt_required_key_is_reported_as_the_typo(write_spec: Callable[..., Path]) -> None:
    """`aftr_stage` leaves `after_stage` missing too: the message names the typo and its fix."""
    path = write_spec(defaults={"model": {"insert": [{"module": "scra", "aftr_stage": 1}]}})
    with pytest.raises(
        SpecError, match=r"defaults.model.insert.0.aftr_stage: unknown key \(did you mean 'after_stage'"
    ):
        load_spec(path)


def test_no_suggestion_when_nothing_is_close(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(defaults={"optim": {"zzzzzz": 1}}))
    assert "defaults.optim.zzzzzz: unknown key; valid keys: name, lr" in str(info.value)


def test_site_file_and_profile_keys(tmp_path: Path) -> None:
    """Site files and flat cluster profiles: the suggestion, never the file's values."""
    site = tmp_path / "site.yaml"
    site.write_text("datasets:\n  cub: {name: imagefolder, rot: /secret/value}\nchekpoints: {}\n")
    with pytest.raises(SiteError) as info:
        load_site(site)
    assert "datasets.cub.rot: unknown key (did you mean 'root'?)" in str(info.value)
    assert "/secret/value" not in str(info.value)
    profile = tmp_path / "profile.yaml"
    profile.write_text("partition: gpu\ntimeout_mn: 30\n")
    with pytest.raises(SiteError, match=r"timeout_mn: unknown key \(did you mean 'timeout_min'"):
        load_site(profile, "cluster profile")


def test_cli_prints_one_line_with_the_suggestion(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    err = plan_error([str(write_spec(defaults={"optim": {"lrr": 0.1}}))], capsys)
    assert "defaults.optim.lrr: unknown key (did you mean 'lr'?)" in err
