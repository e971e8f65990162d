"""`status` names where a failed run raised: the innermost frame of the traceback that TrainJob
records in status.json (the last lines of traceback.format_exception)."""

from __future__ import annotations

import traceback

from orchestrator.launch.status import last_frame


def _fails_here() -> None:
    raise ValueError("bad value")


def test_the_innermost_frame_of_a_real_traceback() -> None:
    try:
        _fails_here()
    except ValueError as exc:
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()  # as TrainJob records it
    frame = last_frame(tail)
    assert frame is not None and frame.endswith(" in _fails_here")
    assert frame.split(" in ")[0].rsplit(":", 1)[0] == __file__
    assert int(frame.split(" in ")[0].rsplit(":", 1)[1]) == _fails_here.__code__.co_firstlineno + 1


def test_no_frame_from_junk_or_an_older_status_file() -> None:
    assert last_frame(None) is None
    assert last_frame(42) is None
    assert last_frame("RuntimeError: no frames here") is None
