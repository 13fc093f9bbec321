"""UGPNet vs its regression backbone: one 512² forward each, timed in the same run (ratio).

Usage: .venv/bin/python bench/bench_forward.py [--task deblur] [--threads 2] [--runs 3]

Paper-scale models from params.yaml (profile ``paper``), random weights, batch 1, no grad, eval
mode. Prints median wall time of each and the ratio UGPNet / backbone (the paper reports 2.0 on a
GPU). Interleaved runs, so load from other processes affects both alike; a claim about speed is
this ratio, measured here, never a timed assertion in a test.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ugpnet.config import load_config
from ugpnet.models.build import backbone_name, build_backbone, build_ugpnet


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="deblur", choices=["denoise", "deblur", "sr"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(profile="paper")
    ugp = build_ugpnet(cfg, "ugpnet", args.task).eval()
    reg = build_backbone(cfg, backbone_name(cfg["methods"]["ugpnet"], args.task), args.task).eval()
    size = cfg["data"]["resolution"] // ugp.restoration.scale
    x = torch.rand(1, 3, size, size)
    times = {"ugpnet": [], "backbone": []}
    with torch.inference_mode():
        ugp(x), reg(x)  # warm-up
        for _ in range(args.runs):
            for name, model in (("ugpnet", ugp), ("backbone", reg)):
                t = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"task {args.task}, input {size}x{size}, threads {args.threads}, runs {args.runs}")
    print(f"UGPNet   median {med['ugpnet']:.2f} s  (min {min(times['ugpnet']):.2f})")
    print(f"backbone median {med['backbone']:.2f} s  (min {min(times['backbone']):.2f})")
    print(f"ratio UGPNet / backbone: {med['ugpnet'] / med['backbone']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
