"""ugpnet params: parameter counts of a method (or a bare backbone) as JSON."""
from __future__ import annotations

import argparse
import json

HELP = "print parameter counts as JSON {total, modules} for a method/backbone, task and profile"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True,
                   help="a method defined in params.yaml, or a registered backbone name")
    p.add_argument("--task", required=True, choices=["denoise", "deblur", "sr"])
    p.add_argument("--backbone", default=None,
                   help="methods with a backbone entry: the regression backbone to plug in "
                        "(default: the configured one)")


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def run(args) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from ..models.build import build_backbone

    cfg = load_config(args)
    if args.backbone:
        entry = cfg["methods"].get(args.method)
        if entry is None or "backbone" not in entry:
            raise ConfigError(f"--backbone: method '{args.method}' has no backbone entry")
        key = (f"methods.{args.method}.backbone.{args.task}" if isinstance(entry["backbone"], dict)
               else f"methods.{args.method}.backbone")
        cfg = load_config(args, sets=[f"{key}={args.backbone}"])
    if args.method in cfg["methods"]:
        from ..methods import check_task, kind_of

        check_task(cfg, args.method, args.task)
        kind = kind_of(cfg, args.method)
        model = kind.build(cfg, args.method, args.task)
        out = {"total": count(model), "modules": kind.parameter_breakdown(model)}
    else:
        net = build_backbone(cfg, args.method, args.task)
        out = {"total": count(net), "modules": {args.method: count(net)}}
    out.update({"method": args.method, "task": args.task, "profile": cfg["profile"]})
    print(json.dumps(out, indent=2))
    return 0
