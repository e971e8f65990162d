"""Consoles and tables whose output survives pipes and small terminals.

rich wraps to 80 columns when stdout is not a terminal and cuts table cells with an ellipsis when
they do not fit: a piped `plan` or `status` then shows `resnet10t/Shapes/+fl…` or breaks a log path
across lines, which `grep` and scripts cannot use. Here, piped output gets no width limit and no
colour (one record per line, names, ids and paths whole), and in a terminal table cells fold
instead of being cut, so nothing is ever lost.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

PIPE_WIDTH = 100_000
"""Columns of the virtual page when writing to a pipe or file: no line is ever wrapped."""


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is a terminal; False for a closed one (`orchestrate plan SPEC >&-` left
    sys.stdout None, and the import of the command modules failed on `None.isatty()`)."""
    return stream is not None and bool(stream.isatty())


def make_console(stderr: bool = False) -> Console:
    """A console for one stream: the terminal's width in a terminal, unlimited and plain otherwise."""
    # emoji off: a label `:a:` is text, not 🅰 (markup is escaped by orchestrator.textsafe.rich).
    if is_terminal(sys.stderr if stderr else sys.stdout):
        return Console(stderr=stderr, highlight=False, emoji=False)
    return Console(stderr=stderr, highlight=False, width=PIPE_WIDTH, soft_wrap=True, color_system=None, emoji=False)


def table(*headers: str, **options: Any) -> Table:
    """A rich table whose cells fold rather than being cut with an ellipsis; piped, plain columns
    without box lines (`--json` is the form for programs)."""
    if not is_terminal(sys.stdout):
        options = {"box": None, "pad_edge": False, **options}
    grid = Table(**options)
    for header in headers:
        grid.add_column(header, overflow="fold")
    return grid
