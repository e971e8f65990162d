"""`orchestrate init` and `orchestrate schema`: a first sweep from a dataset folder, and the JSON Schemas
editors use to complete and check sweep, site and profile files. Torch-free."""

from __future__ import annotations

import argparse
import json
import shlex
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrator import textsafe
from orchestrator.cli import terminal
from orchestrator.sweep import bounded, schema
from orchestrator.sweep.errors import SpecError
from trainers.rundir import folder_slug, write_text

console = terminal.make_console()
errors = terminal.make_console(stderr=True)
SCHEMAS = {"sweep": schema.sweep_schema, "site": schema.site_schema, "profile": schema.profile_schema}
_SPLIT_FOLDERS = ("train", "val", "test")
BATCH_SIZE = 32
"""The batch size `init` writes for a training split of 64 images or more (first_batch)."""


@dataclass(frozen=True)
class FolderDataset:
    """An ImageFolder tree as every run of the sweep will read it (the trainer's own reader)."""

    root: Path
    classes: list[str]
    splits: list[str]
    """Split folders present (train, val, test); empty when the root holds the class folders itself."""
    sizes: dict[str, int]
    """Images per split (train, val, test) after carving, as the runs read them."""
    warnings: list[str]
    """What will run but is probably not what the user meant (an empty class folder, no val image)."""


