"""ugpnet restore: run a trained method over a folder of degraded images."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_threads_option

HELP = "restore a folder of degraded images with a trained method (PNG outputs, same names)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help="a method defined in params.yaml")
    p.add_argument("--task", required=True, choices=["denoise", "deblur", "sr"])
    p.add_argument("--checkpoint", default=None,
                   help="the method's final model.pt, its run folder RUNS/<method>/<task>, or a "
                        "folder of official weights the method's kind can read")
    p.add_argument("--in", dest="inp", required=True, help="folder of degraded images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--intermediate", action="store_true",
                   help="methods with several outputs: also write each further output into "
                        "OUT/<output>/ (the result itself goes to OUT/)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="a weight file of an official release kept outside --checkpoint (the "
                        "method's kind names the files it reads); repeatable")
    add_threads_option(p)
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from ..plan import Plan
    from ..restore import resolve_checkpoint, restore_folder
    from ..training.common import configure_backends, resolve_device, seed_everything, set_threads

    cfg = load_config(args)
    set_threads(args.threads)
    device = resolve_device(cfg["device"])
    configure_backends(cfg.get("cuda"), device)
    # a method that samples at inference (GCFSR's StyleGAN2 noise inputs are drawn per call, as
    # the official randomize_noise=True) restores the same images from the same model every time
    seed_everything(cfg["data"]["seed"])
    extra = {}
    for item in args.weights:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--weights expects NAME=PATH, got '{item}'")
        extra[name] = Path(path)
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    plan = Plan.of(cfg)
    plan.check_model_identity(args.method, args.task,
                              resolve_checkpoint(cfg, args.method, args.task, ckpt))
    n = restore_folder(cfg, args.method, args.task, ckpt, Path(args.inp),
                       Path(args.out), device, intermediate=args.intermediate,
                       progress=not args.no_progress, extra=extra, gt_root=plan.gt_root())
    print(f"restored {n} images into {args.out}")
    return 0
