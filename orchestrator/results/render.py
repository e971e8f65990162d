"""Rendering: the Jinja environment of every format, escaping filters, CSV."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

from orchestrator.results.model import Table

TEMPLATES = Path(__file__).parent / "templates"


def environment(loader: jinja2.BaseLoader | None = None) -> jinja2.Environment:
    """The Jinja environment of every table format: strict, filters for escaping only. The packaged
    templates' environment is built once per process (it caches their compiled form)."""
    return _packaged() if loader is None else _environment(loader)


@functools.lru_cache(maxsize=1)
def _packaged() -> jinja2.Environment:
    return _environment(jinja2.FileSystemLoader(TEMPLATES))


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "htm.j2"), default_for_string=False),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tex"] = latex_escape
    env.filters["md"] = markdown_escape
    env.filters["slug"] = slug
    env.filters["braced"] = lambda value: "{" + str(value) + "}"
    return env


def render(tables: list[Table], fmt: str = "md", context: dict[str, Any] | None = None) -> str:
    """Render tables with the packaged template of a format (md, tex, html)."""
    if fmt == "csv":
        return to_csv(tables)
    return environment().get_template(f"table.{fmt}.j2").render(tables=tables, **(context or {}))


def render_file(path: Path, tables: list[Table], context: dict[str, Any] | None = None) -> str:
    """Render tables with a user's template file (its own folder is the template search path)."""
    env = environment(jinja2.FileSystemLoader(path.parent))
    return env.get_template(path.name).render(tables=tables, **(context or {}))


RAW_FIELDS = ("mean", "std", "n", "delta", "low", "high", "p", "p_adjusted")
"""Numbers the CSV carries beside each column's text, unrounded (for plots and further tests)."""


def to_csv(tables: list[Table]) -> str:
    """All tables as one CSV: table title, row group, row, then per table column its text and its raw
    numbers (`<column> mean`, `... std`, `... n`, `... delta`, `... low`, `... high`, `... p`, `... p_adjusted`)."""
    import pandas as pd

    records = []
    for table in tables:
        for row in table.rows:
            record: dict[str, Any] = {
                "table": table.title,
                "group": row.group or "",
                table.row_header or "row": row.label,
            }
            for column, cell in zip(table.flat_columns, row.cells, strict=True):
                record[column] = cell.text
                record.update({f"{column} {name}": getattr(cell, name) for name in RAW_FIELDS})
            records.append(record)
    return str(pd.DataFrame(records).to_csv(index=False))


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "†": r"\textsuperscript{\dag}",
    "°": r"\textsuperscript{$\circ$}",
    "√": r"$\surd$",
    "–": "--",
    "—": "---",
    "'": "'",
    "µ": r"$\mu$",
}


def latex_escape(value: Any) -> str:
    """Text safe inside a LaTeX tabular (pdflatex): specials escaped, common symbols as math."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(value))


def markdown_escape(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("|", r"\|").replace("\n", " ")


def slug(value: Any) -> str:
    """Lowercase letters, digits and '-' (HTML ids, LaTeX labels)."""
    text = "".join(ch.lower() if ch.isalnum() else "-" for ch in str(value))
    return "-".join(part for part in text.split("-") if part)
