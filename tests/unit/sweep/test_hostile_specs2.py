"""Hostile and odd specs, second pass: each case was a traceback, a misleading refusal or a silently
different plan before its fix; each is now a valid plan or one line naming the file and field."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from plan_refusal import plan_error

from orchestrator.sweep import yamlio
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SpecError, load_spec

SITE = "datasets:\n  dg: {name: digits, label: DG}\n"


# ------------------------------------------------- `{site: NAME, field: value}` under a dotted key


@pytest.mark.parametrize(
    "where",
    [
        {"modifiers": {"aug": {"data.augment": {"rotate_deg": 10}}, "other": {"data.dataset": "X"}}},
        {"per_backbone": {"resnet10t": {"data.dataset": "X"}}},
        {"grid": {"backbone": ["resnet10t"], "seed": [0, 1], "data.dataset": ["X"]}},
    ],
    ids=["modifier", "per_backbone", "grid axis"],
)
def test_site_dataset_with_changed_fields_under_a_dotted_key(
    where: dict[str, dict[str, object]], write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    """`data.dataset: {site: dg, val_fraction: 0.3}` in a modifier, a per_backbone entry or a grid axis is
    the site's entry with that field changed, as under `dataset:`; it was refused as an unknown key `site`."""
    (tmp_path / "site.yaml").write_text(SITE)
    entry = {"site": "dg", "val_fraction": 0.3}

    def fill(value: object) -> object:
        if value == "X":
            return entry
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    changes = {key: fill(value) for key, value in where.items()}
    if "modifiers" in changes:
        changes["ablations"] = {"Baseline": [], "+ Other": ["other"]}
    runs = plan(load_spec(write_spec(site="site.yaml", **changes)))
    changed = [run.config.data.dataset for run in runs if run.config.data.dataset.label == "DG"]
    assert changed and all(ds.name == "digits" and ds.val_fraction == 0.3 for ds in changed)


