"""What a dataset holds, read from its annotation files alone: no torch, no PIL, no decoding.

A layout (one module per on-disk format) turns a DatasetConfig into a DatasetIndex:
class names, label structure and the images of each official split (paths + targets).
`resolve_splits` then carves the splits the dataset does not ship (seeded, stratified)
and applies the novel sub-class slot. The same code serves three callers:

- the trainer (trainers.datasets.registry wraps each split into decodable ImageFiles);
- `orchestrate plan`/`submit` (trainers.datasets.check): a missing root, annotation file or
  listed image is a one-line error before any job starts;
- `orchestrate datasets describe` (trainers.datasets.report).

Every error names the dataset and the path: `dataset 'cub200': root /x does not exist`.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from trainers.config import DatasetConfig
from trainers.datasets.splits import apply_novel, novel_mapping, strata_of, stratified_split
from trainers.rules import why_missing

Task = Literal["single", "hierarchical", "multilabel"]
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Datasets built in memory by a torch-side builder (no files to index).
IN_MEMORY = ("digits",)
# Layout modules, imported on first use (each registers itself with @layout).
_LAYOUT_MODULES = ("imagefolder", "cub200", "fgvc_aircraft", "foodx251", "hierarchical_csv", "multilabel")
# Split ids are listed in split.json up to this many images; above, only their hash.
MANIFEST_MAX_IDS = 20_000
# Fields a combined dataset leaves to its parts (each carves its own splits).
_PER_PART_FIELDS = ("split_seed", "val_fraction", "test_fraction")
_LINE_START_BOM = re.compile("^\ufeff", re.MULTILINE)


@dataclass
class Part:
    """The images of one split: ids (paths relative to the dataset root), files, targets."""

    ids: list[str]
    paths: list[Path]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: Sequence[int] | np.ndarray) -> Part:
        """The images at `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return Part([self.ids[i] for i in rows], [self.paths[i] for i in rows], self.targets[rows])


@dataclass
class DatasetIndex:
    """A dataset as its files describe it; `parts` holds the official splits, or a single
    `all` entry when the dataset ships none."""

    task: Task
    class_names: list[str]
    parts: dict[str, Part]
    super_class_names: list[str] = field(default_factory=list)
    novel_classes: list[str] = field(default_factory=list)
    """Sub-classes that stand for "novel/unseen" in the annotation files (hierarchical)."""


@dataclass
class ResolvedSplits:
    """Train/val/test of a dataset after carving and novel handling, ready to load."""

    task: Task
    class_names: list[str]
    train: Part
    val: Part
    test: Part
    super_class_names: list[str] = field(default_factory=list)
    novel_slot: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Part:
        """One split by name."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]


# ---------------------------------------------------------------- layout registry

LayoutFn = Callable[[DatasetConfig, "Files"], DatasetIndex]


@dataclass(frozen=True)
class Layout:
    """An on-disk format: its indexer and the names of its files (overridable via `layout:`)."""

    name: str
    index: LayoutFn
    files: dict[str, str]
    tasks: tuple[Task, ...]


_LAYOUTS: dict[str, Layout] = {}


def layout(name: str, files: dict[str, str], tasks: tuple[Task, ...] = ("single",)) -> Callable[[LayoutFn], LayoutFn]:
    """Register an indexer for dataset `name` with its default file names and supported tasks
    (the first is the dataset's own)."""

    def decorate(fn: LayoutFn) -> LayoutFn:
        if name in _LAYOUTS:
            raise ValueError(f"dataset layout {name!r} registered twice")
        _LAYOUTS[name] = Layout(name, fn, files, tasks)
        return fn

    return decorate


def layouts() -> dict[str, Layout]:
    """Every registered file layout by dataset name."""
    for module in _LAYOUT_MODULES:
        importlib.import_module(f"trainers.datasets.{module}")
    return _LAYOUTS


def available() -> list[str]:
    """Every dataset name a config may use, sorted."""
    return sorted([*layouts(), *IN_MEMORY, "combined"])


def dataset_tag(ds: DatasetConfig) -> str:
    """How errors name a dataset: `dataset 'cub200'`."""
    return f"dataset {ds.name!r}"


def task_of(ds: DatasetConfig) -> Task:
    """The label structure a config asks for (its dataset's own when `task` is unset)."""
    if ds.name in IN_MEMORY:
        return ds.task or "single"
    if ds.name == "combined":
        return ds.task or "single"
    return ds.task or lookup(ds.name).tasks[0]


def lookup(name: str) -> Layout:
    """The layout of dataset `name`, or a ValueError listing the known ones."""
    found = layouts().get(name)
    if found is None:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(available())}")
    return found


# ---------------------------------------------------------------- files


class Files:
    """The files of one dataset: its root, its layout's file names, and existence checks
    that list each folder once (a stat per image is slow on cluster file systems).

    Messages name a file, a line or entry number and what is wrong, never the file's text:
    `layout` and `root` may name any file (a password hash, a key file), and these messages
    are printed at plan."""

    def __init__(self, ds: DatasetConfig, defaults: dict[str, str]) -> None:
        self.ds = ds
        self.tag = dataset_tag(ds)
        unknown = sorted(set(ds.layout) - set(defaults))
        if unknown:
            valid = ", ".join(defaults) or "(none)"
            raise ValueError(f"{self.tag}: layout key(s) {', '.join(unknown)} unknown; valid keys: {valid}")
        self.names = {**defaults, **ds.layout}
        if ds.root is None:
            raise ValueError(f"{self.tag} needs data.dataset.root (the folder holding its files)")
        self.root = Path(ds.root).expanduser()
        if not self.root.is_dir():
            why = "is not a folder" if self.root.exists() else why_missing(self.root)
            raise FileNotFoundError(f"{self.tag}: root {self.root} {why}")
        self._listings: dict[Path, set[str]] = {}

    def descend(self, marker: str, archive_folder: str) -> None:
        """Accept the archive's top folder as root too (e.g. a root holding CUB_200_2011/)."""
        inner = self.root / archive_folder
        if not (self.root / marker).exists() and (inner / marker).exists():
            self.root = inner

    def path(self, key: str) -> Path:
        """The configured file or folder `key` under the root."""
        return self.root / self.names[key]

    def require(self, key: str, folder: bool = False) -> Path:
        """`path(key)`, which must exist (a clear error otherwise)."""
        path = self.path(key)
        ok = path.is_dir() if folder else path.is_file()
        if not ok:
            kind = "folder" if folder else "annotation file"
            why = f"is not a {'folder' if folder else 'file'}" if path.exists() else why_missing(path)
            raise FileNotFoundError(f"{self.tag}: {kind} {path} {why}")
        return path

    def text(self, path: Path) -> str:
        """The text of annotation file `path`, without a leading byte-order mark (Notepad and Excel
        write one: it glued itself to the first id or header, which then matched nothing); a file that
        is not UTF-8 is a ValueError naming it and the line (it was decoded with U+FFFD in place of
        its bytes, which renamed classes, or raised a UnicodeDecodeError naming no file)."""
        data = path.read_bytes()
        try:
            # At any line start: two exported files concatenated carry the second one's mark mid-file.
            return _LINE_START_BOM.sub("", data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise ValueError(f"{self.tag}: {path} line {line}: not UTF-8 text; save the file as UTF-8") from None

    def lines(self, key: str) -> list[str]:
        """Non-empty, stripped lines of annotation file `key`."""
        text = self.text(self.require(key))
        return [line.strip() for line in text.splitlines() if line.strip()]

    def fields(self, key: str, count: int, sep: str | None = None) -> list[list[str]]:
        """Lines of `key` split into `count` fields (the last keeps any further separators)."""
        rows = []
        for number, line in enumerate(self.lines(key), start=1):
            parts = line.split(sep, count - 1)
            if len(parts) != count:
                raise ValueError(
                    f"{self.tag}: {self.path(key)} non-empty line {number}: expected {count} fields, found {len(parts)}"
                )
            rows.append([p.strip() for p in parts])
        return rows

    def csv_fields(self, key: str, count: int) -> list[list[str]]:
        """Rows of CSV annotation file `key`, `count` stripped fields each, blank rows skipped. Read
        with csv's quoting, as spreadsheets export it: `"a,b.jpg",3` is the image `a,b.jpg` (split at
        each ',' the quotes stayed in the name, which then matched no file)."""
        path = self.require(key)
        reader = csv.reader(io.StringIO(self.text(path), newline=""))
        rows = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != count:
                found = len(row)
                raise ValueError(f"{self.tag}: {path} line {reader.line_num}: expected {count} fields, found {found}")
            rows.append([cell.strip() for cell in row])
        return rows

    def exists(self, path: Path) -> bool:
        """Whether `path` exists, from a cached listing of its folder. A link to a missing file does
        not: it was counted as there and failed at decode, in the job, after submission."""
        folder = path.parent
        if folder not in self._listings:
            try:
                with os.scandir(folder) as entries:
                    # d_type says which entries are links: only those cost a stat of their target.
                    self._listings[folder] = {e.name for e in entries if not e.is_symlink() or os.path.exists(e.path)}
            except (FileNotFoundError, NotADirectoryError):
                self._listings[folder] = set()
        return path.name in self._listings[folder]

    def check_listed(self, paths: Iterable[Path], listed_in: str) -> None:
        """Every path must exist; otherwise one error with the count and the first missing entry's
        number (the paths are the listing file's text, so none is quoted)."""
        listed = list(paths)
        missing = [number for number, p in enumerate(listed, start=1) if not self.exists(p)]
        if missing:
            raise FileNotFoundError(
                f"{self.tag}: {len(missing)} image(s) listed in {listed_in} are missing or links to a missing "
                f"file (the first: entry {missing[0]} of {len(listed)})"
            )


def scan_images(folder: Path, tag: str) -> list[Path]:
    """Every image file under `folder` (recursively, hidden entries skipped), sorted. Symlinked
    sub-folders are followed, as torchvision's ImageFolder does: a class assembled from links lost
    their images without a word. Each real folder is read once, so a link loop ends. An image that
    is a link to a missing file, or a folder that cannot be read, is refused (`tag`: the dataset):
    the first failed at decode in every job, the second lost its images without a word."""
    found: list[Path] = []
    broken: list[Path] = []
    seen: set[str] = set()
    pending = [str(folder)]
    while pending:
        top = pending.pop()
        real = os.path.realpath(top)
        if real in seen:  # a loop (`a/up -> a`) or a second link to one folder
            continue
        seen.add(real)
        for entry in _entries(top, tag):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():  # follows a link to a folder
                pending.append(entry.path)
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                # d_type says which entries are links: only those cost a stat of their target.
                dead = entry.is_symlink() and not os.path.exists(entry.path)
                (broken if dead else found).append(Path(entry.path))
    if broken:
        first = os.path.relpath(sorted(broken)[0], folder)
        raise FileNotFoundError(
            f"{tag}: {len(broken)} image(s) under {folder} are links to a missing file (the first: {first!a}); "
            "fix or remove the links"
        )
    return sorted(found)


def _entries(folder: str, tag: str) -> list[os.DirEntry[str]]:
    """The entries of one folder of a dataset; one that cannot be read is an error naming it."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as exc:
        raise PermissionError(f"{tag}: cannot read folder {folder!a}: {exc.strerror or exc}") from None


def make_part(files: Files, paths: list[Path], targets: Any) -> Part:
    """A Part whose ids are the paths relative to the dataset root."""
    ids = [os.path.relpath(p, files.root) for p in paths]
    # Multi-hot targets arrive as a float array; lists (possibly empty) are class indices.
    multi_hot = isinstance(targets, np.ndarray) and targets.dtype.kind == "f"
    array = np.asarray(targets, dtype=np.float32 if multi_hot else np.int64)
    return Part(ids, paths, array)


# ---------------------------------------------------------------- splits


def build_index(ds: DatasetConfig) -> DatasetIndex:
    """Read a file-backed dataset's annotation files (and check its images are there)."""
    found = lookup(ds.name)
    task = task_of(ds)
    if task not in found.tasks:
        raise ValueError(f"{dataset_tag(ds)}: task {task!r} not offered; it offers {', '.join(found.tasks)}")
    if ds.novel_subclasses and task != "hierarchical":
        raise ValueError(f"{dataset_tag(ds)}: novel_subclasses needs task: hierarchical")
    return found.index(ds, Files(ds, found.files))


def resolve_splits(ds: DatasetConfig, index: DatasetIndex | None = None) -> ResolvedSplits:
    """Official splits where the dataset has them; the others carved out of its training
    images with the seeded stratified split (test first, so the test set does not move
    when val_fraction changes); then the novel sub-class slot applied. `index`: `ds`'s own
    `build_index(ds)` when the caller has built it already (it is read, never changed)."""
    if ds.name == "combined":
        return _combined(ds)
    if ds.name in IN_MEMORY:
        raise ValueError(f"{dataset_tag(ds)} is built in memory; use trainers.datasets.build_splits")
    index = build_index(ds) if index is None else replace(index, parts=dict(index.parts))
    check_unique(dataset_tag(ds), {name: part.ids for name, part in index.parts.items()})
    if ds.train_on_trainval:
        _merge_val_into_train(index, ds)
    pool_name = "train" if "train" in index.parts else "all"
    if pool_name not in index.parts:
        raise ValueError(f"{dataset_tag(ds)}: the layout gave neither a train nor an all split")
    pool = index.parts[pool_name]
    if len(pool) == 0:
        raise ValueError(f"{dataset_tag(ds)}: no training images found under {ds.root}")
    wanted = [s for s in ("test", "val") if s not in index.parts]
    fractions = {"test": ds.test_fraction, "val": ds.val_fraction}
    *carved, rest = stratified_split(strata_of(pool.targets), [fractions[s] for s in wanted], ds.split_seed)
    parts = {name: part for name, part in index.parts.items() if name in SPLITS}
    parts.update({s: pool.take(rows) for s, rows in zip(wanted, carved, strict=True)})
    parts["train"] = pool.take(rest)
    policy = {s: "official" if s in index.parts else f"carved {fractions[s]} of {pool_name}" for s in ("val", "test")}
    policy["train"] = "official" if pool_name == "train" and not wanted else f"rest of {pool_name}"
    info: dict[str, Any] = {"policy": policy, "split_seed": ds.split_seed}
    class_names, novel_slot = index.class_names, False
    novel = [*index.novel_classes, *[n for n in ds.novel_subclasses if n not in index.novel_classes]]
    if index.task == "hierarchical" and novel:
        class_names, mapping = novel_mapping(index.class_names, novel, ds.name)
        for name in SPLITS:
            rows, targets = apply_novel(parts[name].targets, mapping, len(class_names), evaluation=name == "test")
            kept = parts[name].take(rows)
            parts[name] = Part(kept.ids, kept.paths, targets)
        novel_slot = True
        info["novel_subclasses"] = novel
    if ds.level is not None:
        return _one_level(ds, index, class_names, parts, novel_slot, info)
    return ResolvedSplits(
        index.task, class_names, parts["train"], parts["val"], parts["test"], index.super_class_names, novel_slot, info
    )


def check_unique(tag: str, ids: dict[str, list[str]]) -> None:
    """Refuse an image listed twice in a split or found in two splits. Carving splits a pool row
    by row, so a row listed twice (two exports concatenated) landed in train and test alike;
    checking the official parts is enough, since carving a pool without repeats cannot overlap."""
    seen: dict[str, str] = {}
    for split, split_ids in ids.items():
        counts: dict[str, int] = {}
        for image_id in split_ids:
            counts[image_id] = counts.get(image_id, 0) + 1
        repeated = [i for i, n in counts.items() if n > 1]
        if repeated:
            raise ValueError(
                f"{tag}: {len(repeated)} image(s) listed more than once in the {split} split "
                f"(e.g. {repeated[0]!r}, {counts[repeated[0]]} times); list each image once"
            )
        shared = [i for i in split_ids if i in seen]
        if shared:
            raise ValueError(
                f"{tag}: {len(shared)} image(s) are in both the {seen[shared[0]]} and the {split} split "
                f"(e.g. {shared[0]!r}); an image may be in one split only"
            )
        seen.update(dict.fromkeys(split_ids, split))


def _merge_val_into_train(index: DatasetIndex, ds: DatasetConfig) -> None:
    """Official train + val as the training pool (validation is carved from it afterwards)."""
    if "train" not in index.parts or "val" not in index.parts:
        raise ValueError(f"{dataset_tag(ds)}: train_on_trainval needs official train and val splits")
    index.parts["train"] = _concat([index.parts["train"], index.parts.pop("val")])


def _one_level(
    ds: DatasetConfig,
    index: DatasetIndex,
    sub_names: list[str],
    parts: dict[str, Part],
    novel: bool,
    info: dict[str, Any],
) -> ResolvedSplits:
    """A hierarchical dataset as single-label at one level: the super or the sub index as the class."""
    if index.task != "hierarchical":
        raise ValueError(f"{dataset_tag(ds)}: level {ds.level!r} needs a hierarchical dataset, not {index.task!r}")
    column = 0 if ds.level == "super" else 1
    names = list(index.super_class_names) if column == 0 else [*sub_names, *(["novel"] if novel else [])]
    single = {s: Part(p.ids, p.paths, np.ascontiguousarray(p.targets[:, column])) for s, p in parts.items()}
    info = {**info, "level": ds.level}
    return ResolvedSplits("single", names, single["train"], single["val"], single["test"], info=info)


def _combined(ds: DatasetConfig) -> ResolvedSplits:
    """Several single-label datasets as one: labels offset by the classes before them,
    class names prefixed with each part's label so they stay distinct."""
    if not ds.parts:
        raise ValueError(f"{dataset_tag(ds)} needs `parts` (e.g. [cub200, fgvc_aircraft] as site entries)")
    if task_of(ds) != "single":
        raise ValueError(f"{dataset_tag(ds)}: only the single-label task is offered")
    _refuse_own_split_fields(ds)
    names: list[str] = []
    pieces: dict[str, list[Part]] = {s: [] for s in SPLITS}
    infos: dict[str, Any] = {}
    labels = [part.display_name for part in ds.parts]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{dataset_tag(ds)}: parts need distinct labels to keep class names apart; got {labels}")
    for number, part_cfg in enumerate(ds.parts):
        try:
            if part_cfg.name == "combined":
                raise ValueError("a combined dataset cannot be a part")
            if part_cfg.name in IN_MEMORY:
                raise ValueError("in-memory datasets (digits) cannot be combined")
            if task_of(part_cfg) != "single":
                raise ValueError(f"parts must be single-label, not {task_of(part_cfg)!r}")
            resolved = resolve_splits(part_cfg)
        except (ValueError, FileNotFoundError) as exc:
            raise type(exc)(f"{dataset_tag(ds)} part {number}: {exc}") from None
        label = labels[number]
        offset = len(names)
        names.extend(f"{label}/{name}" for name in resolved.class_names)
        for s in SPLITS:
            part = resolved.split(s)
            pieces[s].append(Part([f"{label}/{i}" for i in part.ids], part.paths, part.targets + offset))
        infos[label] = {"offset": offset, **resolved.info}
    merged = {s: _concat(pieces[s]) for s in SPLITS}
    # Ids carry each part's label; the same file reached by two parts is caught by its path.
    check_unique(dataset_tag(ds), {s: [str(p) for p in merged[s].paths] for s in SPLITS})
    return ResolvedSplits("single", names, merged["train"], merged["val"], merged["test"], info={"parts": infos})


def _refuse_own_split_fields(ds: DatasetConfig) -> None:
    """Each part carves its own splits, so a combined dataset's split_seed/val_fraction/
    test_fraction were silently unused. Compared with the defaults, not with the fields set:
    a config read back from a full dump has every field set."""
    changed = [f for f in _PER_PART_FIELDS if getattr(ds, f) != DatasetConfig.model_fields[f].default]
    if changed:
        example = f"{changed[0]}: {getattr(ds, changed[0])}"
        raise ValueError(
            f"{dataset_tag(ds)}: {', '.join(changed)} apply to each part, not to combined; "
            f"set them on the parts (parts: [{{name: cub200, {example}}}, ...])"
        )


def _concat(parts: list[Part]) -> Part:
    return Part(
        [i for p in parts for i in p.ids],
        [x for p in parts for x in p.paths],
        np.concatenate([p.targets for p in parts]) if parts else np.zeros(0, dtype=np.int64),
    )


def split_manifest(ids: dict[str, list[str]], strata: dict[str, np.ndarray], info: dict[str, Any]) -> dict[str, Any]:
    """split.json content: per split the image count, class counts and a hash of the sorted
    ids, plus the ids themselves when the dataset is small enough to list them."""
    total = sum(len(v) for v in ids.values())
    out: dict[str, Any] = {"info": info, "splits": {}}
    for name, split_ids in ids.items():
        digest = hashlib.sha256("\n".join(sorted(split_ids)).encode()).hexdigest()
        labels, counts = np.unique(strata[name], return_counts=True)
        entry: dict[str, Any] = {
            "count": len(split_ids),
            "sha256": digest,
            "class_counts": {str(int(k)): int(c) for k, c in zip(labels, counts, strict=True)},
        }
        if total <= MANIFEST_MAX_IDS:
            entry["ids"] = split_ids
        out["splits"][name] = entry
    return out
