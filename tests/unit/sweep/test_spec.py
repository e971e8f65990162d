"""Sweep spec loading: errors are one line naming the file and the field path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SpecError, load_spec


def test_loads_and_parses_scientific_notation(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(write_spec())
    assert spec.defaults["optim"]["lr"] == pytest.approx(1e-3)
    assert isinstance(spec.defaults["optim"]["lr"], float)
    assert list(spec.ablations) == ["Baseline", "+ Aug", "+ Aug + Dropout"]


def test_unknown_key_lists_valid_keys(write_spec: Callable[..., Path]) -> None:
    path = write_spec(defaults={"optim": {"lrr": 0.1}})
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: defaults.optim.lrr: unknown key")
    assert "valid keys: name, lr, weight_decay, momentum" in message
    assert "\n" not in message


def test_unknown_top_level_key(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match=r"epochs: unknown key; valid keys: name, output_dir"):
        load_spec(write_spec(epochs=3))


def test_wrong_type_names_field(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match=r"defaults.epochs: a string, not a number"):
        load_spec(write_spec(defaults={"epochs": "many"}))


def test_bad_modifier_value_names_modifier(write_spec: Callable[..., Path]) -> None:
    path = write_spec(modifiers={"drop": {"model.head_dropout": 1.5}}, ablations={"Baseline": [], "+D": ["drop"]})
    with pytest.raises(SpecError, match=r"modifiers\.drop\.model\.head_dropout: Input should be less than 1"):
        load_spec(path)


def test_bad_grid_value_names_index(write_spec: Callable[..., Path]) -> None:
    path = write_spec(grid={"model.head_dropout": [0.1, 2.0]})
    with pytest.raises(SpecError, match=r"grid\.model\.head_dropout\[1\]: Input should be less than 1"):
        load_spec(path)


def test_unknown_modifier_in_ablation(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match=r"ablations\.X: unknown modifier 'nope'; defined: aug, dropout"):
        load_spec(write_spec(ablations={"Baseline": [], "X": ["nope"]}))


def test_bad_yaml_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ngrid: [1\n")
    with pytest.raises(SpecError, match=r"bad.yaml: invalid YAML: .* line 3"):
        load_spec(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope.yaml: no such sweep file"):
        load_spec(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["../escape", "a/b", "bad name"])
def test_unsafe_sweep_name(write_spec: Callable[..., Path], name: str) -> None:
    with pytest.raises(SpecError, match=r"name: .* must be letters"):
        load_spec(write_spec(name=name))


@pytest.mark.parametrize("value", ["gpu;rm -rf /", "gpu\n#SBATCH --x", "$(whoami)", "`id`"])
def test_shell_metacharacters_rejected_in_slurm_fields(write_spec: Callable[..., Path], value: str) -> None:
    with pytest.raises(SpecError, match=r"slurm\.partition: .* contains a newline"):
        load_spec(write_spec(slurm={"partition": value}))


def test_overrides_are_applied_and_recorded(write_spec: Callable[..., Path]) -> None:
    overrides = [
        "defaults.epochs=3",
        "grid.seed=[7]",
        "defaults.optim.lr=2e-4",
        "modifiers.aug.data.augment.hflip_p=0.5",
    ]
    spec = load_spec(write_spec(), overrides)
    assert spec.defaults["epochs"] == 3
    assert spec.grid["seed"] == [7]
    assert spec.defaults["optim"]["lr"] == pytest.approx(2e-4)
    assert spec.modifiers["aug"]["data.augment.hflip_p"] == 0.5
    assert spec.overrides == tuple(overrides)
    assert spec.snapshot()["overrides"] == overrides


def test_override_without_equals_is_an_error(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match=r"override 'defaults.epochs': expected key=value"):
        load_spec(write_spec(), ["defaults.epochs"])


def test_bad_override_is_validated_like_the_file(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match=r"defaults.optim.name: Input should be 'adam', 'adamw', 'sgd', 'adamax'"):
        load_spec(write_spec(), ["defaults.optim.name=rmsprop"])


def test_output_dir_defaults_to_results_name(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = load_spec(write_spec(output_dir=None))
    assert spec.output_path == (tmp_path / "results" / "tiny").resolve()  # beside the spec file, not the cwd


@pytest.mark.parametrize("line", ["module load cuda; rm -rf ~", "source $(conda info --base)/x", "echo `id`", "a\nb"])
def test_setup_lines_are_one_plain_command(write_spec: Callable[..., Path], line: str) -> None:
    with pytest.raises(SpecError, match=r"slurm\.setup: setup line .* one command per item"):
        load_spec(write_spec(slurm={"setup": [line]}))


@pytest.mark.parametrize("row", ["a/b", "x..y", "bad;row"])
def test_unsafe_ablation_row_names(write_spec: Callable[..., Path], row: str) -> None:
    with pytest.raises(SpecError, match=r"ablations: .*ablation row name"):
        load_spec(write_spec(ablations={"Baseline": [], row: ["aug"]}))


def test_site_references_resolve_relative_to_site_file(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "here.yaml").write_text(
        "datasets:\n  birds: {name: imagefolder, root: data/birds, label: Birds}\ncheckpoints:\n  r18: ckpt/r18.pth\n"
    )
    spec = load_spec(
        write_spec(site="sites/here.yaml", grid={"dataset": ["site:birds"], "seed": [0]}),
        ["defaults.model.pretrained_path=site:r18"],
    )
    assert spec.grid["dataset"] == [{"name": "imagefolder", "root": str(sites / "data/birds"), "label": "Birds"}]
    assert spec.defaults["model"]["pretrained_path"] == str(sites / "ckpt/r18.pth")
    assert spec.site == str(sites / "here.yaml")


def test_site_names_deepspeed_tuning(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("deepspeed:\n  tuned: {zero_optimization: {overlap_comm: true}}\n")
    spec = load_spec(write_spec(site="s.yaml"), ["defaults.distributed={strategy: deepspeed, deepspeed: site:tuned}"])
    [run, *_] = plan(spec)
    assert run.config.distributed.deepspeed == {"zero_optimization": {"overlap_comm": True}}
    (tmp_path / "bad.yaml").write_text("deepspeed:\n  tuned: [1]\n")
    with pytest.raises(SpecError, match=r"deepspeed.tuned must be a mapping of DeepSpeed config keys"):
        load_spec(write_spec(site="bad.yaml"))


def test_site_reference_errors(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"dataset: 'site:birds' needs a site file"):
        load_spec(write_spec(grid={"dataset": ["site:birds"]}))
    (tmp_path / "s.yaml").write_text("datasets:\n  cub: {name: cub200, root: /x}\n")
    with pytest.raises(SpecError, match=r"'site:birds' is not in datasets of .*s.yaml \(known: cub\)"):
        load_spec(write_spec(site="s.yaml", grid={"dataset": ["site:birds"]}))
    with pytest.raises(SpecError, match=r"site file .*nope.yaml does not exist"):
        load_spec(write_spec(site="nope.yaml"))
