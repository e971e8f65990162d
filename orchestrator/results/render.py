"""Rendering: the Jinja environment of every format, escaping filters, CSV.

Every template, packaged or the user's, renders in Jinja's ImmutableSandboxedEnvironment: a
template reads the table model and formats it; it cannot reach Python internals
(`''.__class__.__mro__`, `cycler.__init__.__globals__`), call unsafe functions or change its
inputs. HTML templates (`*.html.j2`, `*.htm.j2`, `*.html.jinja`) autoescape. A user's template
also renders within a time, memory and output limit, in a forked process
(orchestrator/results/bounded_render.py); the packaged ones render in this process.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from orchestrator import textsafe
from orchestrator.results import bounded_render
from orchestrator.results.bounded_render import TemplateRefused as TemplateRefused
from orchestrator.results.model import Table
from orchestrator.sweep.templates import TemplateLoader
from trainers.textsafe import UNSAFE

TEMPLATES = Path(__file__).parent / "templates"
MAX_PRODUCT_ITEMS = 1_000_000
"""Longest string or list a template may build with `*` (`'x' * 10**10` would fill the memory)."""
MAX_EXPONENT = 64
"""Largest exponent of `**` in a template."""


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with `*` and `**` bounded (the sandbox leaves them open)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        """`left operator right` unless it would build something huge."""
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if sized and len(seq) * count > MAX_PRODUCT_ITEMS:
                    raise SecurityError(f"'*' would build more than {MAX_PRODUCT_ITEMS:,} items")
        return super().call_binop(context, operator, left, right)


HTML_TEMPLATES = ("html.j2", "htm.j2", "html.jinja", "htm.jinja")
"""Template name endings that autoescape (HTML): every value is escaped unless marked safe."""


def environment(loader: jinja2.BaseLoader | None = None) -> jinja2.Environment:
    """The Jinja environment of every table format: strict, filters for escaping only. The packaged
    templates' environment is built once per process (it caches their compiled form)."""
    return _packaged() if loader is None else _environment(loader)


@functools.lru_cache(maxsize=1)
def _packaged() -> jinja2.Environment:
    return _environment(jinja2.FileSystemLoader(TEMPLATES))


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    env = Sandbox(
        loader=loader,
        autoescape=jinja2.select_autoescape(enabled_extensions=HTML_TEMPLATES, default_for_string=False),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=printable,
    )
    env.filters["tex"] = latex_escape
    env.filters["md"] = markdown_escape
    env.filters["slug"] = slug
    env.filters["braced"] = lambda value: "{" + str(value) + "}"
    return env


def printable(value: Any) -> Any:
    """Every text a template prints, control, bidi and zero-width characters shown as `\x1b` /
    `\u202e` (newlines and tabs kept): autoescaping stops markup, not the ESC sequences a results
    folder's strings (a device name, a folder name) carried into table.html and report/index.html.
    Markup (what the templates and escaping filters made safe) stays Markup."""
    if not isinstance(value, str):
        return value
    shown = textsafe.printable(value)
    return Markup(shown) if isinstance(value, Markup) else shown


def render(tables: list[Table], fmt: str = "md", context: dict[str, Any] | None = None) -> str:
    """Render tables with the packaged template of a format (md, tex, html)."""
    if fmt == "csv":
        return to_csv(tables)
    return environment().get_template(f"table.{fmt}.j2").render(tables=tables, **(context or {}))


def render_file(
    root: Path, name: str, tables: list[Table], context: dict[str, Any] | None = None, owner: int | None = None
) -> str:
    """Render tables with a user's template `name` under `root` (the spec file's folder), sandboxed
    and within bounded_render's limits (MAX_RENDER_SECONDS, MAX_RENDER_MEMORY, MAX_OUTPUT_CHARS);
    it and whatever it includes (names relative to its own folder) pass
    orchestrator.sweep.templates.read_template. TemplateFileError for a file it may not use, else
    TemplateRefused (one line) for any failure, sandbox refusal or limit."""
    path = root / name
    env = environment(TemplateLoader(root, path.parent, owner))
    return bounded_render.render(env, path.name, {"tables": tables, **(context or {})}, f"template {path}")


RAW_FIELDS = ("mean", "std", "n", "delta", "low", "high", "p", "p_adjusted")
"""Numbers the CSV carries beside each column's text, unrounded (for plots and further tests)."""


