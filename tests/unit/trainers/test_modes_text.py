"""What the trainer prints about a file it cannot read: the file's name is the user's (any
character but `/` and NUL), so its control characters must not reach the terminal raw."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.data.loaders import BadDataError, Transformed
from trainers.datasets.base import ImageFiles
from trainers.textsafe import terminal

HOSTILE = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\u202eevil\n.jpg"
"""A file name that retitles the terminal window, clears the screen, turns text red, reverses
what follows and starts a new line."""


def _raw_controls(text: str) -> list[str]:
    return [c for c in text if not c.isprintable() and c != " "]


def test_terminal_escapes_control_bidi_and_zero_width_characters() -> None:
    assert terminal("plain/name.jpg") == "plain/name.jpg"
    shown = terminal(HOSTILE)
    assert shown == "\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mred\\u202eevil\\x0a.jpg"
    assert not _raw_controls(shown) and terminal("a\u200bb\tc") == "a\\u200bb\\x09c"


def _broken(tmp_path: Path, max_bad_fraction: float) -> Transformed:
    path = tmp_path / HOSTILE
    path.write_bytes(b"not an image")
    images = ImageFiles([path], np.zeros(1, dtype=np.int64))
    return Transformed(images, lambda image: torch.zeros(1), "test", max_bad_fraction)


def test_the_unreadable_image_warning_escapes_the_file_name(tmp_path: Path) -> None:
    """`skipping unreadable image <path>` printed the path as it is: an ESC sequence in a file name
    reached the user's terminal (through the warning, and the BadDataError that ends the run)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _broken(tmp_path, 1.0)[0] is None
    [warning] = [str(w.message) for w in caught if "skipping unreadable image" in str(w.message)]
    assert not _raw_controls(warning), warning
    assert "\\x1b[31mred\\u202eevil\\x0a.jpg" in warning
    (tmp_path / "strict").mkdir()
    with pytest.raises(BadDataError) as raised, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _broken(tmp_path / "strict", 0.0)[0]
    assert not _raw_controls(str(raised.value)) and "latest: " in str(raised.value)
