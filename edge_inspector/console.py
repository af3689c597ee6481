"""What every command line of the product does the same way: logging set-up and user errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from edge_inspector.errors import EdgeInspectorError

__all__ = ["LOG_FORMAT", "run_command"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_command(prog: str, args: argparse.Namespace, action: Callable[[argparse.Namespace], int], *, level: int) -> int:
    """Configure logging once, run ``action``, turn a user's mistake into one line.

    An :class:`EdgeInspectorError` becomes ``<prog>: error: <message>`` on
    stderr and exit status 2 (a traceback only with ``--debug``); anything
    else is a bug and keeps its traceback.
    """
    logging.basicConfig(level=logging.DEBUG if args.debug else level, format=LOG_FORMAT)
    try:
        return action(args)
    except EdgeInspectorError as exc:
        if args.debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