def cmd_schema(args: argparse.Namespace) -> int:
    """Print (or write with --out) the JSON Schema of a sweep, site or profile file."""
    text = json.dumps(SCHEMAS[args.kind](), indent=1, sort_keys=False) + "\n"
    if args.out is None:
        print(text, end="")
        return 0
    out = Path(args.out).expanduser().resolve()
    if out.exists() and not _ours(out):
        raise SpecError(f"{out}: exists and is not an orchestrate schema; not overwritten")
    write_text(out, text)
    console.print(f"wrote {textsafe.rich(out)}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Write a commented first sweep for an ImageFolder dataset, next to its JSON Schema."""
    _check_init_options(args.name, args.backbone)
    found = scan_folder(Path(args.root).expanduser().resolve())
    name = args.name or folder_slug(found.root.name) or "my_sweep"
    out = Path(args.out or f"{name}.yaml").expanduser().resolve()
    if out.exists():
        raise SpecError(f"{out}: exists; init never overwrites a file (choose another --out)")
    schema_file = out.parent / schema.SWEEP_SCHEMA_ID
    if not schema_file.exists() or _ours(schema_file):
        write_text(schema_file, json.dumps(schema.sweep_schema(), indent=1) + "\n")
    write_text(out, sweep_text(found, name, args.backbone))
    shown = ", ".join(found.classes[:8]) + (", ..." if len(found.classes) > 8 else "")
    # Class folder names are the dataset's: an ESC or bidi override in one reached the terminal raw.
    console.print(f"{len(found.classes)} classes ({textsafe.rich(shown)}); {_sizes_note(found)}")
    for warning in found.warnings:
        errors.print(f"warning: {textsafe.rich(warning)}")
    console.print(f"wrote {textsafe.rich(out)}; next: orchestrate plan {textsafe.rich(shlex.quote(str(out)))}")
    return 0


def scan_folder(root: Path) -> FolderDataset:
    """The classes and splits of an ImageFolder tree, read by `trainers.datasets.index.resolve_splits`:
    the reader `plan` checks and every run loads, so that `init` and the runs agree (its own scan read
    `Train/ Val/` as two classes and wrote a sweep for `val/ test/` without `train/` that plan refused)."""
    if not root.is_dir():
        raise SpecError(f"--root {root}: not a folder")
    from trainers.config import DatasetConfig
    from trainers.datasets.check import check_not_empty, split_origin
    from trainers.datasets.index import resolve_splits

    ds = DatasetConfig(name="imagefolder", root=str(root))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            read = resolve_splits(ds)
        except (ValueError, OSError) as exc:
            raise SpecError(f"--root {root}: {exc}") from None
    classes, policy = read.class_names, read.info["policy"]
    if len(classes) < 2:
        where = f"the train folder of {root}" if policy["train"] != "rest of all" else str(root)
        raise SpecError(f"--root {root}: {len(classes)} class folder(s) under {where}; ImageFolder needs at least 2")
    try:
        check_not_empty(ds, read)  # plan's own check and words: the two cannot drift apart
    except ValueError as exc:
        raise SpecError(f"--root {root}: {exc}") from None
    sizes = {split: len(read.split(split)) for split in _SPLIT_FOLDERS}
    notes = list(dict.fromkeys(str(warning.message) for warning in caught))  # once per carved split
    counts = np.bincount(np.concatenate([read.split(s).targets for s in _SPLIT_FOLDERS]), minlength=len(classes))
    empty = [name for name, count in zip(classes, counts, strict=True) if count == 0]
    if empty:
        notes.append(f"class folder(s) without an image: {', '.join(empty)}; each is still a class of the model")
    if sizes["val"] == 0:
        notes.append(
            f"the val split holds no image ({split_origin(ds, 'val', policy['val'])}): no early stopping, "
            "the last epoch is tested"
        )
    splits = [split for split in _SPLIT_FOLDERS if policy[split] == "official"]
    if policy["train"] == "rest of train":
        splits.insert(0, "train")
    return FolderDataset(root=root, classes=classes, splits=splits, sizes=sizes, warnings=notes)


def _sizes_note(found: FolderDataset) -> str:
    """`9 train, 1 val, 2 test images; split folders: none (val and test carved ...)`."""
    carved = [split for split in ("val", "test") if split not in found.splits]
    counts = ", ".join(f"{found.sizes[split]} {split}" for split in _SPLIT_FOLDERS)
    folders = f"split folders {', '.join(found.splits)}" if found.splits else "no split folders"
    how = f"; {' and '.join(carved)} carved from the training images (stratified, seeded)" if carved else ""
    return f"{counts} images; {folders}{how}"


def sweep_text(found: FolderDataset, name: str, backbone: str) -> str:
    """The commented sweep YAML for one ImageFolder dataset: plans clean as written."""
    layout = "ROOT/train/<class>/<image>" if "train" in found.splits else "ROOT/<class>/<image>"
    batch, why = first_batch(found.sizes["train"])
    lines = [
        f"# yaml-language-server: $schema={schema.SWEEP_SCHEMA_ID}",
        f"# A first sweep for {_comment(str(found.root))}, written by `orchestrate init`.",
        f"# {len(found.classes)} classes; {_sizes_note(found)}.",
        *(f"# warning: {_comment(warning)}" for warning in found.warnings),
        "# Next: `orchestrate plan THIS.yaml`, then `orchestrate submit THIS.yaml` (this machine) or",
        "# `orchestrate submit THIS.yaml --executor slurm --profile NAME` (a cluster), then `orchestrate collect`.",
        f"name: {name}                   # the sweep's name: its results folder, tables and jobs",
        "",
        "defaults:                      # the trainer's settings of every run",
        "  data:",
        f"    dataset: {{name: imagefolder, root: {json.dumps(str(found.root))}}}   # {layout}",
        "    image_size_px: 224        # every image is resized to this square side",
        f"    {f'batch_size: {batch}':<26}# global: images per optimizer step over all GPUs{'; ' + why if why else ''}",
        "  optim: {name: adamw, lr: 1.0e-3, weight_decay: 0.05}   # optimizer, learning rate, decay",
        "  schedule: {name: cosine}    # learning rate over the epochs",
        "  epochs: 10                  # passes over the training images",
        "  # model: {pretrained_path: /path/to/weights.pth}   # local weights (nothing is downloaded)",
        "",
        "grid:",
        f"  backbone: [{backbone}]      # any timm model name",
        "  seed: [0, 1, 2]              # 3 seeds: each table cell gets a mean and an interval",
        "",
        "modifiers:                     # named changes that ablation rows switch on",
        "  aug: {data.augment: {hflip_p: 0.5, rotate_deg: 10, translate_frac: 0.1}}   # flips, rotations, shifts",
        "  dropout: {model.head_dropout: 0.3}   # dropout before the classifier",
        "",
        "ablations:                     # table rows, in order; the first is the baseline",
        "  Baseline: []",
        "  + Augmentation: [aug]",
        "  + Augmentation + Dropout: [aug, dropout]",
        "",
        "slurm: {gpus_per_node: 1, cpus_per_task: 8, mem_gb: 32, timeout_min: 120}   # each job's resources",
    ]
    return "\n".join(lines) + "\n"


def first_batch(train_images: int) -> tuple[int, str]:
    """The batch size `init` writes, and why in words when it is not BATCH_SIZE: for a small training
    split the largest power of two at most half of it (2 at least, never above the split), so that
    each epoch takes two or more optimizer steps and the partial batch the trainer drops (drop_last)
    is under a third of the images. It wrote 32 for 9 training images: one step per epoch, of 9
    images, under a batch size the sweep said was 32. A power of two, as the global batch must split
    evenly over the GPUs (1, 2, 4, 8) and accumulation steps."""
    if train_images < 4:
        batch = max(1, min(train_images, 2))
        return batch, f"{batch}, not {BATCH_SIZE}: at most the {train_images} training image(s)"
    batch = min(BATCH_SIZE, 1 << ((train_images // 2).bit_length() - 1))
    if batch == BATCH_SIZE:
        return batch, ""
    return batch, f"{batch}, not {BATCH_SIZE}: 2+ steps per epoch from {train_images} training images"


def _check_init_options(name: str | None, backbone: str) -> None:
    """--name and --backbone go into the YAML as written: the spec's own rules, checked first (a
    newline in --name wrote a key of its own; a name the spec refuses made a file that did not plan)."""
    from orchestrator.sweep import backbones
    from orchestrator.sweep.errors import short
    from orchestrator.sweep.spec_tables import SAFE_NAME

    if name is not None and (not SAFE_NAME.fullmatch(name) or ".." in name):
        raise SpecError(f"init --name {short(name)}: letters, digits, '_', '-', '.', without '..', at most 64")
    problem = backbones.load().problem(backbone)
    if problem is not None:
        raise SpecError(f"init --backbone {short(backbone)} {problem}")


def _comment(text: str) -> str:
    """A path inside a YAML comment: one line, printable."""
    return "".join(char if char.isprintable() else "?" for char in text)


def _ours(path: Path) -> bool:
    """A schema file this tool wrote (its `$id`), which may be refreshed; anything else is the user's."""
    try:  # bounded: a regular file only (a FIFO at --out blocked the read forever)
        head = (bounded.read_bytes(path, 64 * 1024 * 1024) or b"")[:4096].decode("utf-8", errors="replace")
    except bounded.Unreadable:
        return False
    return any(f'"$id": "{schema_id}"' in head for schema_id in _SCHEMA_IDS)


_SCHEMA_IDS: Sequence[str] = (schema.SWEEP_SCHEMA_ID, schema.SITE_SCHEMA_ID, schema.PROFILE_SCHEMA_ID)