def test_unknown_site_dataset_under_a_dotted_key_names_it(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(SITE)
    modifiers = {"aug": {"data.dataset": {"site": "dgg", "val_fraction": 0.3}}, "dropout": {}}
    with pytest.raises(SpecError, match=r"'site:dgg' is not in datasets of .*site.yaml \(known: dg\)"):
        load_spec(write_spec(site="site.yaml", modifiers=modifiers))


# ------------------------------------------------- one value written twice in a modifier or per_backbone


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"modifiers": {"aug": {}, "dropout": {"model.head_dropout": 0.45, "model": {"head_dropout": 0.2}}}},
            r"modifiers.dropout: model.head_dropout is set twice, by 'model.head_dropout' and 'model'",
        ),
        (
            {"modifiers": {"aug": {"data.augment": {"rotate_deg": 10}, "data.augment.rotate_deg": 20}, "dropout": {}}},
            r"modifiers.aug: data.augment.rotate_deg is set twice, by 'data.augment' and 'data.augment.rotate_deg'",
        ),
        (
            {"per_backbone": {"resnet10t": {"data.batch_size": 8, "data": {"batch_size": 16}}}},
            r"per_backbone.resnet10t: data.batch_size is set twice, by 'data.batch_size' and 'data'",
        ),
        (
            {"modifiers": {"aug": {}, "dropout": {"model.head_dropout": 0.45, "model": None}}},
            r"modifiers.dropout: model is set twice, by 'model.head_dropout' and 'model'",
        ),
    ],
    ids=["dotted then nested", "mapping then dotted leaf", "per_backbone", "leaf then whole section"],
)
def test_a_value_written_twice_in_one_entry_is_refused(
    changes: dict[str, object], message: str, write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two keys of one modifier that set the same value (dotted and nested) planned with the later one,
    silently: `dropout` trained at head_dropout 0.2 while the file also said 0.45."""
    err = plan_error([str(write_spec(**changes))], capsys)
    assert re.search(message, err), err


def test_keys_that_merge_and_command_line_overrides_are_not_written_twice(write_spec: Callable[..., Path]) -> None:
    """Two keys filling one section side by side merge as before; an override of a modifier's value on
    the command line wins, as overrides do."""
    modifiers = {"aug": {"data.augment": {"rotate_deg": 10}}, "dropout": {"model.head_dropout": 0.5, "model": {}}}
    modifiers["dropout"]["model"] = {"drop_path_rate": 0.1}
    spec = load_spec(write_spec(modifiers=modifiers), ["modifiers.aug.data.augment.rotate_deg=5"])
    runs = plan(spec)
    assert {run.config.data.augment.rotate_deg for run in runs if run.ablation != "Baseline"} == {5}
    last = runs[-1].config.model
    assert (last.head_dropout, last.drop_path_rate) == (0.5, 0.1)


# ------------------------------------------------- integers no spec holds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1" + "0" * 5000, r"an integer written with 5001 characters \(at most 20 digits\) at line 7, column 11"),
        ("0x" + "f" * 5000, r"an integer written with 5002 characters"),
        ("1" + ":59" * 3000, r"an integer written with 9001 characters"),
        ("0x" + "f" * 30, r"an integer of 37 digits \(at most 20\) at line 7, column 11"),
        ("1234567890123456789012345", r"an integer of 25 digits \(at most 20\) at line 7, column 11"),
    ],
    ids=["5000 digits", "hex", "sexagesimal", "hex 37 digits", "25 digits"],
)
def test_an_integer_past_any_count_is_one_line_naming_its_line(
    value: str, message: str, write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Over 4,300 digits Python's int() raised ValueError past the YAML errors (a traceback); a long hex
    integer parsed, and the run id's json.dumps raised the same ValueError at plan."""
    path = write_spec()
    path.write_text(path.read_text().replace("epochs: 1\n", f"epochs: {value}\n"))
    err = plan_error([str(path)], capsys)
    assert re.search(message, err) and "invalid YAML" in err, err


def test_an_override_error_keeps_its_reason(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A long override value filled the 600-character message with its own quote, cutting off why it
    was refused; a 5,000-digit one was a traceback before that."""
    path = str(write_spec())
    err = plan_error([path, "defaults.optim.lr=" + "[" * 2000 + "]" * 2000], capsys)
    assert err.rstrip().endswith("value is not valid YAML (nested too deeply (hundreds of levels))"), err
    err = plan_error([path, "defaults.epochs=1" + "0" * 5000], capsys)
    assert "value is not valid YAML (an integer written with 5001 characters" in err, err
    err = plan_error([path, "defaults.epochs=1234567890123456789012345"], capsys)
    assert "value is not valid YAML (an integer of 25 digits (at most 20) at line 1, column 1)" in err, err


def test_integers_of_twenty_digits_still_parse() -> None:
    assert yamlio.loads("a: 12345678901234567890\nb: -0x10\nc: 1_000\nd: 1:30") == {
        "a": 12345678901234567890,
        "b": -16,
        "c": 1000,
        "d": 90,
    }


# ------------------------------------------------- overrides into entries whose names hold dots


def test_override_into_a_per_backbone_entry_of_a_tagged_backbone(write_spec: Callable[..., Path]) -> None:
    """`per_backbone.resnet10t.c3_in1k.data.batch_size=8`: the entry is the grid's backbone with its timm
    tag; the first segment alone made it `resnet10t`, refused as no backbone of the grid."""
    path = write_spec(grid={"backbone": ["resnet10t.c3_in1k"], "dataset": ["digits"], "seed": [0, 1]})
    runs = plan(load_spec(path, ["per_backbone.resnet10t.c3_in1k.data.batch_size=8"]))
    assert {run.config.data.batch_size for run in runs} == {8}
    spec = load_spec(path, ["per_backbone.resnet10t.c3_in1k={data.batch_size: 4}", "defaults.epochs=2"])
    assert spec.per_backbone == {"resnet10t.c3_in1k": {"data.batch_size": 4}} and spec.defaults["epochs"] == 2


def test_override_into_a_modifier_named_with_a_dot(write_spec: Callable[..., Path]) -> None:
    modifiers = {"aug": {"data.augment": {"rotate_deg": 10}}, "v1.5": {"model.head_dropout": 0.5}}
    path = write_spec(modifiers=modifiers, ablations={"Baseline": [], "+ v1.5": ["v1.5"]})
    runs = plan(load_spec(path, ["modifiers.v1.5.model.head_dropout=0.1"]))
    assert {run.config.model.head_dropout for run in runs if run.ablation == "+ v1.5"} == {0.1}
    # An entry not defined anywhere keeps the first segment as its name, as before.
    with pytest.raises(SpecError, match=r"per_backbone.resnet1: not a backbone of the grid \(did you mean"):
        load_spec(path, ["per_backbone.resnet1.data.batch_size=8"])


# ------------------------------------------------- two grid axes that set one trainer key


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (
            {"backbone": ["resnet10t"], "model.backbone": ["resnet18"], "dataset": ["digits"], "seed": [0]},
            r"grid.model.backbone: sets model.backbone as grid.backbone does",
        ),
        (
            {"backbone": ["resnet10t"], "dataset": ["digits"], "seed": [0], "data.dataset": ["digits"]},
            r"grid.data.dataset: sets data.dataset as grid.dataset does",
        ),
        (
            {"backbone": ["resnet10t"], "dataset": ["digits"], "seed": [0], "model": [{"backbone": "resnet18"}]},
            r"grid.model: sets model as grid.backbone does",
        ),
    ],
    ids=["alias and key", "dataset alias and key", "a parent axis that sets the key"],
)
def test_two_axes_that_set_one_key_are_refused(
    write_spec: Callable[..., Path], grid: dict[str, list[object]], message: str
) -> None:
    # The later axis replaced the earlier in every run: the plan said "backbone (1): resnet10t" and
    # trained resnet18, with resnet10t's per_backbone entry applied to it.
    with pytest.raises(SpecError, match=r"sweep.yaml: " + message):
        load_spec(write_spec(grid=grid))


def test_a_parent_axis_of_other_fields_still_merges_with_the_short_axis(write_spec: Callable[..., Path]) -> None:
    grid = {"backbone": ["resnet10t"], "dataset": ["digits"], "seed": [0], "model": [{"head_dropout": 0.1}]}
    runs = plan(load_spec(write_spec(grid=grid)))
    # The dropout row's modifier comes after the grid: 0.5 there, the axis's 0.1 in the other rows.
    assert {(r.config.model.backbone, r.config.model.head_dropout) for r in runs} == {
        ("resnet10t", 0.1),
        ("resnet10t", 0.5),
    }