def to_csv(tables: list[Table]) -> str:
    """All tables as one CSV: table title, row group, row, then per table column its text and its raw
    numbers (`<column> mean`, `... std`, `... n`, `... delta`, `... low`, `... high`, `... p`, `... p_adjusted`)."""
    import pandas as pd

    records = []
    for table in tables:
        row_name, names = _csv_names(table)
        for row in table.rows:
            record: dict[str, Any] = {"table": table.title, "group": row.group or "", row_name: row.label}
            for name, cell in zip(names, row.cells, strict=True):
                record[name] = cell.text
                record.update({f"{name} {field}": getattr(cell, field) for field in RAW_FIELDS})
                if cell.stop is not None:  # adaptive seeds: how the cell stopped
                    record[f"{name} stop"] = cell.stop
            records.append(record)
    return str(pd.DataFrame(records).to_csv(index=False))


def _csv_names(table: Table) -> tuple[str, list[str]]:
    """The CSV names of a table's row-header column and of its columns: their own, or with " (2)",
    " (3)", ... where one would be a name already taken (a dataset labelled `group`, or the same
    as the row header, overwrote that column's values)."""
    taken = {"table", "group"}
    row_name = _free(table.row_header or "row", taken, ())
    taken.add(row_name)
    names = []
    for column in table.flat_columns:
        name = _free(column, taken, (*RAW_FIELDS, "stop"))
        taken.update([name, *(f"{name} {field}" for field in (*RAW_FIELDS, "stop"))])
        names.append(name)
    return row_name, names


def _free(name: str, taken: set[str], fields: tuple[str, ...]) -> str:
    """`name`, else the first `name (k)` (k = 2, 3, ...) that, with its `<name> <field>`s, is not taken."""
    candidate, k = name, 1
    while candidate in taken or any(f"{candidate} {field}" in taken for field in fields):
        k += 1
        candidate = f"{name} ({k})"
    return candidate


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
    "|": r"\textbar{}",
    # `\\` looks ahead for `[`: a row label starting with `[2pt]` would be read as its argument.
    "[": "{[}",
    "]": "{]}",
    "\n": " ",
    "\r": " ",
    "\t": " ",
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
    """Text safe inside a LaTeX tabular (pdflatex): the ten specials (`\\ & % $ # _ { } ~ ^`) and
    `< > | [ ]` escaped, common symbols as math, other control characters dropped, and ligatures
    broken with `{}` (`--` would print an en dash, `''` a closing quote, `!`` (backtick) an inverted !)."""
    out: list[str] = []
    for char in str(value):
        if out and out[-1][-1:] in _LIGATURE_FIRST and char in _LIGATURE_SECOND:
            out.append("{}")
        out.append(_LATEX_SPECIAL.get(char, "" if _is_control(char) else char))
    return "".join(out)


_LIGATURE_FIRST = frozenset("-'`!?,")
_LIGATURE_SECOND = frozenset("-'`,")


def _is_control(char: str) -> bool:
    """A control (C0, DEL, C1), zero-width or bidi character: dropped from Markdown and LaTeX, where a
    right-to-left override in a class name would show a cell's text reversed, and its neighbours'."""
    return UNSAFE.match(char) is not None


_MD_ALWAYS = frozenset("\\`*|#~$[")
"""Escaped wherever they stand: code spans, emphasis, cell borders, headings, strikethrough, math, links."""


def markdown_escape(value: Any) -> str:
    """Text safe inside a Markdown table cell or heading (CommonMark/GFM): `\\`, backtick, `*`, `|`,
    `#`, `~`, `$` and `[` backslash-escaped; `_` too unless inside a word (where it cannot start
    emphasis); `<` before a letter, `/`, `!` or `?` (an HTML tag or autolink), `&` before a letter, digit or `#`
    (an entity); line breaks as spaces,
    other control, zero-width and bidi characters dropped. `markdown_unescape` gives the text back."""
    text = str(value)
    out = []
    for index, char in enumerate(text):
        before = text[index - 1] if index else " "
        after = text[index + 1] if index + 1 < len(text) else " "
        if char in "\r\n\t":
            out.append(" ")
        elif _is_control(char):
            continue
        else:
            out.append("\\" + char if _md_special(char, before, after) else char)
    return "".join(out)


def _md_special(char: str, before: str, after: str) -> bool:
    """Whether `char`, between `before` and `after`, could be Markdown syntax."""
    if char == "_":
        return not (before.isalnum() and after.isalnum())
    if char == "<":
        return after.isalpha() or after in "/!?"
    if char == "&":
        return after.isalnum() or after == "#"
    return char in _MD_ALWAYS


def markdown_unescape(text: str) -> str:
    """The text a Markdown renderer shows for escaped `text`: a backslash before ASCII punctuation drops."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def slug(value: Any) -> str:
    """Lowercase letters, digits and '-' (HTML ids, LaTeX labels)."""
    text = "".join(ch.lower() if ch.isalnum() else "-" for ch in str(value))
    return "-".join(part for part in text.split("-") if part)
