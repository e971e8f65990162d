"""The five studies of sweeps/ end to end in --smoke mode: the real sweep files, with tiny timm
backbones substituted by overrides, fixture datasets in each native layout and fixture
checkpoints named by a test site file; submitted (debug executor), collected, and each
table checked for its shape and cells."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dataset_fixtures as fixtures
import pandas as pd
import pytest
import yaml
from studies_fixture import STUDIES, SWEEPS, build_site, tiny_overrides

from orchestrator import launch
from orchestrator.checks import complexity as profile_cmd
from orchestrator.results import collect
from orchestrator.sweep.plan import plan, smoke_plan
from orchestrator.sweep.spec import SweepSpec, load_spec

NUMBER = r"\d+\.\d+"
ONE_SEED = r"( \(1 seed, no interval\))?"  # smoke runs have one seed: no interval to show
SCORE = re.compile(rf"^(\*\*)?{NUMBER}(\*\*)?( \([+-]{NUMBER}\))?{ONE_SEED}$")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fixture datasets, tiny checkpoints and a site file naming them as sites/example.yaml does."""
    return build_site(tmp_path_factory.mktemp("site"))


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
                "resnet50.tv_in1k": "/shared/checkpoints/timm/resnet50.tv_in1k/model.safetensors",
                "convnext_large.fb_in1k": "/shared/checkpoints/timm/convnext_large.fb_in1k/model.safetensors",
                "convnext_tiny.fb_in1k": "/shared/checkpoints/timm/convnext_tiny.fb_in1k/model.safetensors",
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
        "hierarchical_birds_dogs": 3,
        "multilabel_flickr": 40,
        "resnet_vit_dropout": 18,
        "transfer_imagenette": 5,
    }


# ---- each study's protocol, read from its planned configs (sites/example.yaml, no data) ----


def planned(sweep_name: str) -> list[Any]:
    """The runs of a study as planned from its sweep file and sites/example.yaml."""
    return plan(load_spec(SWEEPS / f"{sweep_name}.yaml"))


# ---- each sweep's header table (report | report's code | sweep) against its planned configs ----

# `key=value`, optionally `@text: key=value` (only runs whose name contains text), in a sweep cell.
CHECK = re.compile(r"`(?:@(?P<select>[^:`]+):\s*)?(?P<key>[a-z_][a-z0-9_.]*)=(?P<value>[^`]+)`")
KINDS = {"report", "code", "assumption", "extension", "deviation"}
COLUMNS = ["setting", "report", "report's code", "sweep", "kind"]
MISSING = object()


