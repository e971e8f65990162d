"""torchvision ImageFolder layout: `root/<class>/<image>`, or the same under
`root/train`, `root/val`, `root/test`. Splits missing on disk are carved out of the
training images with the seeded stratified split."""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS

from trainers.config import DataConfig
from trainers.datasets.base import DatasetSplits, ImageFiles, stratified_split
from trainers.datasets.registry import register


def dataset_root(data: DataConfig) -> Path:
    """The configured root, checked to exist (a clear error before any image is read)."""
    ds = data.dataset
    if ds.root is None:
        raise ValueError(f"dataset {ds.name!r} needs data.dataset.root")
    root = Path(ds.root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset {ds.name!r}: root folder {root} does not exist")
    return root


def find_classes(folder: Path) -> list[str]:
    """Class names: the sorted sub-folder names of `folder` (hidden ones skipped)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_images(folder: Path, class_names: list[str]) -> ImageFiles:
    """Every image file under `folder/<class>/` (recursively), labelled by class index."""
    unknown = set(find_classes(folder)) - set(class_names)
    if unknown:
        raise ValueError(f"{folder}: classes {sorted(unknown)} are not in the training classes")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        class_dir = folder / name
        files = sorted(class_dir.rglob("*")) if class_dir.is_dir() else []
        images = [f for f in files if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS]
        paths.extend(images)
        labels.extend([index] * len(images))
    return ImageFiles(paths, labels)


@register("imagefolder")
def build_imagefolder(data: DataConfig) -> DatasetSplits:
    """ImageFolder splits: official train/val/test folders where present, else split."""
    ds = data.dataset
    root = dataset_root(data)
    train_dir = root / "train" if (root / "train").is_dir() else root
    class_names = find_classes(train_dir)
    pool = scan_images(train_dir, class_names)
    if len(pool) == 0:
        raise ValueError(f"dataset {ds.name!r}: no images found under {train_dir}")
    # Without root/train, a folder named val or test is just a class.
    has_layout = train_dir != root
    official = {s: root / s for s in ("val", "test") if has_layout and (root / s).is_dir()}
    # Carve out only the splits that have no folder; test first, as for digits.
    fractions = {"test": ds.test_fraction, "val": ds.val_fraction}
    wanted = [s for s in ("test", "val") if s not in official]
    *carved, train_idx = stratified_split(pool.labels, [fractions[s] for s in wanted], ds.split_seed)
    splits = {s: pool.subset(idx) for s, idx in zip(wanted, carved, strict=True)}
    splits.update({s: scan_images(d, class_names) for s, d in official.items()})
    return DatasetSplits(
        class_names=class_names,
        train=pool.subset(train_idx),
        val=splits["val"],
        test=splits["test"],
    )
