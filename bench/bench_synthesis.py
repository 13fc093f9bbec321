"""Time UGPNet's synthesis module (E + G) forward at paper scale on CPU.

Usage: .venv/bin/python bench/bench_synthesis.py [--threads 2] [--runs 5] [--size 512]
       [--variants default,contiguous,unfused]

Batch 1, no grad, eval mode, random weights (timing does not depend on the values). Prints the
median and min over ``--runs`` timed runs after one warm-up, for the whole module and for E and G
separately, plus the 1-minute load average before and after (other processes on the machine
distort the numbers; compare variants from the same invocation, they are interleaved). "cpu" is
the process CPU time of the whole forward (all threads), less sensitive to other load than wall
time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from ugpnet.models.synthesis import build_synthesis_module
from ugpnet.models.synthesis.ops import ModulatedConv2d


def configure(module, variant: str) -> None:
    module.generator.channels_last = variant != "contiguous"
    for m in module.modules():
        if isinstance(m, ModulatedConv2d):
            m.fused = False if variant == "unfused" else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--variants", default="default", help="comma list of default, contiguous, unfused")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    module = build_synthesis_module(size=args.size).eval()
    x = torch.rand(1, 3, args.size, args.size)
    variants = args.variants.split(",")
    times = {v: {"total": [], "E": [], "G": [], "cpu": []} for v in variants}
    load0 = os.getloadavg()[0]
    with torch.no_grad():
        for v in variants:  # warm-up
            configure(module, v)
            module(x)
        for _ in range(args.runs):
            for v in variants:
                configure(module, v)
                c0 = time.process_time()
                t0 = time.perf_counter()
                module(x)
                t1 = time.perf_counter()
                times[v]["cpu"].append(time.process_time() - c0)
                basecode, wplus = module.encoder(x)
                t2 = time.perf_counter()
                module.generator.synthesize(basecode, wplus, noise=module.noise)
                t3 = time.perf_counter()
                times[v]["total"].append(t1 - t0)
                times[v]["E"].append(t2 - t1)
                times[v]["G"].append(t3 - t2)
    load1 = os.getloadavg()[0]
    print(f"torch {torch.__version__}, threads={args.threads}, size={args.size}, runs={args.runs}, "
          f"cpus={os.cpu_count()}, loadavg(1 min) before={load0:.2f} after={load1:.2f}")
    for v in variants:
        row = ", ".join(
            f"{k} median {statistics.median(t):.3f} s (min {min(t):.3f})" for k, t in times[v].items()
        )
        print(f"{v:>10}: {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
