"""Property tests of the renderers (issue 22): random labels full of each renderer's metacharacters
go through the Markdown, LaTeX, HTML and CSV renderers, a matplotlib figure, rich and the terminal
filter; nothing raises, every output gives the label back, and no metacharacter is left unescaped."""

from __future__ import annotations

import csv
import io
from html import escape as html_escape

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestrator import textsafe
from orchestrator.results import figures, render
from orchestrator.results.model import Cell, Row, Table

METACHARACTERS = "\\`*_|#~$[]<>&{}%^!()'\"-+=/:;.,@ \u00b1\u0394"
# Labels as plan accepts them: no control, bidi or zero-width characters (refused with the code point).
LABELS = st.text(
    alphabet=st.one_of(
        st.sampled_from(METACHARACTERS),
        st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")),
    ),
    min_size=1,
    max_size=40,
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def table_with(label: str) -> Table:
    """A one-row table whose every text is `label`."""
    cell = Cell(mean=0.5, std=0.1, n=2, n_expected=2)
    return Table(
        title=label,
        row_header=label,
        columns=[label],
        rows=[Row(label, [cell], group=label, first_in_group=True)],
        notes=[label],
        warnings=[label],
        problems=[label],
    )


@FAST
@given(LABELS)
def test_markdown_escape_round_trips_and_leaves_no_syntax(label: str) -> None:
    escaped = render.markdown_escape(label)
    assert render.markdown_unescape(escaped) == label
    bare = _drop_escapes(escaped)
    assert not set(bare) & set("\\`*|#~$["), escaped
    for index, char in enumerate(bare):
        after = bare[index + 1] if index + 1 < len(bare) else " "
        assert not (char == "<" and (after.isalpha() or after in "/!?")), escaped
        assert not (char == "&" and (after.isalnum() or after == "#")), escaped


def _drop_escapes(text: str) -> str:
    """`text` without its backslash escapes (a backslash and the punctuation after it)."""
    out, index = [], 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text):
            out.append("\x00")  # an escaped character: a placeholder, so neighbours stay apart
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


@FAST
@given(LABELS)
def test_latex_escape_round_trips_and_leaves_no_special(label: str) -> None:
    escaped = render.latex_escape(label)
    assert _latex_unescape(escaped) == label


_LATEX_TOKENS = sorted(((v, k) for k, v in render._LATEX_SPECIAL.items() if k not in "\n\r\t"), reverse=True)
_LATEX_SPECIALS = set("\\&%$#_{}~^[]|<>")


def _latex_unescape(text: str) -> str:
    """Read escaped LaTeX back token by token; a special character outside a token fails."""
    out, index = [], 0
    while index < len(text):
        if text.startswith("{}", index):  # a ligature break
            index += 2
            continue
        for token, char in sorted(_LATEX_TOKENS, key=lambda pair: -len(pair[0])):
            if token != char and text.startswith(token, index):
                out.append(char)
                index += len(token)
                break
        else:
            assert text[index] not in _LATEX_SPECIALS, f"unescaped {text[index]!r} in {text!r}"
            out.append(text[index])
            index += 1
    return "".join(out)


@FAST
@given(LABELS)
def test_html_table_escapes_every_label(label: str) -> None:
    html = render.render([table_with(label)], "html", {"sweep": "s"})
    escaped = str(html_escape(label, quote=True)).replace("&#x27;", "&#39;").replace("&quot;", "&#34;")
    assert escaped in html


@FAST
@given(LABELS)
@example("group")
@example("table")
@example("row")
def test_csv_round_trips_every_label(label: str) -> None:
    """Title, group, row header, row and column all `label` (hypothesis found `group`, which
    overwrote the group column; a row header named as a column lost the row labels)."""
    text = render.to_csv([table_with(label)])
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    header = next(csv.reader(io.StringIO(text)))
    assert len(set(header)) == len(header), header
    assert frame["table"].tolist() == [label] and frame["group"].tolist() == [label]
    row_name, column = header[2], header[3]
    assert frame[row_name].tolist() == [label] and frame[column].tolist() == ["0.50 ± 0.10"]
    assert row_name in (label, f"{label} (2)") and column.startswith(label)
    assert frame[f"{column} mean"].tolist() == ["0.5"]


