"""File names and error texts made safe to print, on the trainer's side (part of its torch-free
contract: orchestrator.textsafe builds its sinks on the same character set).

A file name may hold any character but `/` and NUL: an ESC starts a terminal sequence (colours,
a retitled window, a rewritten screen), a bidi override reorders what is shown. The trainer's
warnings reach the user's terminal through the job log or `warnings`, so they escape them here.
"""

from __future__ import annotations

import re

UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff\u202a-\u202e\u2066-\u2069]")
"""Control characters (C0, DEL, C1), zero-width characters and bidi embeddings, overrides and
isolates: the set every printed text of a run folder or a user has escaped."""


def terminal(text: object) -> str:
    """`text` with every control, zero-width and bidi character shown as `\\x1b` / `\\u202e`:
    escaping the ESC (or C1 CSI) leaves a sequence's parameters as plain, harmless text."""
    shown = str(text)
    if shown.isprintable():  # C speed; most names are clean
        return shown
    return UNSAFE.sub(lambda m: escaped(m.group()), shown)


def escaped(char: str) -> str:
    """One character as `\\x1b` (below U+0100) or `\\u202e`."""
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
