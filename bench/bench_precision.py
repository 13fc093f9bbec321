"""Training step time, fp32 against bf16 (train_precision), in ONE process, interleaved.

For each UGPNet stage (and the NAFNet / RRDBNet baselines) of a profile, builds the stage's
training benchmark twice (``MethodKind.benchmark_stage``, random weights, the profile's batch
size), then times ``rounds`` alternating blocks of ``steps`` steps per precision; reports the
median step time of each and the ratio. Usage:

    .venv/bin/python bench/bench_precision.py [--profile smoke] [--threads 1] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from ugpnet.config import load_config
from ugpnet.methods import kind_of
from ugpnet.methods.common import random_batch
from ugpnet.training.common import native_bf16

CASES = [("nafnet", "deblur", "train"), ("rrdbnet", "sr", "train"),
         ("ugpnet", "deblur", "restoration"), ("ugpnet", "deblur", "synthesis"),
         ("ugpnet", "deblur", "fusion")]


def build(profile, precision, method, task, stage):
    cfg = load_config(profile=profile, sets=[f"train_precision={precision}"])
    kind = kind_of(cfg, method)
    s, _, _ = kind.benchmark_stage(cfg, method, task, stage, "cpu")
    m = cfg["methods"][method]
    train = m["stages"][stage]["train"] if "stages" in m else m["train"]
    return s, random_batch(cfg, kind, m, task, int(train["batch_size"]), "cpu")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for method, task, stage in CASES:
        built = {p: build(a.profile, p, method, task, stage) for p in ("fp32", "bf16")}
        times = {p: [] for p in built}
        for p, (s, batch) in built.items():  # warm-up
            s.step(batch, 0)
        for r in range(a.rounds):
            for p, (s, batch) in built.items():
                for i in range(a.steps):
                    t = time.perf_counter()
                    s.step(batch, 1 + r * a.steps + i)
                    times[p].append(time.perf_counter() - t)
        med = {p: statistics.median(v) for p, v in times.items()}
        row = {"method": method, "task": task, "stage": stage,
               "batch": int(built["fp32"][1]["lq"].shape[0]),
               "fp32_s": round(med["fp32"], 4), "bf16_s": round(med["bf16"], 4),
               "speedup": round(med["fp32"] / med["bf16"], 2)}
        rows.append(row)
        print(f"{method}/{task}/{stage}: fp32 {row['fp32_s']:.3f} s, bf16 {row['bf16_s']:.3f} s "
              f"per step ({row['speedup']:.2f}x)", flush=True)
    out = {"profile": a.profile, "threads": a.threads, "native_bf16": native_bf16("cpu"),
           "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
           "rounds": a.rounds, "steps": a.steps, "rows": rows}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
