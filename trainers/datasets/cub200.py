"""CUB-200-2011 in its published layout (the CUB_200_2011.tgz archive):

    CUB_200_2011/
      images.txt              <image_id> <relative path>         e.g. 1 001.Black_footed_Albatross/x.jpg
      image_class_labels.txt  <image_id> <class_id, 1-based>
      train_test_split.txt    <image_id> <is_training_image 1|0>
      classes.txt             <class_id> <class name>            e.g. 1 001.Black_footed_Albatross
      images/<relative path>

Official train (5994) and test (5794) splits; validation is carved out of train.
Torch-free (see trainers.datasets.index)."""

from __future__ import annotations

from trainers.config import DatasetConfig
from trainers.datasets.index import DatasetIndex, Files, layout, make_part

FILES = {
    "images_list": "images.txt",
    "labels": "image_class_labels.txt",
    "split": "train_test_split.txt",
    "classes": "classes.txt",
    "images": "images",
}


def _by_id(files: Files, key: str) -> dict[str, str]:
    """The `<id> <value>` lines of annotation file `key`, by id. An id on two lines is refused: a
    dict kept the last one silently, which dropped an image (images.txt), or overrode an image's
    class or moved it between train and test (two exports concatenated)."""
    rows = files.fields(key, 2)
    if not rows:
        raise ValueError(f"{files.tag}: {files.path(key)} is empty")
    _refuse_repeats(files, key, [image_id for image_id, _ in rows], "image id")
    return dict(rows)


def _refuse_repeats(files: Files, key: str, values: list[str], what: str) -> None:
    """ValueError naming the two non-empty lines of `key` that give the same `what` (by line
    number: the file's text is not quoted, see Files)."""
    first_line: dict[str, int] = {}
    for number, value in enumerate(values, start=1):
        if value in first_line:
            raise ValueError(
                f"{files.tag}: {files.path(key)} non-empty lines {first_line[value]} and {number} give the same "
                f"{what}; list each once"
            )
        first_line[value] = number


@layout("cub200", FILES)
def index_cub200(ds: DatasetConfig, files: Files) -> DatasetIndex:
    """Classes from classes.txt, images from images.txt, labels and official split by image id."""
    files.descend(files.names["images_list"], "CUB_200_2011")
    classes = files.fields("classes", 2)
    class_ids = [int(cid) if cid.isdecimal() else -1 for cid, _ in classes]
    if class_ids != list(range(1, len(classes) + 1)):
        raise ValueError(f"{files.tag}: {files.path('classes')}: class ids must be 1..{len(classes)} in order")
    class_names = [name for _, name in classes]
    _refuse_repeats(files, "classes", class_names, "class name")  # two classes no report could tell apart
    images = _by_id(files, "images_list")
    labels = _by_id(files, "labels")
    is_train = _by_id(files, "split")
    for key, table in (("labels", labels), ("split", is_train)):
        absent = [n for n, i in enumerate(images, start=1) if i not in table]
        if absent:
            raise ValueError(
                f"{files.tag}: the image id of entry {absent[0]} of {files.path('images_list')} has no line in "
                f"{files.path(key)}"
            )
    odd = [n for n, v in enumerate(is_train.values(), start=1) if v not in ("0", "1")]
    if odd:
        raise ValueError(f"{files.tag}: {files.path('split')} entry {odd[0]}: is_training must be 1 or 0")
    folder = files.require("images", folder=True)
    odd = [n for n, i in enumerate(images, start=1) if not i.isdecimal()]
    if odd:  # int() would quote the text in its error
        raise ValueError(f"{files.tag}: {files.path('images_list')} entry {odd[0]}: image ids must be integers")
    ids = sorted(images, key=int)
    paths = [folder / images[i] for i in ids]
    files.check_listed(paths, str(files.path("images_list")))
    targets = []
    for number, i in enumerate(ids, start=1):
        label = int(labels[i]) - 1 if labels[i].isdecimal() else -1
        if not 0 <= label < len(class_names):
            raise ValueError(
                f"{files.tag}: {files.path('labels')}: the class id of image {number} (by id) is not in "
                f"{files.path('classes')}"
            )
        targets.append(label)
    parts = {}
    for split, flag in (("train", "1"), ("test", "0")):
        rows = [n for n, i in enumerate(ids) if is_train[i] == flag]
        parts[split] = make_part(files, [paths[n] for n in rows], [targets[n] for n in rows])
    return DatasetIndex("single", class_names, parts)
