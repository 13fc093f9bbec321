"""The one command-line interface: ``ugpnet <command> ...`` (also ``python -m ugpnet``).

Each command lives in ``ugpnet/commands/<name>.py`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Global options select the configuration (see :mod:`ugpnet.config`).
User-fixable problems (:class:`~ugpnet.errors.UGPNetError`) print one clear message and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

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
    "params": "params",
    "bench": "bench",
    "cache": "cache",
}


def _add_global_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration")
    g.add_argument("--params", metavar="FILE", default=argparse.SUPPRESS,
                   help="params.yaml to read (default: ./params.yaml or $UGPNET_PARAMS)")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key in ("params", "profile", "experiment"):
        if not hasattr(args, key):
            setattr(args, key, None)
    if not hasattr(args, "set"):
        args.set = []
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except UGPNetError as e:
        print(f"ugpnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ugpnet {args.command}: interrupted; completed outputs are kept, partial ones "
              f"were not written.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
