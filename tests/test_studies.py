"""The five studies of sweeps/ end to end in --smoke mode: the real sweep files, with tiny timm
backbones substituted by overrides, fixture datasets in each native layout and fixture
checkpoints named by a test site file; submitted (debug executor), collected, and each
table checked for its shape and cells."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from orchestrator import launch
from orchestrator.results import collect
from orchestrator.sweep import complexity as profile_cmd
from orchestrator.sweep import yamlio
from orchestrator.sweep.plan import plan, smoke_plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers.datasets import fixtures

REPO = Path(__file__).resolve().parents[1]
SWEEPS = REPO / "sweeps"
# Real backbone -> a timm test model of the same family (a few hundred thousand parameters).
TINY = {
    "convnextv2_large": "test_convnext",
    "convnext_tiny": "test_convnext",
    "resnet50": "test_resnet",
    "efficientnet_b0": "test_efficientnet",
    "vit_base_patch16_224": "test_vit",
}
CHECKPOINTS = {
    "resnet50_in1k": "test_resnet",
    "convnext_tiny_in1k": "test_convnext",
    "efficientnet_b0_in1k": "test_efficientnet",
    "vit_base_patch16_224_in21k": "test_vit",
    "convnextv2_large_22k": "test_convnext",
}
NUMBER = r"\d+\.\d+"
SCORE = re.compile(rf"^(\*\*)?{NUMBER}(\*\*)?( \([+-]{NUMBER}\))?$")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fixture datasets, tiny checkpoints and a site file naming them as sites/example.yaml does."""
    import timm
    import torch

    root = tmp_path_factory.mktemp("site")
    data = root / "data"
    fixtures.make_cub200(data / "cub")
    fixtures.make_fgvc_aircraft(data / "aircraft")
    fixtures.make_foodx251(data / "food")
    fixtures.make_hierarchical_csv(data / "hier", with_test=True)
    fixtures.make_imagefolder(data / "imagenette", split_folders=True)
    fixtures.make_multilabel(data / "flickr", n_images=48)
    for name, model in CHECKPOINTS.items():
        torch.save(timm.create_model(model, pretrained=False).state_dict(), root / f"{name}.pth")
    (root / "class_map.json").write_text(json.dumps({"cat": 0, "dog": 1, "owl": 2}))
    hier_shape = {"super_classes": 3, "classes": 5, "novel_slot": True}
    site = {
        "datasets": {
            "cub200": {"name": "cub200", "root": "data/cub", "label": "CUB Birds"},
            "fgvc_aircraft": {"name": "fgvc_aircraft", "root": "data/aircraft", "label": "FGVC Aircraft"},
            "foodx251": {"name": "foodx251", "root": "data/food", "label": "FoodX"},
            "birds_dogs_unseen": {"name": "hierarchical_csv", "root": "data/hier", "label_shape": hier_shape},
            "imagenette": {
                "name": "imagefolder",
                "root": "data/imagenette",
                "label": "Imagenette",
                "layout": {"val": "none", "test": "val"},
            },
            "lowres_super_sub": {"name": "hierarchical_csv", "root": "data/hier", "label_shape": hier_shape},
            "flickr_multilabel": {"name": "multilabel", "root": "data/flickr", "label_shape": {"classes": 3}},
        },
        "checkpoints": {name: f"{name}.pth" for name in CHECKPOINTS},
    }
    path = root / "test_site.yaml"
    path.write_text(yamlio.dumps(site))
    return path


def tiny_overrides(sweep: Path, site: Path, out: Path) -> list[str]:
    """Overrides that run a study anywhere: the test site, tiny backbones, CPU, small images."""
    raw = yamlio.loads(sweep.read_text())
    backbones = [TINY[b] for b in raw["grid"]["backbone"]]
    overrides = [
        f"site={site}",
        f"output_dir={out}",
        f"grid.backbone=[{','.join(backbones)}]",
        "defaults.distributed.gpus_per_node=0",
        "defaults.data.image_size_px=32",
    ]
    if raw.get("per_backbone"):
        renamed = {}
        for backbone, changes in raw["per_backbone"].items():
            changes = dict(changes)
            if "data.image_size_px" in changes:  # keep "larger than the others", at smoke scale
                changes["data.image_size_px"] = 48 if changes["data.image_size_px"] > 100 else 32
            renamed[TINY[backbone]] = changes
        overrides.append(f"per_backbone={json.dumps(renamed)}")
    for name, changes in (raw.get("modifiers") or {}).items():
        if "model.backbone" in changes:
            overrides.append(f"modifiers.{name}.model.backbone={TINY[changes['model.backbone']]}")
    return overrides


