"""The commands of ``ugpnet`` (one module each, listed in :data:`ugpnet.cli.COMMANDS`), and the
options several of them share."""
from __future__ import annotations

import argparse


def thread_count(text: str) -> int:
    """``--threads``: 0 (torch's default) or a positive number; anything else is refused by the
    parser, before any work."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a whole number, got '{text}'") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (torch's default) or a positive number of "
                                         f"CPU threads, got {n}")
    return n


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """The one ``--threads`` of every command that runs torch (0: torch's default)."""
    p.add_argument("--threads", type=thread_count, default=0, metavar="N",
                   help="CPU threads for torch (default 0: torch's choice)")
