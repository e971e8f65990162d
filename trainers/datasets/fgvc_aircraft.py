"""FGVC-Aircraft (fgvc-aircraft-2013b) in its published layout:

    fgvc-aircraft-2013b/data/
      images/<image name>.jpg
      variants.txt  families.txt  manufacturers.txt       one class name per line
      images_variant_{train,val,test}.txt                 <image name> <variant, may contain spaces>
      images_family_{train,val,test}.txt                  <image name> <family>
      images_manufacturer_{train,val,test}.txt            <image name> <manufacturer>

Official train/val/test splits (3334 / 3333 / 3333). The classes are the 100 variants;
`task: hierarchical` adds a super level, `super_level: family` (70, default) or
`manufacturer` (30), with the variant as the sub-class. (The images carry a 20-pixel
copyright banner at the bottom; like torchvision, we keep it.)
Torch-free (see trainers.datasets.index)."""

from __future__ import annotations

import numpy as np

from trainers.config import DatasetConfig
from trainers.datasets.index import SPLITS, DatasetIndex, Files, layout, make_part

FILES = {"data": "data", "images": "data/images"}
LEVELS = {"family": "families", "manufacturer": "manufacturers"}


def _names(files: Files, listing: str) -> list[str]:
    key = f"_{listing}"
    files.names[key] = f"{files.names['data']}/{listing}.txt"
    names = files.lines(key)
    if len(set(names)) != len(names):
        raise ValueError(f"{files.tag}: {files.path(key)} lists a name twice")
    return names


def _labels(files: Files, level: str, split: str) -> list[tuple[str, str]]:
    key = f"_{level}_{split}"
    files.names[key] = f"{files.names['data']}/images_{level}_{split}.txt"
    return [(image, label) for image, label in files.fields(key, 2)]


@layout("fgvc_aircraft", FILES, tasks=("single", "hierarchical"))
def index_fgvc_aircraft(ds: DatasetConfig, files: Files) -> DatasetIndex:
    """Variant classes in variants.txt order; each official split from its list file."""
    files.descend(files.names["data"], "fgvc-aircraft-2013b")
    hierarchical = (ds.task or "single") == "hierarchical"
    level = ds.super_level or "family"
    if ds.super_level is not None and not hierarchical:
        raise ValueError(f"{files.tag}: super_level needs task: hierarchical")
    if level not in LEVELS:
        raise ValueError(f"{files.tag}: super_level {level!r} unknown; levels: {', '.join(LEVELS)}")
    variants = _names(files, "variants")
    variant_index = {name: i for i, name in enumerate(variants)}
    supers = _names(files, LEVELS[level]) if hierarchical else []
    super_index = {name: i for i, name in enumerate(supers)}
    folder = files.require("images", folder=True)
    parts = {}
    for split in SPLITS:
        rows = _labels(files, "variant", split)
        paths = [folder / f"{image}.jpg" for image, _ in rows]
        files.check_listed(paths, str(files.path(f"_variant_{split}")))
        unknown = [n for n, (_, v) in enumerate(rows, start=1) if v not in variant_index]
        if unknown:
            raise ValueError(
                f"{files.tag}: {files.path(f'_variant_{split}')} entry {unknown[0]}: variant not in "
                f"{files.path('_variants')}"
            )
        subs = [variant_index[v] for _, v in rows]
        if not hierarchical:
            parts[split] = make_part(files, paths, subs)
            continue
        by_image = dict(_labels(files, level, split))
        targets = []
        for number, ((image, _), sub) in enumerate(zip(rows, subs, strict=True), start=1):
            name = by_image.get(image)
            if name not in super_index:
                where = files.path(f"_{level}_{split}")
                raise ValueError(
                    f"{files.tag}: image of entry {number} of {files.path(f'_variant_{split}')}: its {level} is "
                    f"missing from {where} or not in {files.path(f'_{LEVELS[level]}')}"
                )
            targets.append([super_index[name], sub])
        parts[split] = make_part(files, paths, np.asarray(targets, dtype=np.int64).reshape(-1, 2))
    return DatasetIndex("hierarchical" if hierarchical else "single", variants, parts, supers)
