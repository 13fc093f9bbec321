"""ugpnet bench: parameters, inference time and peak memory of every method (paper scale)."""
from __future__ import annotations

import argparse

from . import add_threads_option

HELP = ("time every method's inference (and with --train each training stage) at paper scale, "
        "random weights, batch 1; JSON with parameters, medians, peak memory, ratio to NAFNet")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", default=None, metavar="LIST",
                   help="comma-separated methods of params.yaml (default: all)")
    p.add_argument("--tasks", default=None, metavar="LIST",
                   help="comma-separated tasks (default: every task of each method)")
    p.add_argument("--size", type=int, default=None,
                   help="output size in px (default: data.resolution of the profile; the paper "
                        "profile's is 512)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")
    p.add_argument("--runs", type=int, default=3, help="timed runs after one warm-up (median)")
    add_threads_option(p)
    p.add_argument("--train", action="store_true",
                   help="also time one training iteration of every stage (batch 1)")
    p.add_argument("--out", required=True, metavar="FILE.json", help="result file (atomic)")


def _list(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def run(args) -> int:
    import sys

    from ..bench import run_bench
    from ..config import load_config
    from ..errors import ConfigError
    from ..io import atomic_write_json

    if args.runs < 1:
        raise ConfigError("--runs must be at least 1")
    cfg = load_config(args)
    if args.size:  # the data and every prior at that size
        sets = [f"data.resolution={args.size}"] + [f"priors.{name}.size={args.size}"
                                                    for name in cfg["priors"]]
        cfg = load_config(args, sets=sets)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device {args.device}: CUDA is not available here")
    result = run_bench(cfg, _list(args.methods), _list(args.tasks), cfg["data"]["resolution"],
                       args.device, args.runs, args.threads, args.train,
                       progress=lambda s: print(s, file=sys.stderr, flush=True))
    result["profile"] = cfg["profile"]
    atomic_write_json(args.out, result)
    for r in result["inference"]:
        if "error" in r:
            print(f"{r['method']:>8} {r['task']:>7}  error: {r['error']}")
            continue
        ratio = f"{r['ratio_to_nafnet']:.2f}x NAFNet" if "ratio_to_nafnet" in r else ""
        print(f"{r['method']:>8} {r['task']:>7}  {r['params'] / 1e6:7.2f} M  "
              f"{r['median_s']:7.3f} s  {r['peak_mem_mb']:8.0f} MB  {ratio}")
    for r in result["train"]:
        what = (f"{r['it_per_s']:.3f} it/s ({r['sec_per_iter']:.2f} s/iter, {r['precision']})"
                if "it_per_s" in r else r.get("note") or r.get("error"))
        print(f"train {r['method']}/{r['task']}/{r['stage']}: {what}")
    print(f"wrote {args.out}")
    return 0