def header_table(sweep: Path) -> list[dict[str, str]]:
    """The `# | ... |` table of a sweep's leading comment block, one dict per body row."""
    lines = []
    for line in sweep.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# |"):
            lines.append(line[2:].strip())
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    assert rows and rows[0] == COLUMNS, f"{sweep.name}: header table must have columns {COLUMNS}"
    body = rows[2:]
    assert all(len(row) == len(COLUMNS) for row in body), f"{sweep.name}: a row has a '|' too many or few"
    return [dict(zip(COLUMNS, row, strict=True)) for row in body]


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaves of a JSON config (lists are leaves)."""
    if not isinstance(value, dict):
        return {prefix.removesuffix("."): value}
    out: dict[str, Any] = {prefix.removesuffix("."): value} if prefix else {}
    for key, item in value.items():
        out |= flat(item, f"{prefix}{key}.")
    return out


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(same(a, e) for a, e in zip(actual, expected, strict=True))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return set(actual) == set(expected) and all(same(actual[k], expected[k]) for k in expected)
    if isinstance(expected, int | float) and not isinstance(expected, bool) and isinstance(actual, int | float):
        return bool(actual == pytest.approx(expected))
    return bool(actual == expected)


@pytest.mark.parametrize("study", STUDIES)
def test_header_table_matches_the_planned_configs(study: str) -> None:
    """Every row of a study's header table names its kind, and every `key=value` of its sweep
    column holds in the resolved config of every run it selects: the header cannot drift."""
    sweep = SWEEPS / f"{study}.yaml"
    configs = {run.name: flat(run.config.model_dump(mode="json")) for run in plan(load_spec(sweep))}
    checked = 0
    for row in header_table(sweep):
        where = f"{sweep.name}: header row {row['setting']!r}"
        assert row["kind"] in KINDS, f"{where}: kind {row['kind']!r} is none of {sorted(KINDS)}"
        checks = list(CHECK.finditer(row["sweep"]))
        assert checks or row["sweep"].startswith("n/a"), f"{where}: no `key=value` and not marked n/a"
        for match in checks:
            selected = [name for name in configs if match["select"] is None or match["select"] in name]
            assert selected, f"{where}: no run name contains {match['select']!r}"
            expected = yaml.safe_load(match["value"])
            for name in selected:
                actual = configs[name].get(match["key"], MISSING)
                said = f"{where}: {name}: {match['key']} is {actual!r}, the header says {expected!r}"
                assert same(actual, expected), said
                checked += 1
    assert checked >= 10, f"{sweep.name}: only {checked} checks"


def test_000_protocol_resnet_and_convnext_large_per_the_code() -> None:
    runs = {run.ablation: run for run in planned("hierarchical_birds_dogs")}
    assert list(runs) == ["ResNet-50", "ConvNeXt-Large", "ConvNeXt-Tiny (extension)"]
    resnet, large = runs["ResNet-50"].config, runs["ConvNeXt-Large"].config
    assert resnet.model.pretrained_path == "/shared/checkpoints/timm/resnet50.tv_in1k/model.safetensors"
    assert large.model.pretrained_path == "/shared/checkpoints/timm/convnext_large.fb_in1k/model.safetensors"
    assert runs["ConvNeXt-Tiny (extension)"].config.checkpoint_for_test == "last"
    for cfg in (resnet, large):  # the code's PyTorch augmentation (no Keras shear or zoom)
        augment = cfg.data.augment
        assert augment is not None and augment.policy is None and augment.shear_deg == 0 and augment.scale_range is None


def test_001_protocol_raw_1000_way_next_to_mapped() -> None:
    runs = {run.ablation: run.config for run in planned("transfer_imagenette")}
    raw = runs["ResNet-50 pre-trained (1000 ImageNet classes)"]
    mapped = runs["ResNet-50 pre-trained, mapped to the 10 classes (extension)"]
    assert raw.regime == mapped.regime == "pretrained_eval"
    # Resolved from the sweep file, whatever the working directory: an absolute, existing file.
    assert raw.model.class_map_path == str(SWEEPS / "data" / "imagenette_to_imagenet1k.json")
    assert sum("(extension)" in name for name in runs) == 2


def test_002_protocol_separate_level_models_small_vit_from_scratch() -> None:
    runs = planned("resnet_vit_dropout")
    assert {(run.config.data.dataset.level, run.config.epochs) for run in runs} == {("super", 10), ("sub", 15)}
    dropouts: dict[str, set[float]] = {}
    for run in runs:
        dropouts.setdefault(run.backbone, set()).add(run.config.model.head_dropout)
    assert dropouts == {
        "resnet50.tv_in1k": {0.2, 0.5, 0.8},
        "vit_small_patch8_224": {0.5},
        "vit_base_patch16_224.augreg_in21k": {0.5},
    }
    vit_b16 = [run for run in runs if run.backbone.startswith("vit_base")]
    assert len(vit_b16) == 2 and all(run.ablation.startswith("Extension:") for run in vit_b16)
    # 9 settings x 2 levels; from scratch: the self-defined ResNet-50 and the ViT-S (4 runs).
    assert len(runs) == 18 and sum(run.config.model.pretrained_path is None for run in runs) == 4


def test_003_protocol_report_configuration_is_the_first_cell() -> None:
    runs = planned("multilabel_flickr")
    first = runs[0].config
    assert (first.loss.name, first.optim.name, first.optim.lr, first.data.grayscale) == ("bce", "adadelta", 0.2, False)
    optimizers = {run.config.optim.name: run.config.optim for run in runs}
    assert optimizers["adamw"].model_dump(exclude={"name"}) != optimizers["adam"].model_dump(exclude={"name"})
    spec = load_spec(SWEEPS / "multilabel_flickr.yaml")
    assert spec.tables[0].metric == "val.exact_match" and "headline" in (spec.tables[0].title or "")


def test_004_protocol_30_fixed_epochs_final_model_aircraft_trainval(tmp_path: Path) -> None:
    runs = planned("ablation_cub")
    for run in runs:
        cfg = run.config
        assert cfg.epochs == 30 and cfg.checkpoint_for_test == "last" and cfg.early_stopping.patience is None
        assert (cfg.schedule.name, cfg.schedule.step_epochs, cfg.schedule.gamma) == ("step", 5, 0.1)
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adam", 1e-4, 1e-5)
    combined = next(run.config.data.dataset for run in runs if run.config.data.dataset.name == "combined")
    cub, aircraft = combined.parts
    assert aircraft.name == "fgvc_aircraft" and aircraft.train_on_trainval and aircraft.val_fraction == 0
    assert cub.name == "cub200" and cub.val_fraction == 0
    # The planned dataset on fixture files: CUB train + Aircraft train and val train, no validation.
    from trainers.datasets.index import resolve_splits

    roots = {
        "cub200": fixtures.make_cub200(tmp_path / "cub"),
        "fgvc_aircraft": fixtures.make_fgvc_aircraft(tmp_path / "air"),
    }
    parts = tuple(part.model_copy(update={"root": str(roots[part.name])}) for part in combined.parts)
    resolved = resolve_splits(combined.model_copy(update={"parts": parts}))
    cub_alone = resolve_splits(parts[0])
    air_official = resolve_splits(parts[1].model_copy(update={"train_on_trainval": False}))
    assert len(resolved.val) == 0
    assert len(resolved.train) == len(cub_alone.train) + len(air_official.train) + len(air_official.val)
    assert len(resolved.test) == len(cub_alone.test) + len(air_official.test)


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
    # The complexity note says what is counted, and by which torch (the runs' own).
    import torch

    assert f"torch.utils.flop_counter (torch {torch.__version__})" in written.markdown
    assert "attention QK^T and AV included" in written.markdown and "GFLOPs = 2 x multiply-adds" in written.markdown


@pytest.mark.slow
def test_000_hierarchical_birds_dogs(site: Path, tmp_path: Path) -> None:
    _, written = smoke("hierarchical_birds_dogs", site, tmp_path, report=True)
    title = "Per-level test accuracy and micro-F1 (the report's F1; = accuracy). NOT comparable to the report"
    header, rows = table_rows(written.markdown, f"{title}: it scored its training images")
    assert header[1:5] == [
        "super-class top-1 (%)",
        "super-class micro F1 (%)",
        "sub-class top-1 (%)",
        "sub-class micro F1 (%)",
    ]
    assert [row[0] for row in rows] == ["ResNet-50", "ConvNeXt-Large", "ConvNeXt-Tiny (extension)"]
    assert all(SCORE.match(cell) for row in rows for cell in row[1:5]), rows
    # Single-label micro-F1 is accuracy: the report's "F1" column is its top-1.
    assert all(row[1].strip("*") == row[2].strip("*") and row[3].strip("*") == row[4].strip("*") for row in rows)
    macro_header, macro_rows = table_rows(
        written.markdown, "Per-level test macro-F1 (extension; the report's F1 is micro)"
    )
    assert macro_header[1:3] == ["super-class macro F1 (%)", "sub-class macro F1 (%)"] and len(macro_rows) == 3
    title = "Per-level test cross-entropy of the tested model (ResNet-50 with its balanced class weights)"
    loss_header, loss_rows = table_rows(written.markdown, title)
    assert len(loss_header) == 3 and len(loss_rows) == 3  # ablation, super loss, sub loss
    assert all(re.match(r"^(\*\*)?\d+\.\d{3}(\*\*)?", cell) for row in loss_rows for cell in row[1:]), loss_rows
    html = written.report_path.read_text()
    assert "Confusion matrix (sub)" in html and "Confusion matrix (super)" in html


@pytest.mark.slow
def test_001_transfer_imagenette(site: Path, tmp_path: Path) -> None:
    _, written = smoke("transfer_imagenette", site, tmp_path)
    header, rows = table_rows(written.markdown, "Results of the experiments on the Imagenette test split")
    assert header == ["Ablation", "Accuracy", "Precision", "Recall", "F1-score", "GFLOPs", "Params (M)"]
    assert [row[0] for row in rows] == [
        "ResNet-50 pre-trained (1000 ImageNet classes)",
        "ResNet-50 pre-trained, mapped to the 10 classes (extension)",
        "EfficientNet-B0 from scratch",
        "EfficientNet-B0 fine-tuned (frozen base)",
        "EfficientNet-B0 fine-tuned, all layers (extension)",
    ]
    assert all(re.match(rf"^(\*\*)?\d\.\d{{3}}(\*\*)?{ONE_SEED}$", c) for r in rows for c in r[1:5]), rows
    # Both ResNet-50 rows are one network with its 1000-class head; the EfficientNets have 3-class heads.
    assert rows[0][6].split(" ")[0] == rows[1][6].split(" ")[0] != rows[2][6].split(" ")[0]


@pytest.mark.slow
def test_002_resnet_vit_dropout(site: Path, tmp_path: Path) -> None:
    kept_rows = {
        "4.1+4.2 ResNet-50 pretrained + aug, dropout 0.2: super": "[super, aug]",
        "4.2 ResNet-50 pretrained + aug, dropout 0.2, train and test swapped: sub": "[sub, aug, swap]",
        "4.4 ViT-S, 8 px patches, from scratch, 64 px + aug, dropout 0.5: super": "[super, aug, drop5, vit]",
        "Extension: ViT-B-16 ImageNet-21k, 224 px + aug, dropout 0.5: sub": "[sub, aug, drop5, vit_b16]",
    }
    kept = ", ".join(f"'{row}': {mods}" for row, mods in kept_rows.items())
    spec, written = smoke("resnet_vit_dropout", site, tmp_path, f"ablations={{{kept}}}")
    header, rows = table_rows(written.markdown, "Test accuracy and loss per level")
    assert header == ["Ablation", "Accuracy", "Loss", "GFLOPs", "Params (M)"]
    assert [row[0] for row in rows] == list(kept_rows)
    assert all(re.match(rf"^\d\.\d{{4}}{ONE_SEED}$", cell) for row in rows for cell in row[1:3]), rows
    # One model per level: the super model's head has 3 outputs, the sub model's 6 (5 + novel).
    runs = smoke_plan(plan(spec))
    assert [run.config.data.dataset.level for run in runs] == ["super", "sub", "super", "sub"]
    sizes = [(run.backbone, run.config.data.image_size_px, run.config.model.pretrained_path is None) for run in runs]
    assert sizes == [
        ("test_resnet", 32, False),
        ("test_resnet", 32, False),
        ("test_vit", 32, True),
        ("test_vit", 48, False),
    ]
    assert rows[0][4] != rows[1][4]  # params differ by the head width


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
    headline = "test_resnet: Validation exact-match accuracy (the report's headline metric). Report's configuration"
    header, rows = table_rows(
        written.markdown, f"{headline} = first row (BCE, Adadelta 0.2), RGB; every other cell is an extension"
    )
    assert header == ["loss, optim", "RGB", "Grayscale (extension)"]
    assert [row[0] for row in rows] == ["loss=bce, optim=adadelta", "loss=bce, optim=adam"]
    assert all(SCORE.match(cell) for row in rows for cell in row[1:]), rows
    title = "test_resnet: Exact-match test accuracy by loss and optimizer, RGB against grayscale (extension grid)"
    header, rows = table_rows(written.markdown, title)
    assert header == ["loss, optim", "RGB", "Grayscale (extension)"]
    assert all(re.search(r"\([+-]\d+\.\d\d\)", row[2]) for row in rows), "grayscale has a delta to RGB"
    f1_header, f1_rows = table_rows(
        written.markdown, "test_resnet: Micro and macro test F1 by loss and optimizer (extension grid)"
    )
    assert f1_header[1:] == [
        "RGB: micro F1 (%)",
        "RGB: macro F1 (%)",
        "Grayscale (extension): micro F1 (%)",
        "Grayscale (extension): macro F1 (%)",
    ]
    assert len(f1_rows) == 2
    runs_csv = pd.read_csv(written.runs_path)
    assert {"test.exact_match", "test.micro_f1", "test.macro_f1", "val.exact_match"} <= set(runs_csv.columns)
    assert "Confusion matrix" in written.report_path.read_text()
