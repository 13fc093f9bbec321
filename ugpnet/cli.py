"""The one command-line interface: ``ugpnet <command> ...`` (also ``python -m ugpnet``).

Each command lives in ``ugpnet/commands/<name>.py`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Global options select the configuration (see :mod:`ugpnet.config`).
User-fixable problems (:class:`~ugpnet.errors.UGPNetError`) print one clear message and exit 2.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys
from pathlib import Path

from .errors import UGPNetError

# Explicit list (no folder scan): name -> module under ugpnet.commands
COMMANDS = {
    "prepare": "prepare",
    "kernels": "kernels",
    "degrade": "degrade",
    "train": "train",
    "pretrain-prior": "pretrain_prior",
    "restore": "restore",
    "evaluate": "evaluate",
    "table": "table",
    "plots": "plots",
    "figures": "figures",
    "params": "params",
    "check": "check",
    "bench": "bench",
    "cache": "cache",
}


def _add_global_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration")
    g.add_argument("--params", metavar="FILE", default=argparse.SUPPRESS,
                   help="params.yaml to read (default: ./params.yaml or $UGPNET_PARAMS)")
    g.add_argument("--configfile", metavar="FILE", action="append", default=argparse.SUPPRESS,
                   help="an override file deep-merged over params.yaml, as snakemake "
                        "--configfile (repeatable; later files win)")
    g.add_argument("--profile", metavar="NAME", default=argparse.SUPPRESS,
                   help="profile in params.yaml (smoke, paper, tiny, ...)")
    g.add_argument("--experiment", metavar="NAME", default=argparse.SUPPRESS,
                   help="experiment name: runs/results/logs go to <profile>/<NAME>/ "
                        "(default: params.yaml 'experiment', else 'default')")
    g.add_argument("--set", metavar="KEY=VALUE", action="append", default=argparse.SUPPRESS,
                   help="override one key, e.g. --set methods.nafnet.train.lr=2e-4 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="ugpnet", description="UGPNet benchmark suite: data, degradations, training, "
        "restoration and evaluation.")
    parser.add_argument("--version", action="version", version=f"ugpnet-bench {__version__}")
    _add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"ugpnet.commands.{module}")  # a broken import fails here
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        _add_global_options(p)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


# Operating-system errors a user fixes outside the program: one message, exit 2, no traceback.
# How a full-disk or read-only message tells each command to write elsewhere: its own options
# (tests/test_provenance_runs.py checks them against the parsers), else params.yaml's paths.*.
WRITE_ELSEWHERE = {"prepare": "--out DIR, or paths.data", "kernels": "--out FILE",
                   "degrade": "--out DIR", "train": "--runs DIR, or paths.runs",
                   "pretrain-prior": "--out DIR, or paths.runs", "restore": "--out DIR",
                   "evaluate": "--out FILE", "table": "--out FILE", "bench": "--out FILE",
                   "plots": "--out DIR", "figures": "--out DIR"}
DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def _file_being_written(e: BaseException) -> str | None:
    """The target of the atomic write an error came from (``path`` in ugpnet.io.atomic_path and
    friends), for OSErrors raised by a plain ``write()`` that carry no file name."""
    import os

    frames = []
    tb = e.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):  # innermost first
        if frame.f_code.co_name.startswith("atomic") or frame.f_code.co_name.startswith("save_"):
            value = frame.f_locals.get("path")
            if isinstance(value, (str, os.PathLike)):
                return str(value)
    return None


def _elsewhere(command: str | None) -> str:
    """How ``command`` is told to write elsewhere (:data:`WRITE_ELSEWHERE`)."""
    return WRITE_ELSEWHERE.get(command or "", "paths.* in params.yaml")


def os_error_message(e: OSError, command: str | None = None) -> str | None:
    """The one-line message for a full disk or a read-only/forbidden path, else None; the
    suggestion names only the options ``command`` has."""
    name = e.filename if e.filename is not None else _file_being_written(e)
    where = name if name is not None else "an output file"
    folder = Path(str(name)).parent if name is not None else None
    if e.errno in DISK_FULL:
        return (f"cannot write {where}: {e.strerror or 'no space left on device'}. Free space on "
                f"that disk{f' ({folder})' if folder else ''} or point the output elsewhere "
                f"({_elsewhere(command)}), then rerun: finished outputs are kept, the unfinished "
                f"one was not written and a rerun continues from what is done.")
    if e.errno in NOT_WRITABLE:
        return (f"cannot access {where}: {e.strerror or 'permission denied'}. Make "
                f"{folder or 'the folder'} writable (or choose another output folder: "
                f"{_elsewhere(command)}) and rerun; nothing was written there.")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key in ("params", "profile", "experiment"):
        if not hasattr(args, key):
            setattr(args, key, None)
    for key in ("set", "configfile"):
        if not hasattr(args, key):
            setattr(args, key, [])
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except UGPNetError as e:
        print(f"ugpnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        message = os_error_message(e, args.command)
        if message is None:
            raise
        print(f"ugpnet {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ugpnet {args.command}: interrupted; completed outputs are kept, partial ones "
              f"were not written.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