def test_csv_names_never_overwrite_each_other() -> None:
    """Columns named like the fixed columns, like the row header, or like another column's raw
    numbers each keep their own values."""
    cell = Cell(mean=0.5, std=0.1, n=2, n_expected=2)
    other = Cell(mean=0.7, std=0.1, n=2, n_expected=2)
    table = Table(
        title="t",
        row_header="group",
        columns=["table", "x", "x mean"],
        rows=[Row("r", [cell, other, cell], group="g", first_in_group=True)],
    )
    frame = pd.read_csv(io.StringIO(render.to_csv([table])), dtype=str, keep_default_na=False)
    assert frame.columns[:4].tolist() == ["table", "group", "group (2)", "table (2)"]
    assert frame[["table", "group", "group (2)"]].iloc[0].tolist() == ["t", "g", "r"]
    assert frame["x mean"].tolist() == ["0.7"] and frame["x mean (2) mean"].tolist() == ["0.5"]


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")
@settings(max_examples=25, deadline=None)
@given(st.lists(LABELS, min_size=1, max_size=4, unique=True))
def test_figures_draw_any_label_as_text(labels: list[str]) -> None:
    """`$\\alpha^$`, `\\textbf{5}` and friends: no mathtext error, whatever the label."""
    rows = [(label, [0.1 * i, 0.2]) for i, label in enumerate(labels)]
    figure = figures.ablation_figure(rows, labels[0])
    bars = figures.bars_figure(pd.Series([0.5] * len(labels), index=labels))
    for drawn in (figure, bars):
        with figures.plain_text():
            drawn.savefig(io.BytesIO(), format="png")
    # Each tick: the label in lines of its row's width (cut with `…` past three), then its seeds.
    shown = [tick.get_text().rsplit("\n", 1) for tick in figure.axes[0].get_xticklabels()]
    assert [count for _, count in shown] == ["n=2"] * len(labels)
    for (text, _), label in zip(shown, labels, strict=True):
        assert "".join(label.split()).startswith("".join(text.split()).removesuffix("…"))


@FAST
@given(LABELS)
def test_rich_prints_markup_as_written(label: str) -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=10_000, color_system=None, highlight=False, emoji=False)
    console.print(f"[bold]{textsafe.rich(label)}[/] [bold]{textsafe.rich(label)}[/bold]", end="")
    assert console.file.getvalue() == f"{label} {label}"  # type: ignore[attr-defined]


TERMINAL_NOISE = st.sampled_from(
    [
        "\x1b[31m",
        "\x1b]8;;http://x\x07",
        "\x1b]0;title\x1b\\",
        "\x9b2J",
        "\x9d52;c;x\x9c",
        "\x1bP+q\x1b\\",
        "\x07",
        "\x1bc",
        "\r",
        "\x00",
        "\u202e",
        "\u200b",
        "\x1b[",
        "\x1b",
        "\x85",
    ]
)


@FAST
@given(st.lists(st.one_of(LABELS, TERMINAL_NOISE), max_size=8))
def test_terminal_filter_leaves_no_control_sequence(parts: list[str]) -> None:
    shown = textsafe.terminal("".join(parts))
    assert textsafe.first_unsafe(shown) is None, repr(shown)


def test_terminal_filter_keeps_the_text_between_sequences() -> None:
    text = "a\x1b[31mred\x1b[0m \x1b]8;;http://evil\x07link\x1b]8;;\x07 \x9b2Jb\u202ec\x00d"
    assert textsafe.terminal(text) == "ared link b\\u202ec\\x00d"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("+ Aug $\\alpha^$", "+ Aug \\$\\\\alpha^\\$"),
        ("a|b `c` *d* _e_ f_g", "a\\|b \\`c\\` \\*d\\* \\_e\\_ f_g"),
        ("<script>x</script> &amp; <3", "\\<script>x\\</script> \\&amp; <3"),
        ("[link](http://x) # h ~~s~~", "\\[link](http://x) \\# h \\~\\~s\\~\\~"),
    ],
)
def test_markdown_escape_examples(label: str, expected: str) -> None:
    assert render.markdown_escape(label) == expected


@pytest.mark.parametrize("hidden", ["\u202e", "\u2066", "\u200b", "\ufeff", "\x1b", "\x9b"])
def test_markdown_and_latex_drop_bidi_zero_width_and_control_characters(hidden: str) -> None:
    """A right-to-left override in a class name showed the rest of its cell (and row) reversed."""
    label = f"cat{hidden}gif.exe"
    assert render.markdown_escape(label) == "catgif.exe"
    assert hidden not in render.latex_escape(label)
