"""Text that came from a user or a file, made harmless for where it is shown.

One module for every sink: the terminal (no ANSI/OSC/C1 sequences or control characters from run
folders), rich (its `[markup]`), and the checks on names (`first_unsafe`: bidi overrides and
zero-width characters change what a reader sees, so names carrying them are refused at plan).
The table renderers' escapes (Markdown, LaTeX, matplotlib) live beside the renderers in
orchestrator/results/render.py and figures.py.
"""

from __future__ import annotations

import re
import unicodedata

from trainers.textsafe import UNSAFE as _UNSAFE
from trainers.textsafe import escaped as _escaped

BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
"""Embeddings, overrides and isolates (U+202A-202E, U+2066-2069): they reorder what is displayed."""
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")
"""Zero-width space, non-joiner, joiner, word joiner, BOM: invisible, so two names can look alike."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Terminal sequences: CSI (ESC [ or C1 0x9b) ... final byte; OSC (ESC ] or 0x9d) ... BEL or ST;
# DCS/SOS/PM/APC strings ... ST; two-byte ESC sequences. Removed whole, so no parameter is left behind.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
_CONTROL_NAMES = {
    "\x00": "NULL",
    "\t": "CHARACTER TABULATION",
    "\n": "LINE FEED",
    "\r": "CARRIAGE RETURN",
    "\x1b": "ESCAPE",
    "\x7f": "DELETE",
}


def code_point(char: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`; control characters, which have no Unicode name, by their alias."""
    name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "") or "CONTROL CHARACTER"
    return f"U+{ord(char):04X} {name}"


def first_unsafe(text: str) -> str | None:
    """The first control, bidi or zero-width character of `text` as `code_point` names it; None when clean."""
    found = _UNSAFE.search(text)
    return None if found is None else code_point(found.group())


def terminal(text: object, newlines: bool = False) -> str:
    """`text` safe to print: escape sequences removed whole, other control, bidi and zero-width
    characters shown as `\\x07` / `\\u202e` (newlines kept when `newlines`)."""
    cleaned = _SEQUENCE.sub("", str(text))
    return _UNSAFE.sub(lambda m: m.group() if newlines and m.group() == "\n" else _escaped(m.group()), cleaned)


def printable(text: str) -> str:
    """`text` with control, bidi and zero-width characters shown as `\x1b` / `\u202e`, newlines and
    tabs kept: for files a person reads or prints (HTML, figures), where a sequence is text, not a command."""
    if text.isprintable():  # C speed; most texts are clean
        return text
    return _UNSAFE.sub(lambda m: m.group() if m.group() in "\n\t" else _escaped(m.group()), text)


def one_line(text: str) -> str:
    """`text` with every control, bidi and zero-width character shown as `\x1b` / `\u202e`, newlines
    and tabs too: for a label drawn on one line (a figure's ticks and legends), where matplotlib has
    no glyph for a tab or an ESC and would warn on stderr and draw a box."""
    return _UNSAFE.sub(lambda m: _escaped(m.group()), text)


_RICH_TAG = re.compile(r"[a-z#/@][^\[]*?]")
"""What rich reads as a tag after `[` (rich.markup.RE_TAGS)."""


def rich(text: object) -> str:
    """`terminal(text)` as rich markup that prints as written: `[/]`, `[blink]`, `[/scratch/data]`.

    rich.markup.escape is not exact: rich reads `\\[` as `[` even where no tag follows, and halves
    backslashes before a tag. Here every `[` gets one more backslash than the text has before it
    (doubled first before a tag), and trailing backslashes are doubled so they cannot escape a tag
    the caller writes after the text (`f"[bold]{rich(x)}[/]"`)."""
    shown = terminal(text)
    out, index = [], 0
    while index < len(shown):
        char = shown[index]
        if char == "\\":
            run = len(shown[index:]) - len(shown[index:].lstrip("\\"))
            after = index + run
            if after < len(shown) and shown[after] == "[" and _RICH_TAG.match(shown, after + 1):
                out.append("\\" * (2 * run + 1) + "[")
            elif after < len(shown) and shown[after] == "[":
                out.append("\\" * (run + 1) + "[")
            else:
                out.append("\\" * (2 * run if after == len(shown) else run))
                index = after
                continue
            index = after + 1
        elif char == "[":
            out.append("\\[")
            index += 1
        else:
            out.append(char)
            index += 1
    return "".join(out)


def has_control(text: str) -> bool:
    """Whether `text` holds a C0/C1 control character (ESC of ANSI sequences, newline...)."""
    return _CONTROL.search(text) is not None