def smoke(sweep_name: str, site: Path, tmp_path: Path, *extra: str, report: bool = False) -> tuple[SweepSpec, Any]:
    """Submit the study's smoke runs in this process, then collect them."""
    sweep = SWEEPS / f"{sweep_name}.yaml"
    spec = load_spec(sweep, [*tiny_overrides(sweep, site, tmp_path / "out"), *extra])
    runs = plan(spec)
    outcome = launch.submit(spec, runs, "debug", smoke=True)
    assert not outcome.failed, outcome.failed[0][1][-2000:]
    assert len(outcome.completed) == len(runs)
    return spec, collect.write_tables(spec, spec.output_path, smoke=True, report=report)


def table_rows(markdown: str, title: str) -> tuple[list[str], list[list[str]]]:
    """Header and body rows of the Markdown table under `## title`."""
    section = markdown.split(f"## {title}\n", 1)[1].lstrip("\n")
    lines = []
    for line in section.splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    return rows[0], rows[2:]


def test_every_study_plans_and_profiles_without_data_or_checkpoints() -> None:
    """With sites/example.yaml (paths that do not exist here): plans, and every cell but the
    checkpoint-headed pretrained_eval one is profiled from known or declared class counts."""
    counts = {}
    for sweep in sorted(SWEEPS.glob("*.yaml")):
        if sweep.name == "demo.yaml":
            continue
        spec = load_spec(sweep)
        assert spec.site is not None and spec.site.endswith("sites/example.yaml"), sweep.name
        runs = plan(spec)
        counts[spec.name] = len(runs)
        if spec.name == "hierarchical_birds_dogs":  # per_backbone names checkpoints through the site
            paths = {run.backbone: run.config.model.pretrained_path for run in runs}
            assert paths == {
                "resnet50": "/shared/checkpoints/timm/resnet50.a1_in1k/model.safetensors",
                "convnext_tiny": "/shared/checkpoints/timm/convnext_tiny.fb_in1k/model.safetensors",
            }
            assert {run.config.loss.class_weights for run in runs} == {"balanced", "none"}
        if spec.name == "ablation_cub":
            # The CUB and combined columns' baseline and last row (profiling all 15 models takes ~20 s).
            keep = [r for r in runs if r.ablation in ("Baseline", "Baseline + Augmentation + Dropout + SCRA")]
            keep = [r for r in keep if r.dataset != "FoodX"]
            frame = profile_cmd.to_frame(keep, profile_cmd.profile_runs(keep), spec)
            assert not frame["error"].astype(bool).any()
            base = frame[frame["ablation"] == "Baseline"].set_index("dataset")
            # Report 004: ConvNeXt-V2-L at 224 px is 68.72 GFLOPs (FlopCounterMode); heads of 200/300/251.
            assert base.loc["CUB Birds", "complexity.gflops"] == pytest.approx(68.72, abs=0.01)
            assert base.loc["CUB Birds", "complexity.params_m"] == pytest.approx(196.727, abs=0.001)
            assert base.loc["CUB Birds + FGVC Aircraft", "complexity.params_m"] == pytest.approx(196.881, abs=0.001)
            scra = frame[frame["ablation"].str.endswith("SCRA")]
            assert (scra["gflops_delta_pct"] > 0).all() and not frame["over_budget"].any()
    assert counts == {
        "ablation_cub": 18,
        "hierarchical_birds_dogs": 2,
        "multilabel_flickr": 40,
        "resnet_vit_dropout": 18,
        "transfer_imagenette": 4,
    }


@pytest.mark.slow
def test_004_ablation_cub(site: Path, tmp_path: Path) -> None:
    spec, written = smoke("ablation_cub", site, tmp_path)
    title = "test_convnext: Comparison of top-1 accuracy between the baseline with different modifications"
    header, rows = table_rows(written.markdown, title)
    assert header == ["Ablation", "CUB Birds", "CUB Birds + FGVC Aircraft", "FoodX", "GFLOPs", "Params (M)"]
    assert [row[0] for row in rows] == list(spec.ablations)
    for row in rows:
        assert all(SCORE.match(cell) for cell in row[1:4]), row
    base_gflops = float(rows[0][4])
    for row in rows[1:4]:  # augmentation, L2SP, dropout: the baseline's model
        assert row[4] == rows[0][4] and row[5] == rows[0][5], row
    for row in rows[4:]:  # SCRA: more GFLOPs and parameters, relative delta shown
        gflops = re.match(rf"^({NUMBER}) \(\+({NUMBER})%\)", row[4])
        assert gflops and float(gflops.group(1)) > base_gflops, row
        assert re.match(rf"^{NUMBER} \(\+{NUMBER}%\)", row[5]), row
    assert (spec.output_path / "smoke" / "tables" / "table.tex").is_file()
    assert "Code version(s):" in written.markdown


