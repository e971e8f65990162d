"""The command line: argparse and one small function per command (nothing here is imported by other modules).

Nothing is imported here: the `orchestrate` script imports this package first, and a command a warm
process serves (cli/warm.py) must not pay for the parser's imports (main() is orchestrator.cli.main's)."""

from __future__ import annotations

import sys
from typing import NoReturn

__all__ = ["console"]


def console() -> NoReturn:
    """The `orchestrate` console script: `collect` and `status` by a warm process when one serves
    this shell (cli/warm.py), else main() in this process, which then starts one for the next."""
    from orchestrator.cli import warm
    from orchestrator.cli.process import fill_closed_streams

    fill_closed_streams()  # the descriptors handed to a warm process must be open
    argv = sys.argv[1:]
    code = warm.run(argv)
    if code is not None:
        sys.exit(code)
    from orchestrator.cli.main import main
    from orchestrator.cli.process import run_main

    try:
        code = run_main(main)
    finally:
        warm.start(argv)
    sys.exit(code)
