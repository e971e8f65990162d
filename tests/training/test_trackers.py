"""Experiment trackers: what a run logs to TensorBoard, MLflow and W&B, read back with each
library's own reader, across a kill and resume; a missing tracker package fails at plan time."""

from __future__ import annotations

import importlib.util
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from config_helpers import run_killed_after_first_epoch
from pydantic import ValidationError

import trainers
from orchestrator import launch
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SpecError, load_spec
from trainers.config import TrainConfig

EPOCHS, STEPS = 2, 3
META = {
    "run_id": "0123abcd4567",
    "name": "test_resnet/digits/base/s0",
    "sweep": "tiny",
    "ablation": "Baseline",
    "backbone": "test_resnet",
    "dataset": "digits",
    "seed": 0,
}


def _config(trackers: list[str]) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "model": {"backbone": "test_resnet"},
            "data": {
                "dataset": {"name": "digits", "max_samples": 200},
                "image_size_px": 32,
                "batch_size": 32,
                "num_workers": 0,
            },
            "epochs": EPOCHS,
            "max_steps_per_epoch": STEPS,
            "torch_threads": 2,
            "trackers": trackers,
        }
    )


def test_missing_tracker_package_is_a_plan_time_error(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    defaults = {"data": {"image_size_px": 16, "batch_size": 32}, "epochs": 1, "trackers": ["tensorboard", "wandb"]}
    with pytest.raises(SpecError, match=r"defaults\.trackers: .*not installed: wandb \(pip install wandb"):
        plan(load_spec(write_spec(defaults=defaults)))
    with pytest.raises(ValidationError, match="tensorboard"):
        TrainConfig(trackers=("tensorboard", "tensorboard"))  # type: ignore[arg-type]
    assert TrainConfig().trackers == ()


@pytest.mark.slow
def test_trackers_log_config_steps_validation_and_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = tmp_path / "out" / "runs" / META["run_id"]
    cfg = _config(["tensorboard", "mlflow", "wandb"])
    run_killed_after_first_epoch(cfg, run_dir, monkeypatch, META)  # resumed below: one run per tracker
    metrics = trainers.run(cfg, run_dir, META)
    steps = list(range(1, EPOCHS * STEPS + 1))
    _check_tensorboard(tmp_path / "out" / "tensorboard" / META["name"], steps, metrics)
    _check_mlflow(tmp_path / "out" / "mlruns", steps, metrics)
    _check_wandb(run_dir / "wandb", steps, metrics)


def _check_tensorboard(folder: Path, steps: list[int], metrics: dict[str, Any]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    scalars = EventAccumulator(str(folder)).Reload()
    assert [e.step for e in scalars.Scalars("train/loss")] == steps
    assert [e.value for e in scalars.Scalars("train/lr")] == pytest.approx([1e-3] * len(steps))
    assert [e.step for e in scalars.Scalars("val/top1")] == [STEPS * (e + 1) for e in range(EPOCHS)]
    assert scalars.Scalars("test/top1")[-1].value == pytest.approx(metrics["test"]["top1"])
    # One folder per run (both attempts append to it), the hyperparameters in it: no sub-runs.
    assert not [p for p in folder.iterdir() if p.is_dir()]
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    content = scalars.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["model.backbone"].string_value == "test_resnet"
    assert hparams["max_steps_per_epoch"].number_value == STEPS
    assert hparams["run_id"].string_value == META["run_id"]


def _check_mlflow(store: Path, steps: list[int], metrics: dict[str, Any]) -> None:
    import mlflow

    mlflow.set_tracking_uri(store.as_uri())
    client = mlflow.MlflowClient()
    found = mlflow.search_runs(experiment_names=[META["sweep"]], output_format="pandas")
    assert len(found) == 1  # the resumed attempt continued the same MLflow run
    row = found.iloc[0]
    assert row["tags.mlflow.runName"] == META["name"]
    tags = {key: str(value) for key, value in META.items() if key != "name"}
    assert {key: row[f"tags.{key}"] for key in tags} == tags
    assert row["params.optim.lr"] == "0.001" and row["params.model.backbone"] == "test_resnet"
    assert row["metrics.test/top1"] == pytest.approx(metrics["test"]["top1"])
    history = client.get_metric_history(row["run_id"], "train/loss")
    assert sorted(m.step for m in history) == steps
    assert len(client.get_metric_history(row["run_id"], "val/loss")) == EPOCHS


def _check_wandb(folder: Path, steps: list[int], metrics: dict[str, Any]) -> None:
    records = [rec for path in sorted(folder.glob("offline-run-*/run-*.wandb")) for rec in _wandb_records(path)]
    runs = [rec.run for rec in records if rec.WhichOneof("record_type") == "run"]
    assert {(r.run_id, r.display_name, r.project) for r in runs} == {(META["run_id"], META["name"], META["sweep"])}
    assert f"ablation={META['ablation']}" in runs[0].tags
    config = {item.key: item.value_json for rec in records if rec.HasField("config") for item in rec.config.update}
    assert config["model.backbone"] == '"test_resnet"'
    # W&B splits "train/loss" into the nested key [train, loss].
    rows = [
        {i.key or "/".join(i.nested_key): i.value_json for i in rec.history.item}
        for rec in records
        if rec.HasField("history")
    ]
    assert sorted(int(r["_step"]) for r in rows if "train/loss" in r) == steps
    (test_top1,) = [float(r["test/top1"]) for r in rows if "test/top1" in r]
    assert test_top1 == pytest.approx(metrics["test"]["top1"])


def _wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records (W&B's own schema) of an offline run file: a 7-byte W&B header, then
    LevelDB log blocks of 32 KiB holding [crc32 u32, length u16, type u8, data] chunks."""
    from wandb.proto import wandb_internal_pb2

    raw, block, pos, parts = path.read_bytes(), 32768, 7, b""
    assert raw[:4] == b":W&B"
    while pos + 7 <= len(raw):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # block trailer / padding
            pos += left
            continue
        parts += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            yield wandb_internal_pb2.Record.FromString(parts)
            parts = b""


@pytest.mark.slow
def test_submitted_sweep_is_one_mlflow_experiment_of_named_runs(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    fast = [
        "grid.backbone=[test_resnet]",
        "grid.seed=[0]",
        "ablations={Baseline: [], + Aug: [aug]}",
        "defaults.data.dataset={name: digits, max_samples: 64}",
        "defaults.max_steps_per_epoch=1",
        "defaults.torch_threads=1",
        "defaults.trackers=[mlflow]",
    ]
    spec = load_spec(write_spec(), fast)
    runs = plan(spec)
    assert len(launch.submit(spec, runs, "debug").completed) == 2
    mlflow.set_tracking_uri((spec.output_path / "mlruns").as_uri())
    # The sweep is named by its output folder (results/<sweep name> unless output_dir says otherwise).
    found = mlflow.search_runs(experiment_names=[spec.output_path.name], output_format="pandas")
    assert sorted(
        zip(found["tags.mlflow.runName"], found["tags.run_id"], found["tags.ablation"], strict=True)
    ) == sorted((run.name, run.run_id, run.ablation) for run in runs)


def test_tensorboard_shows_one_entry_per_run_under_its_readable_name(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainers.runtime import tracking

    sweep = tmp_path / "out"
    for name, run_id in (("test_resnet/digits/+aug/s0", "a1"), ("test_resnet/digits/../s1", "b2")):
        facts = tracking.run_facts(sweep / "runs" / run_id, {"run_id": run_id, "name": name})
        (tracker,) = tracking.build_trackers(TrainConfig(trackers=("tensorboard",)), sweep / "runs" / run_id, facts)
        tracker.start()
        tracker.store_init_configuration({"optim.lr": 0.001, "run_id": run_id})
        tracker.log({"train/loss": 1.0}, step=1)
        tracker.finish()
    logdir = sweep / "tensorboard"
    entries = sorted(str(p.parent.relative_to(logdir)) for p in logdir.rglob("events.out.tfevents.*"))
    assert entries == ["test_resnet/digits/+aug/s0", "test_resnet/digits/_/s1"]  # one each; `..` never climbs
    found = EventAccumulator(str(logdir / entries[0])).Reload()
    assert [e.step for e in found.Scalars("train/loss")] == [1]
    assert "_hparams_/session_start_info" in found.PluginTagToContent("hparams")


MLFLOW_UI = "MLFLOW_ALLOW_FILE_STORE=true mlflow server --backend-store-uri file://$PWD/results/<sweep>/mlruns"
"""The documented command: mlflow-skinny has no `mlflow ui`, MLflow 3 opens a file store only when allowed."""


def test_documented_mlflow_command_parses_and_its_variable_opens_the_file_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    import mlflow
    from mlflow import cli
    from mlflow.exceptions import MlflowException

    docs = [
        Path(__file__).resolve().parents[2] / "README.md",
        *Path(__file__).resolve().parents[2].glob("docs/**/*.md"),
    ]
    assert any(MLFLOW_UI in p.read_text() for p in docs if p.is_file())
    env, _, command = MLFLOW_UI.partition(" ")
    args = command.replace("$PWD", str(tmp_path)).replace("<sweep>", "tiny").split()[1:]
    context = cli.cli.commands[args[0]].make_context(args[0], args[1:])
    uri = context.params["backend_store_uri"]
    assert uri == f"file://{tmp_path}/results/tiny/mlruns"
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_FILE_STORE"):
        mlflow.MlflowClient(tracking_uri=uri).search_experiments()
    monkeypatch.setenv(*env.split("="))
    assert [e.name for e in mlflow.MlflowClient(tracking_uri=uri).search_experiments()] == ["Default"]
