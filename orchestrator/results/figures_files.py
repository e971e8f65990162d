"""The report's image files: each figure saved as a PNG under `report/img/`, with its caption."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.results import figures
from trainers import rundir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMG_DIR = "img"


@dataclass
class Plot:
    """One image of the report: file name (under img/) and caption."""

    file: str
    caption: str


def save(figure: Figure, img: Path, name: str, written: set[str], caption: str) -> Plot:
    """`figure` as `img/name` (written whole, its name added to `written`) and its Plot."""
    import io

    buffer = io.BytesIO()
    with figures.plain_text():  # tick labels are made at draw time: literal text there too
        figure.savefig(buffer, format="png", dpi=figures.DPI)
    with rundir.atomic_open(img / name) as handle:
        handle.write(buffer.getvalue())
    written.add(name)
    return Plot(f"{IMG_DIR}/{name}", caption)
