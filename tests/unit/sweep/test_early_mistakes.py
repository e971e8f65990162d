"""Mistakes caught early, with the fix in the message (issue 21, part 7): "did you mean" for
unknown keys anywhere a user writes one, and the plan-time checks that need no torch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from plan_refusal import plan_error
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.results import collect
from orchestrator.sweep import backbones
from orchestrator.sweep.plan import plan
from orchestrator.sweep.site import SiteError, load_site
from orchestrator.sweep.spec import SpecError, load_spec
from trainers.rundir import State

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
            "defaults.data.augment.hflip: unknown key (did you mean 'hflip_p'",
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
    _plan_warnings(write_spec(grid=grid), capsys, says)


def test_adaptive_seeds_get_no_warning(write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    """`seeds:` (adaptive) runs at least 2 seeds per cell, without a seed axis."""
    _plan_warnings(write_spec(grid={"backbone": ["resnet10t"]}, seeds={"initial": 2, "max": 4}), capsys, None)


def _plan_warnings(path: Path, capsys: pytest.CaptureFixture[str], says: str | None) -> None:
    assert main(["plan", str(path), "--skip-data-check"]) == 0, "a warning, not a refusal"
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("warning: ")]
    if says is None:
        assert lines == []
    else:
        assert len(lines) == 1 and f"warning: {path}: {says}" in lines[0], out
        assert "will have no interval" in lines[0] and "seed: [0, 1, 2]" in lines[0]


# ------------------------------------------------------------------- backbone names at plan time


def test_shipped_backbone_table_is_the_installed_timms() -> None:
    """The table `plan` reads equals timm's own lists; if timm was upgraded, regenerate it
    (`make backbones`). Patch sizes: a sample of families, each model built whole on the meta device."""
    import timm
    import torch

    table = backbones.read_table(Path(backbones.__file__).with_name(backbones.TABLE_FILE), "shipped")
    assert table.timm_version == timm.__version__, "timm changed: run `make backbones` and commit the table"
    assert set(table.tags) == set(timm.list_models())
    tags: dict[str, set[str]] = {name: set() for name in timm.list_models()}
    for tagged in timm.list_models(include_tags=True):  # `name.tag`, or the bare name of a model without tags
        name, _, tag = tagged.partition(".")
        tags[name] |= {tag} if tag else set()
    assert {name: set(found) for name, found in table.tags.items()} == tags
    sample = [
        "vit_base_patch16_224",
        "vit_large_patch14_clip_224",
        "eva02_tiny_patch14_224",
        "deit_tiny_patch16_224",
        "swin_tiny_patch4_window7_224",
        "xcit_tiny_12_p8_224",
        "cait_xxs24_224",
        "test_vit",
        "resnet50",
        "convnext_tiny",
        "test_resnet",
        "vit_base_r50_s16_224",
    ]
    for name in sample:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
        size = getattr(getattr(model, "patch_embed", None), "patch_size", None)
        expected = (size[0] if isinstance(size, tuple) else size) if size else None
        assert table.patch(name) == (expected if expected and expected > 1 else None), name


@pytest.mark.parametrize(
    ("backbone", "says"),
    [
        ("resnet10tt", "grid.backbone[0]: 'resnet10tt' is not a timm 1.0.31 model; did you mean resnet10t"),
        ("convnextv2_larg", "did you mean convnextv2_large"),
        (
            "resnet50.a1_in1kk",
            "'resnet50.a1_in1kk' has no tag 'a1_in1kk' in timm 1.0.31 (did you mean resnet50.a1_in1k",
        ),
    ],
)
def test_plan_refuses_unknown_backbones(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str], backbone: str, says: str
) -> None:
    err = plan_error([str(write_spec()), f"grid.backbone=[{backbone}]"], capsys)
    assert says.replace("1.0.31", backbones.installed_timm() or "?") in err, err


def test_plan_accepts_names_with_tags(write_spec: Callable[..., Path]) -> None:
    assert main(["plan", str(write_spec()), "grid.backbone=[resnet50.a1_in1k, test_resnet]", "--skip-data-check"]) == 0


@pytest.mark.parametrize(
    ("backbone", "size", "says"),
    [
        # Names without `patch<N>` (which the trainer config's own rule reads): the table knows them.
        (
            "cait_xxs24_224",
            225,
            "run cait_xxs24_224/digits/base/s0: data.image_size_px 225 is not a multiple of "
            "cait_xxs24_224's 16 px patch (the last 1 px of each row and column would be dropped); use 224 or 240",
        ),
        (
            "xcit_tiny_12_p8_224",
            12,
            "is not a multiple of xcit_tiny_12_p8_224's 8 px patch (the last 4 px of each "
            "row and column would be dropped); use 8 or 16",
        ),
        (
            "pit_s_224",
            230,
            "pit_s_224's 16 px patch (the last 6 px of each row and column would be dropped); use 224 or 240",
        ),
    ],
)
def test_plan_refuses_image_sizes_off_the_patch_grid(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str], backbone: str, size: int, says: str
) -> None:
    path = write_spec()
    args = [str(path), f"grid.backbone=[{backbone}]", f"defaults.data.image_size_px={size}"]
    assert says in plan_error(args, capsys)
    fits = 16 * max(1, round(size / 16))
    assert main(["plan", *args[:2], f"defaults.data.image_size_px={fits}", "--skip-data-check"]) == 0


def test_a_vit_named_with_its_patch_is_refused_by_the_trainers_rule_in_one_plain_line(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The trainer config's own rule fires first for `patch<N>` names: the same advice, at the grid
    value, without the whole config echoed or a 'conflicts with defaults.' of no field."""
    args = [str(write_spec()), "grid.backbone=[vit_base_patch16_224]", "defaults.data.image_size_px=225"]
    err = plan_error(args, capsys).rstrip("\n")
    assert err.endswith(
        ": grid.backbone[0]: data.image_size_px 225 is not a multiple of vit_base_patch16_224's 16 px patch "
        "(the last 1 px of each row and column would be dropped); use 224 or 240"
    ), err