@pytest.mark.slow
def test_000_hierarchical_birds_dogs(site: Path, tmp_path: Path) -> None:
    _, written = smoke("hierarchical_birds_dogs", site, tmp_path, report=True)
    header, rows = table_rows(written.markdown, "Per-level test accuracy and macro F1")
    assert header[1:5] == [
        "super-class top-1 (%)",
        "super-class macro F1 (%)",
        "sub-class top-1 (%)",
        "sub-class macro F1 (%)",
    ]
    assert [row[0] for row in rows] == ["test_resnet", "test_convnext"]
    assert all(SCORE.match(cell) for row in rows for cell in row[1:5]), rows
    html = written.report_path.read_text()
    assert "Confusion matrix (sub)" in html and "Confusion matrix (super)" in html


@pytest.mark.slow
def test_001_transfer_imagenette(site: Path, tmp_path: Path) -> None:
    class_map = site.parent / "class_map.json"
    _, written = smoke(
        "transfer_imagenette", site, tmp_path, f"modifiers.resnet50_as_is.model.class_map_path={class_map}"
    )
    header, rows = table_rows(written.markdown, "Results of the experiments on the Imagenette test split")
    assert header == ["Ablation", "Accuracy", "Precision", "Recall", "F1-score", "GFLOPs", "Params (M)"]
    assert [row[0] for row in rows] == [
        "ResNet-50 pre-trained (ImageNet classes)",
        "EfficientNet-B0 from scratch",
        "EfficientNet-B0 fine-tuned (frozen base)",
        "EfficientNet-B0 fine-tuned (all layers)",
    ]
    assert all(re.match(r"^(\*\*)?\d\.\d{3}(\*\*)?( \([+-]\d\.\d{3}\))?$", c) for r in rows for c in r[1:5]), rows
    # The ResNet-50 keeps its 1000-class head (mapped to 3 classes); the EfficientNets have 3-class heads.
    assert rows[0][6] != rows[1][6] and rows[1][6].split(" ")[0] == rows[2][6].split(" ")[0]


@pytest.mark.slow
def test_002_resnet_vit_dropout(site: Path, tmp_path: Path) -> None:
    spec, written = smoke(
        "resnet_vit_dropout",
        site,
        tmp_path,
        "grid.model.head_dropout=[0.2,0.8]",
        "ablations={Pretrained + Augmentation: [aug], From scratch + Augmentation: [aug, scratch]}",
    )
    header, rows = table_rows(written.markdown, "Test accuracy per level")
    assert header == ["Ablation, head_dropout", "super-class top-1 (%)", "sub-class top-1 (%)", "GFLOPs", "Params (M)"]
    groups = [row[0] for row in rows if row[0].startswith("**")]
    assert groups == ["**test_resnet**", "**test_vit**"]
    labels = [row[0] for row in rows if not row[0].startswith("**")]
    assert labels[:2] == [
        "Pretrained + Augmentation (head_dropout=0.2)",
        "Pretrained + Augmentation (head_dropout=0.8)",
    ]
    assert len(labels) == 8
    body = [row for row in rows if not row[0].startswith("**")]
    assert all(SCORE.match(cell) for row in body for cell in row[1:3]), body
    # ViT at 48 px, ResNet at 32 px: the larger input shows in the GFLOPs of the ViT rows.
    loss_header, _ = table_rows(
        written.markdown.split("# resnet_vit_dropout")[-1], "Test loss (super + sub cross-entropy)"
    )
    assert loss_header == ["Ablation", "head_dropout=0.2", "head_dropout=0.8"]
    runs = smoke_plan(plan(spec))
    sizes = {run.backbone: run.config.data.image_size_px for run in runs}
    assert sizes == {"test_resnet": 32, "test_vit": 48}


@pytest.mark.slow
def test_003_multilabel_flickr(site: Path, tmp_path: Path) -> None:
    _, written = smoke(
        "multilabel_flickr",
        site,
        tmp_path,
        "grid.loss.name=[bce]",
        "grid.optim=[{name: adadelta, lr: 0.2}, {name: adam, lr: 1e-3}]",
        report=True,
    )
    title = "test_resnet: Exact-match test accuracy by loss and optimizer, RGB against grayscale"
    header, rows = table_rows(written.markdown, title)
    assert header == ["loss, optim", "RGB", "Grayscale"]
    assert [row[0] for row in rows] == ["loss=bce, optim=adadelta", "loss=bce, optim=adam"]
    assert all(SCORE.match(cell) for row in rows for cell in row[1:]), rows
    assert all(re.search(r"\([+-]\d+\.\d\d\)", row[2]) for row in rows), "grayscale has a delta to RGB"
    f1_header, f1_rows = table_rows(written.markdown, "test_resnet: Micro and macro F1 by loss and optimizer")
    assert f1_header[1:] == [
        "RGB: micro F1 (%)",
        "RGB: macro F1 (%)",
        "Grayscale: micro F1 (%)",
        "Grayscale: macro F1 (%)",
    ]
    assert len(f1_rows) == 2
    runs_csv = pd.read_csv(written.runs_path)
    assert {"test.exact_match", "test.micro_f1", "test.macro_f1"} <= set(runs_csv.columns)
    assert "Confusion matrix" in written.report_path.read_text()
