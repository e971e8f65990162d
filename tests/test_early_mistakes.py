"""Mistakes caught early, with the fix in the message (issue 21, part 7): "did you mean" for
unknown keys anywhere a user writes one, and the plan-time checks that need no torch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tables_fixture import fake_run

from orchestrator.cli.main import main
from orchestrator.results import collect
from orchestrator.sweep import store
from orchestrator.sweep.plan import plan
from orchestrator.sweep.site import SiteError, load_site
from orchestrator.sweep.spec import SpecError, load_spec
from trainers.rundir import State


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


# ------------------------------------------------------------------------ collect with nothing done


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_collect_with_nothing_finished_prints_one_line_and_writes_nothing(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Running and failed runs, none completed: one line, exit 1, no tables/runs.csv/report/index."""
    spec = load_spec(write_spec())
    runs = plan(spec)
    store.write_snapshot(spec, spec.output_path)
    fake_run(spec, runs[0], None, state=State.RUNNING)
    fake_run(spec, runs[1], None, state=State.FAILED)
    before = _tree(spec.output_path)
    with pytest.raises(
        collect.NothingFinished, match=r"0 of 6 planned runs completed \(1 failed, 4 missing, 1 running\)"
    ):
        collect.write_tables(spec, spec.output_path, report=True)
    assert main(["collect", str(spec.output_path)]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "tiny: nothing to collect yet" in out and "no files written" in out, out
    assert _tree(spec.output_path) == before, "nothing written"
    fake_run(spec, runs[2], 0.9)
    assert main(["collect", str(spec.output_path)]) == 0, "one completed run: tables as before"
    assert (spec.output_path / "tables" / "table.md").is_file()


def test_collect_smoke_of_a_sweep_never_smoked(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec()
    assert main(["collect", str(path), "--smoke"]) == 1
    assert "tiny (smoke): nothing to collect yet: 0 of 6 planned runs completed (6 missing)" in capsys.readouterr().out
    assert not (load_spec(path).output_path).exists()


# ------------------------------------------------------------------------------ warnings at plan


@pytest.mark.parametrize(
    ("grid", "says"),
    [
        ({"backbone": ["resnet10t"], "dataset": ["digits"]}, "grid.seed: no seed axis: one run per cell"),
        ({"backbone": ["resnet10t"], "seed": [3]}, "grid.seed: one seed (3): one run per cell"),
        ({"backbone": ["resnet10t"], "seed": [0, 1]}, None),
    ],
)
def test_plan_warns_when_tables_will_have_no_interval(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str], grid: dict[str, list[object]], says: str | None
) -> None:
    path = write_spec(grid=grid)
    assert main(["plan", str(path), "--skip-data-check"]) == 0, "a warning, not a refusal"
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("warning: ")]
    if says is None:
        assert lines == []
    else:
        assert len(lines) == 1 and f"warning: {path}: {says}" in lines[0], out
        assert "will have no interval" in lines[0] and "seed: [0, 1, 2]" in lines[0]