def test_backbone_check_needs_no_timm_import(write_spec: Callable[..., Path]) -> None:
    code = (
        "import sys\n"
        "from orchestrator.cli.main import main\n"
        f"assert main(['plan', {str(write_spec())!r}, 'grid.backbone=[cait_xxs24_224]', "
        "'defaults.data.image_size_px=225', '--skip-data-check']) == 2\n"
        "print('HEAVY', sorted(m for m in ('torch', 'timm') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout and "16 px patch" in result.stderr


def test_other_timm_version_fails_closed_until_regenerated(
    write_spec: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """No table for the installed timm: refused with the command that makes one; after it ran
    (here: a table written into the cache folder for that version), plan checks against it."""
    monkeypatch.setattr(backbones, "installed_timm", lambda: "9.9.9")
    monkeypatch.setenv(backbones.CACHE_ENV, str(tmp_path / "cache"))
    path = write_spec()
    err = plan_error([str(path)], capsys)
    assert "orchestrate's table lists timm" in err and "the installed timm is 9.9.9" in err
    assert (
        "-m orchestrator.checks.backbone_table` once (writes " + str(tmp_path / "cache" / "timm_models-9.9.9.json.gz")
        in err
    )
    table = {"timm_version": "9.9.9", "models": {"test_resnet": [], "vit_new_patch16": []}, "patch_px": {}}
    backbones.write_table(table, backbones.cache_path("9.9.9"))
    assert main(["plan", str(path), "grid.backbone=[test_resnet]", "--skip-data-check"]) == 0
    err = plan_error([str(path)], capsys)  # resnet10t is not in that table
    assert "'resnet10t' is not a timm 9.9.9 model; did you mean" in err
