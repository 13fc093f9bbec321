"""ugpnet params: parameter counts of a method (or a bare backbone) as JSON."""
from __future__ import annotations

import argparse
import json

HELP = "print parameter counts as JSON {total, modules} for a method/backbone, task and profile"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True,
                   help="a method in params.yaml (ugpnet, nafnet, rrdbnet, ...) or a backbone name")
    p.add_argument("--task", required=True, choices=["denoise", "deblur", "sr"])
    p.add_argument("--backbone", default=None,
                   help="UGPNet only: the regression backbone to plug in (default: the task's)")


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def run(args) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from ..methods import build_backbone, method_cfg

    sets = []
    if args.backbone:
        sets.append(f"methods.{args.method}.backbone.{args.task}={args.backbone}")
    cfg = load_config(args, sets=sets)
    if args.method in cfg["methods"]:
        kind = method_cfg(cfg, args.method)["kind"]
        if kind == "ugpnet":
            from ..models.build import build_ugpnet
            from ..models.ugpnet import parameter_breakdown

            model = build_ugpnet(cfg, args.method, args.task)
            out = {"total": count(model), "modules": parameter_breakdown(model)}
        else:
            if args.backbone:
                raise ConfigError("--backbone applies to UGPNet only")
            name = method_cfg(cfg, args.method)["backbone"]
            net = build_backbone(cfg, name, args.task)
            out = {"total": count(net), "modules": {name: count(net)}}
    else:
        net = build_backbone(cfg, args.method, args.task)
        out = {"total": count(net), "modules": {args.method: count(net)}}
    out.update({"method": args.method, "task": args.task, "profile": cfg["profile"]})
    print(json.dumps(out, indent=2))
    return 0
