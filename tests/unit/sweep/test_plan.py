"""Planner: pure, deterministic, content-hashed run ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sweep.plan import NOT_HASHED, plan, run_id_of, smoke_plan
from orchestrator.sweep.spec import SpecError, load_spec
from trainers.config import TrainConfig, config_fields

PINNED_DEFAULTS = Path(__file__).resolve().parents[2] / "golden" / "pinned_config_defaults.json"


def test_same_spec_same_runs_in_same_order(write_spec: Callable[..., Path]) -> None:
    first = plan(load_spec(write_spec()))
    second = plan(load_spec(write_spec()))
    assert [r.run_id for r in first] == [r.run_id for r in second]
    assert [r.name for r in first] == [
        "resnet10t/digits/base/s0",
        "resnet10t/digits/base/s1",
        "resnet10t/digits/+aug/s0",
        "resnet10t/digits/+aug/s1",
        "resnet10t/digits/+aug+dropout/s0",
        "resnet10t/digits/+aug+dropout/s1",
    ]


def test_runs_resolve_defaults_grid_and_modifiers(write_spec: Callable[..., Path]) -> None:
    runs = plan(load_spec(write_spec()))
    last = runs[-1]
    assert last.ablation == "+ Aug + Dropout"
    assert last.seed == 1
    assert last.config.model.head_dropout == 0.5
    assert last.config.data.augment is not None and last.config.data.augment.rotate_deg == 10
    assert last.config.optim.lr == pytest.approx(1e-3)
    assert runs[0].config.data.augment is None


def test_run_id_is_content_hash(write_spec: Callable[..., Path]) -> None:
    runs = plan(load_spec(write_spec()))
    assert len({r.run_id for r in runs}) == len(runs)
    assert all(r.run_id == run_id_of(r.config) for r in runs)
    # Renaming an ablation row changes no config, so no id.
    renamed = plan(load_spec(write_spec(ablations={"Base": [], "+ A": ["aug"], "+ A + D": ["aug", "dropout"]})))
    assert [r.run_id for r in renamed] == [r.run_id for r in runs]
    # Changing a hyperparameter changes every id.
    changed = plan(load_spec(write_spec(), ["defaults.optim.lr=0.01"]))
    assert not {r.run_id for r in changed} & {r.run_id for r in runs}


def test_extra_axis_multiplies_rows(write_spec: Callable[..., Path]) -> None:
    runs = plan(load_spec(write_spec(), ["grid.optim.lr=[1e-3, 1e-2]"]))
    assert len(runs) == 3 * 2 * 2
    assert runs[0].axes == {"optim.lr": 1e-3}
    assert runs[0].name == "resnet10t/digits/base/lr=0.001/s0"
    assert runs[2].config.optim.lr == pytest.approx(1e-2)


def test_identical_cells_are_an_error(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match="resolve to the same config"):
        plan(load_spec(write_spec(ablations={"Baseline": [], "Same": []})))
    # A modifier that overrides a grid axis makes the axis values collapse into one config.
    with pytest.raises(SpecError, match="resolve to the same config"):
        plan(load_spec(write_spec(), ["grid.model.head_dropout=[0.2, 0.4]"]))


def test_grid_values_that_tables_would_show_alike_are_refused(write_spec: Callable[..., Path]) -> None:
    # Two datasets shown as "digits" were one table column: 6 seeds in a 3-seed cell, paired by
    # position, a p-value no 3-seed test can reach. Refused at plan time, naming the field and the fix.
    datasets = "[{name: digits}, {name: digits, val_fraction: 0.2}]"
    with pytest.raises(
        SpecError,
        match=r"grid\.dataset\[1\]: tables would show it as 'digits', like grid\.dataset\[0\]; give each a distinct",
    ):
        load_spec(write_spec(), [f"grid.dataset={datasets}"])
    losses = "[{name: cross_entropy, label_smoothing: 0.1}, {name: cross_entropy, label_smoothing: 0.2}]"
    with pytest.raises(SpecError, match=r"grid\.loss\[1\]: .* sweep what differs as an axis \(grid\.loss\.<key>\)"):
        load_spec(write_spec(), [f"grid.loss={losses}"])
    with pytest.raises(SpecError, match=r"grid\.dataset\[1\]: repeats grid\.dataset\[0\]"):
        load_spec(write_spec(), ["grid.dataset=[digits, digits]"])
    labelled = "[{name: digits, label: D1}, {name: digits, val_fraction: 0.2, label: D2}]"
    assert {run.dataset for run in plan(load_spec(write_spec(), [f"grid.dataset={labelled}"]))} == {"D1", "D2"}


def test_smoke_runs_have_their_own_ids(write_spec: Callable[..., Path]) -> None:
    runs = plan(load_spec(write_spec()))
    smoke = smoke_plan(runs)
    assert [s.name for s in smoke] == [r.name for r in runs]
    assert not {s.run_id for s in smoke} & {r.run_id for r in runs}
    assert all(s.config.max_steps_per_epoch == 2 and s.config.epochs == 1 for s in smoke)


def test_smoke_runs_keep_the_runs_loader_settings(write_spec: Callable[..., Path]) -> None:
    """A smoke run loads as the real run does: workers that cannot start fail it, not the sweep later."""
    loader = ["defaults.data.num_workers=3", "defaults.data.pin_memory=true", "defaults.data.prefetch_factor=4"]
    [run, *_] = plan(load_spec(write_spec(), loader))
    [smoke] = smoke_plan([run])
    data = smoke.config.data
    assert (data.num_workers, data.pin_memory, data.prefetch_factor) == (3, True, 4)
    assert data.batch_size == 16 and data.dataset.max_samples == 64


def test_per_backbone_overrides_apply_to_that_backbone_only(write_spec: Callable[..., Path]) -> None:
    spec = load_spec(
        write_spec(),
        [
            "grid.backbone=[resnet10t, test_vit]",
            "per_backbone.test_vit={data.image_size_px: 32, distributed.gpus_per_node: 2}",
        ],
    )
    runs = plan(spec)
    vit = [r for r in runs if r.backbone == "test_vit"]
    other = [r for r in runs if r.backbone == "resnet10t"]
    assert {r.config.data.image_size_px for r in vit} == {32} and {r.config.distributed.processes for r in vit} == {2}
    assert {r.config.data.image_size_px for r in other} == {16}


def test_per_backbone_must_name_a_grid_backbone_and_batch_must_split(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match=r"per_backbone.vit_huge: not a backbone of the grid \(resnet10t\)"):
        load_spec(write_spec(), ["per_backbone.vit_huge={epochs: 2}"])
    with pytest.raises(SpecError, match=r"defaults: data.batch_size 32 is not divisible by processes"):
        load_spec(write_spec(), ["defaults.distributed.gpus_per_node=3"])


def test_distributed_options_that_cannot_run_are_rejected_at_plan_time(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(
        SpecError, match=r"defaults.distributed: offload_params needs strategy deepspeed with zero_stage 3"
    ):
        load_spec(write_spec(), ["defaults.distributed={strategy: deepspeed, zero_stage: 2, offload_params: true}"])
    with pytest.raises(SpecError, match=r"offload_optimizer needs strategy deepspeed"):
        load_spec(write_spec(), ["defaults.distributed.offload_optimizer=true"])
    with pytest.raises(SpecError, match=r"loss.l2sp is not supported with DeepSpeed zero_stage 3"):
        load_spec(
            write_spec(), ["defaults.loss.l2sp=0.01", "defaults.distributed={strategy: deepspeed, zero_stage: 3}"]
        )
    sgd_offloaded = ["defaults.optim.name=sgd", "defaults.distributed={strategy: deepspeed, offload_optimizer: true}"]
    with pytest.raises(SpecError, match=r"offload_optimizer runs DeepSpeed's CPU Adam: optim.name 'sgd' must be adam"):
        load_spec(write_spec(), sgd_offloaded)
    offloaded = (
        "defaults.distributed={strategy: deepspeed, zero_stage: 3, offload_params: true, offload_optimizer: true}"
    )
    assert {r.config.distributed.offload_params for r in plan(load_spec(write_spec(), [offloaded]))} == {True}


def test_extra_deepspeed_keys_are_kept_unless_the_spec_owns_them(write_spec: Callable[..., Path]) -> None:
    extra = "{strategy: deepspeed, zero_stage: 3, deepspeed: {zero_optimization: {overlap_comm: true}}}"
    [run, *_] = plan(load_spec(write_spec(), [f"defaults.distributed={extra}"]))
    assert run.config.distributed.deepspeed == {"zero_optimization": {"overlap_comm": True}}
    owned = "{strategy: deepspeed, deepspeed: {train_batch_size: 64}}"
    with pytest.raises(SpecError, match=r"deepspeed.train_batch_size is set from data.batch_size: set that instead"):
        load_spec(write_spec(), [f"defaults.distributed={owned}"])
    stage = "{strategy: deepspeed, deepspeed: {zero_optimization: {stage: 1}}}"
    with pytest.raises(SpecError, match=r"deepspeed.zero_optimization.stage is set from distributed.zero_stage"):
        load_spec(write_spec(), [f"defaults.distributed={stage}"])
    with pytest.raises(SpecError, match=r"deepspeed config keys need strategy deepspeed"):
        load_spec(write_spec(), ["defaults.distributed.deepspeed={wall_clock_breakdown: true}"])


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_a_new_field_with_its_default_keeps_existing_run_ids() -> None:
    class Newer(TrainConfig):
        """A later version of the config: one more field, whose default keeps the old behaviour."""

        new_knob: int = 0

    values = {"epochs": 3, "data": {"batch_size": 32}}
    config = TrainConfig.model_validate(values)
    assert run_id_of(Newer.model_validate(values)) == run_id_of(config)
    assert run_id_of(Newer.model_validate(values | {"new_knob": 1})) != run_id_of(config)
    assert run_id_of(config.model_copy(update={"precision": "bf16"})) != run_id_of(config)


def test_config_defaults_never_change() -> None:
    """Ids hash only non-default values: a changed default would give old ids to new experiments."""
    pinned = json.loads(PINNED_DEFAULTS.read_text())
    current = _flatten(TrainConfig().model_dump(mode="json"))
    changed = {
        key: (value, current.get(key, "<removed>"))
        for key, value in pinned.items()
        if current.get(key, "<removed>") != value
    }
    assert not changed, f"defaults changed (pinned, now): {changed}; keep them, add a new field or value instead"
    added = sorted(set(current) - set(pinned))
    assert not added, f"new config fields {added}: add them with their defaults to {PINNED_DEFAULTS.name}"


def test_loader_and_speed_settings_never_change_the_id() -> None:
    """Every NOT_HASHED field set away from its default keeps the id; each is a real config field."""
    config = TrainConfig()
    speed = {
        "data": {"num_workers": 3, "pin_memory": True, "persistent_workers": False, "prefetch_factor": 2},
        "torch_threads": 2,
        "channels_last": True,
        "compile": True,
        "checkpoint_every_min": 5.0,
        "distributed": {"grad_accum_steps": 2},  # a CUDA-OOM retry's (launch/retries.py)
    }
    tuned = TrainConfig.model_validate(speed | {"data": {**speed["data"], "dataset": {"max_bad_fraction": 0.2}}})
    assert run_id_of(tuned) == run_id_of(config)
    assert set(NOT_HASHED) <= set(config_fields(TrainConfig))
    assert set(NOT_HASHED) <= set(_flatten(tuned.model_dump(mode="json", exclude_defaults=True))) | {
        "trackers",
        "data.cache_max_mib",
    }


def test_runs_that_differ_only_outside_the_id_are_named(write_spec: Callable[..., Path]) -> None:
    path = write_spec(grid={"data.num_workers": [0, 2]})
    with pytest.raises(SpecError, match="differ only in settings outside the run id"):
        plan(load_spec(path))


def test_watching_or_saving_a_run_never_changes_its_id() -> None:
    config = TrainConfig()
    watched = config.model_copy(update={"trackers": ("tensorboard",), "checkpoint_every_min": 5.0})
    assert run_id_of(watched) == run_id_of(config)
    uncached = TrainConfig.model_validate({"data": {"cache_max_mib": 0}})
    assert run_id_of(uncached) == run_id_of(config)  # the image cache feeds the same pixels
    assert run_id_of(config.model_copy(update={"seed": 1})) != run_id_of(config)
    small = TrainConfig.model_validate({"data": {"image_size_px": 32}})
    assert run_id_of(small) != run_id_of(config)
    assert run_id_of(TrainConfig.model_validate({"data": {"image_size_px": 32, "cache_max_mib": 0}})) == run_id_of(
        small
    )
