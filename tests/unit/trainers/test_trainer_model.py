"""Trainer models, pretrained loading, complexity counting and the light-import contract."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import pytest
import torch
from safetensors.torch import save_file

import trainers
from trainers.config import ModelConfig, TrainConfig
from trainers.model.build import build_model, check_pretrained_path, count_params, load_pretrained
from trainers.model.complexity import CONVENTION, COUNTER, complexity
from trainers.model.tasks import single

REPO = Path(__file__).resolve().parents[3]


def _cfg(backbone: str, image_size_px: int = 224, **model: object) -> TrainConfig:
    return TrainConfig.model_validate(
        {"model": {"backbone": backbone, **model}, "data": {"image_size_px": image_size_px}}
    )


def _model(backbone: str, num_classes: int, **model: object) -> torch.nn.Module:
    return build_model(_cfg(backbone, **model), single(num_classes))


def test_login_side_modules_do_not_import_torch() -> None:
    code = (
        "import sys, trainers, trainers.config, trainers.rundir\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'timm', 'accelerate', 'sklearn'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_resnet50_complexity_on_meta_device() -> None:
    started = time.perf_counter()
    counted = complexity(_cfg("resnet50"), single(1000))
    assert time.perf_counter() - started < 10
    assert counted["params"] == 25_557_032
    assert counted["gflops"] == pytest.approx(8.18, abs=0.01)  # 2 x 4.09 GMACs
    assert counted["counter"] == COUNTER and counted["convention"] == CONVENTION
    assert counted["input_size_px"] == 224 and counted["counted_on"] == "meta"
    assert counted["params_m"] == pytest.approx(25.557, abs=1e-3)


def test_complexity_follows_input_size_and_head() -> None:
    small = complexity(_cfg("resnet50"), single(10))
    big = complexity(_cfg("resnet50", 448), single(10))
    assert small["params"] == 25_557_032 - 990 * 2049  # head 2048x1000+1000 -> 2048x10+10
    assert big["params"] == small["params"]
    assert big["gflops"] == pytest.approx(4 * small["gflops"], rel=0.01)


def test_profile_model_reads_class_count_from_dataset() -> None:
    cfg = TrainConfig.model_validate({"model": {"backbone": "test_resnet"}, "data": {"image_size_px": 32}})
    counted = trainers.profile_model(cfg)
    assert counted["params"] == count_params(build_model(cfg, single(10)))
    assert counted["gflops"] > 0


@pytest.mark.parametrize("backbone", ["resnet10t", "mobilenetv3_small_050", "test_efficientnet"])
def test_head_dropout_is_timm_drop_rate_right_before_classifier(backbone: str) -> None:
    torch.manual_seed(0)
    net = _model(backbone, 7, head_dropout=0.5).backbone
    seen: list[torch.Tensor] = []
    net.get_classifier().register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))  # type: ignore[operator]
    features = torch.randn(4, cast(int, net.num_features), 2, 2)
    with torch.no_grad():
        net.eval()
        net.forward_head(features)  # type: ignore[operator]
        net.train()
        net.forward_head(features)  # type: ignore[operator]
    clean, dropped = seen
    kept = dropped != 0
    # What reaches the classifier is the eval-mode input, half zeroed and the rest doubled.
    assert 0.3 < kept.float().mean() < 0.7
    assert torch.allclose(dropped[kept], 2 * clean[kept])


def test_missing_pretrained_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "weights.pth"
    config = ModelConfig(backbone="test_resnet", pretrained_path=str(missing))
    with pytest.raises(FileNotFoundError, match=str(missing)):
        check_pretrained_path(config)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_model(TrainConfig(model=config), single(3))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_weights_loaded_and_new_head_kept(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    source = _model("test_resnet", 1000).backbone
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": source.state_dict()}, path)
    else:
        save_file(source.state_dict(), path)
    torch.manual_seed(2)
    net = _model("test_resnet", 5, pretrained_path=str(path)).backbone
    own, theirs = net.state_dict(), source.state_dict()
    backbone_keys = [k for k in own if not k.startswith("fc.")]
    assert all(torch.equal(own[k], theirs[k]) for k in backbone_keys)
    assert own["fc.weight"].shape == (5, theirs["fc.weight"].shape[1])


def test_pretrained_same_head_shape_is_loaded_too(tmp_path: Path) -> None:
    source = _model("test_resnet", 5).backbone
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    net = _model("test_resnet", 5, pretrained_path=str(path)).backbone
    assert torch.equal(net.state_dict()["fc.weight"], source.state_dict()["fc.weight"])


def test_pretrained_from_another_architecture_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(_model("resnet10t", 5).backbone.state_dict(), path)
    with pytest.raises(ValueError, match="ResNet"):
        load_pretrained(_model("test_resnet", 5).backbone, path)


@pytest.mark.parametrize(("name", "data"), [("tiny.safetensors", b"ab"), ("torn.pth", b"PK\x03\x04 not a zip")])
def test_a_checkpoint_no_loader_can_read_is_a_value_error_naming_it(tmp_path: Path, name: str, data: bytes) -> None:
    """A 2-byte .safetensors was SafetensorError's traceback in `profile` (and plan with a budget)."""
    from trainers.model.build import checkpoint_num_classes

    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError, match=f"{name}: not a checkpoint torch or safetensors can read"):
        checkpoint_num_classes(path, "test_resnet")
