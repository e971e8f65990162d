"""The five studies of sweeps/ at smoke scale on this machine: a test site file naming fixture
datasets (each in its native layout) and tiny fixture checkpoints, and the overrides that
swap each real backbone for a timm test model of its family, on CPU at 32 px.

As a script it renders every study's tables from its smoke runs with the CLI itself
(`orchestrate submit SWEEP --smoke --executor local`, then `orchestrate collect --smoke`):

    python tests/support/studies_fixture.py results/studies-smoke     # (make studies-smoke)

and prints where each table is; README's smoke-run tables are copied from there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "sweeps"
STUDIES = (
    "hierarchical_birds_dogs",
    "transfer_imagenette",
    "resnet_vit_dropout",
    "multilabel_flickr",
    "ablation_cub",
)
# Real backbone -> a timm test model of the same family (a few hundred thousand parameters).
TINY = {
    "convnextv2_large": "test_convnext",
    "convnext_large.fb_in1k": "test_convnext",
    "convnext_tiny.fb_in1k": "test_convnext",
    "resnet50.tv_in1k": "test_resnet",
    "tf_efficientnet_b0": "test_efficientnet",
    "tf_efficientnet_b0.in1k": "test_efficientnet",
    "vit_small_patch8_224": "test_vit",
    "vit_base_patch16_224.augreg_in21k": "test_vit",
}
CHECKPOINTS = {
    "resnet50_tv_in1k": "test_resnet",
    "convnext_large_in1k": "test_convnext",
    "convnext_tiny_in1k": "test_convnext",
    "tf_efficientnet_b0_in1k": "test_efficientnet",
    "vit_base_patch16_224_in21k": "test_vit",
    "convnextv2_large_22k": "test_convnext",
}
CLASS_MAP = "class_map.json"
"""The fixture Imagenette's classes (cat, dog, owl) mapped to ImageNet indices, beside the site file."""


def build_site(root: Path) -> Path:
    """Fixture datasets, tiny checkpoints, a class map and a site file naming them as
    sites/example.yaml does; returns the site file."""
    import dataset_fixtures as fixtures
    import timm
    import torch

    from orchestrator.sweep import yamlio

    data = root / "data"
    fixtures.make_cub200(data / "cub")
    fixtures.make_fgvc_aircraft(data / "aircraft")
    fixtures.make_foodx251(data / "food")
    fixtures.make_hierarchical_csv(data / "hier", with_test=True)
    fixtures.make_imagefolder(data / "imagenette", split_folders=True)
    fixtures.make_multilabel(data / "flickr", n_images=48)
    for name, model in CHECKPOINTS.items():
        torch.save(timm.create_model(model, pretrained=False).state_dict(), root / f"{name}.pth")
    (root / CLASS_MAP).write_text(json.dumps({"cat": 0, "dog": 1, "owl": 2}))
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
    from orchestrator.sweep import yamlio

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
        if changes.get("data.image_size_px", 0) > 100:  # the same, for a backbone set by a modifier
            overrides.append(f"modifiers.{name}.data.image_size_px=48")
        if "model.class_map_path" in changes:  # ImageNet indices of the fixture's three classes
            overrides.append(f"modifiers.{name}.model.class_map_path={site.parent / CLASS_MAP}")
    return overrides


def render_all(out: Path) -> dict[str, Path]:
    """Build the site under `out`, then submit and collect every study's smoke runs with the CLI."""
    site = build_site(out / "site")
    cli = [sys.executable, "-m", "orchestrator.cli"]
    tables = {}
    for name in STUDIES:
        sweep = SWEEPS / f"{name}.yaml"
        study_out = out / name
        overrides = tiny_overrides(sweep, site, study_out)
        # Overrides follow the spec path: `orchestrate submit SWEEP [KEY=VALUE ...]`.
        subprocess.run([*cli, "submit", str(sweep), *overrides, "--smoke", "--executor", "local"], check=True)
        subprocess.run([*cli, "collect", str(sweep), *overrides, "--smoke", "--no-report"], check=True)
        tables[name] = study_out / "smoke" / "tables" / "table.md"
    return tables


if __name__ == "__main__":
    for study, table in render_all(Path(sys.argv[1]).resolve()).items():
        print(f"{study}: {table}")
