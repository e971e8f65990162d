"""Generate the backbone table (orchestrator/sweep/backbones.py) for the installed timm: names and
tags from timm's registry, patch sizes from models built on the meta device. Imports timm and
torch: only this regeneration command runs it.

    python -m orchestrator.checks.backbone_table [--ship] [--out PATH] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from orchestrator.sweep.backbones import FORMAT, TABLE_FILE, cache_path, write_table


def generate(workers: int) -> dict[str, Any]:
    """The table of the installed timm: names and tags from its registry, patch sizes from the
    models that may have a patch embedding, built on the meta device (no memory, no weights) in
    `workers` processes."""
    import timm

    names = timm.list_models()
    tags: dict[str, list[str]] = {name: [] for name in names}
    for tagged in timm.list_models(include_tags=True):
        arch, _, tag = tagged.partition(".")
        if arch in tags and tag:
            tags[arch].append(tag)
    patch_px, unbuilt = _patch_sizes(_with_patch_embed(), workers)
    return {
        "format": FORMAT,
        "timm_version": timm.__version__,
        "generated_by": "python -m orchestrator.checks.backbone_table",
        "models": {name: sorted(tags[name]) for name in sorted(names)},
        "patch_px": dict(sorted(patch_px.items())),
        "unbuilt": sorted(unbuilt),
    }


def _with_patch_embed() -> list[str]:
    """Models of the timm modules whose source has a `patch_embed` (the attribute read below): a
    model of any other module has no patch grid to measure, so building it would only cost time."""
    import importlib
    import inspect

    import timm

    names: list[str] = []
    for module in timm.list_modules():
        if "patch_embed" in inspect.getsource(importlib.import_module(f"timm.models.{module}")):
            names += timm.list_models(module=module)
    return sorted(set(names))


def _patch_sizes(names: list[str], workers: int) -> tuple[dict[str, int], list[str]]:
    """Patch size of each model that has one, and the models that could not be built."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    patch_px: dict[str, int] = {}
    unbuilt: list[str] = []
    # spawn: a fresh interpreter per worker, not a fork of one that may hold torch threads.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for name, px in zip(names, pool.map(model_patch_px, names, chunksize=8), strict=True):
            if px is None:
                unbuilt.append(name)
            elif px > 1:
                patch_px[name] = px
    return patch_px, unbuilt


def model_patch_px(name: str) -> int | None:
    """Patch size of one timm model built on the meta device: 0 when it has no patch grid (or pads
    the input to one), None when it cannot be built."""
    import warnings

    import timm
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    try:
        with torch.device("meta"):
            try:  # one block is enough to see the patch embedding, and builds ~4x faster
                model = timm.create_model(name, pretrained=False, depth=1)
            except Exception:  # a model whose depth is per stage, or not a parameter
                model = timm.create_model(name, pretrained=False)
    except Exception:  # a model timm cannot build offline is listed as unbuilt, not guessed
        return None
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "patch_size", None)
    if size is None or getattr(embed, "dynamic_img_pad", False):
        return 0
    sizes = [int(s) for s in size] if isinstance(size, tuple | list) else [int(size)]
    return max(sizes) if len(set(sizes)) == 1 else 0  # a non-square patch never fits a square image check


def main(argv: list[str] | None = None) -> int:
    """Regenerate the table for the installed timm (user cache by default, `--ship`: the package's)."""
    parser = argparse.ArgumentParser(prog="python -m orchestrator.checks.backbone_table", description=main.__doc__)
    parser.add_argument("--ship", action="store_true", help=f"write the package's {TABLE_FILE}")
    parser.add_argument("--out", type=Path, help="write here instead")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="processes building models")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    table = generate(max(1, args.workers))
    path = args.out or (_shipped_path() if args.ship else cache_path(table["timm_version"]))
    write_table(table, path)
    elapsed = time.perf_counter() - started
    print(
        f"{path}: timm {table['timm_version']}: {len(table['models'])} models, {len(table['patch_px'])} with a "
        f"patch grid, {len(table['unbuilt'])} not buildable offline ({elapsed:.0f} s)"
    )
    return 0


def _shipped_path() -> Path:
    """The package's table, beside orchestrator/sweep/backbones.py."""
    from orchestrator.sweep import backbones

    return Path(backbones.__file__).with_name(TABLE_FILE)


if __name__ == "__main__":
    raise SystemExit(main())
