"""The bar chart of `orchestrate datasets describe`: class counts per split, one panel per level.

Class names come from the dataset's files and folders: drawn as literal text (no mathtext), control
characters escaped, and a folder name that is not UTF-8 (its bytes decoded as lone surrogates,
`b\\udcff`) written as its escape; matplotlib's FreeType call refused such a string with a TypeError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator import textsafe

if TYPE_CHECKING:
    import pandas as pd

CHART_MAX_NAMED = 60  # above this many classes the chart shows sorted counts without names


def readable(text: Any) -> str:
    """`text` with each byte of a non-UTF-8 name (a lone surrogate) as its `\\udcff` escape."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def bar_chart(counts: pd.DataFrame, title: str) -> bytes:
    """Grouped bars of class counts per split (one panel per level); with many classes the
    classes are sorted by total count and drawn without names. Class names come from the
    dataset's files: drawn as literal text (no mathtext)."""
    import matplotlib

    matplotlib.use("Agg")
    from orchestrator.results.figures import plain_text

    with plain_text():
        return _draw_bar_chart(counts, title)


def _draw_bar_chart(counts: pd.DataFrame, title: str) -> bytes:
    import io

    import matplotlib.pyplot as plt
    import numpy as np

    levels = list(dict.fromkeys(counts["level"]))
    widest = max(int((counts["level"] == lv).sum()) for lv in levels)
    width_in = min(24.0, max(6.0, 0.35 * min(widest, CHART_MAX_NAMED) + 2))
    fig, axes = plt.subplots(len(levels), 1, figsize=(width_in, 3.8 * len(levels)), squeeze=False)
    for ax, level in zip(axes[:, 0], levels, strict=True):
        group = counts[counts["level"] == level]
        named = len(group) <= CHART_MAX_NAMED
        if not named:
            group = group.sort_values("total", ascending=False)
        x = np.arange(len(group))
        for offset, split in zip((-0.27, 0.0, 0.27), ("train", "val", "test"), strict=True):
            ax.bar(x + offset, group[split], width=0.27, label=split)
        if named:
            names = [textsafe.one_line(readable(name)) for name in group["class"]]  # no raw ESC in a glyph warning
            ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        else:
            ax.set_xlabel(f"{len(group)} classes, sorted by total count")
        ax.set_ylabel("images")
        ax.set_title(textsafe.one_line(readable(f"{title}: {level} counts per split")))
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    return buffer.getvalue()
