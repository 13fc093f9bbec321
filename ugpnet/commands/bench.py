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
    p.add_argument("--runs", type=int, default=3,
                   help="timed runs after one warm-up (median); 0 with --train --no-inference: "
                        "only the warm-up step of each stage")
    add_threads_option(p)
    p.add_argument("--train", action="store_true",
                   help="also time one training iteration of every stage (batch 1)")
    p.add_argument("--no-inference", dest="inference", action="store_false",
                   help="skip the inference timings (with --train: only the training stages)")
    p.add_argument("--check", action="store_true",
                   help="also check each stage's first training step (every loss term finite, "
                        "every optimiser reached by a non-zero finite gradient) and that "
                        "inference outputs are finite; exit 1 when one fails (bench/gpu_check.sh)")
    p.add_argument("--one-process", action="store_true",
                   help="run the measurements one after the other in one worker process "
                        "(replaced after an error) instead of a fresh process each; CUDA peak "
                        "memory stays per measurement, CPU peak RSS becomes the process's")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="start no measurement after this many seconds (the rest: skipped)")
    p.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                   help="kill a measurement that gives no result within this many seconds "
                        "(recorded as an error)")
    p.add_argument("--out", required=True, metavar="FILE.json", help="result file (atomic)")


def _list(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def run(args) -> int:
    import signal

    from ..config import load_config
    from ..errors import ConfigError

    if args.runs < (1 if args.inference else 0):
        raise ConfigError("--runs must be at least 1 (0 only with --train --no-inference: one "
                          "step per stage, its time first_step_s)")
    if not args.inference and not args.train:
        raise ConfigError("--no-inference without --train: nothing to measure")
    cfg = load_config(args)
    if args.size:  # the data and every prior at that size
        sets = [f"data.resolution={args.size}"] + [f"priors.{name}.size={args.size}"
                                                    for name in cfg["priors"]]
        cfg = load_config(args, sets=sets)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device {args.device}: CUDA is not available here")

    def terminated(signum, frame):  # `timeout` sends SIGTERM: stop the workers on the way out
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        return _bench(args, cfg)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _bench(args, cfg) -> int:
    import sys

    from ..bench import run_bench
    from ..io import atomic_write_json

    def save(result, complete):
        atomic_write_json(args.out, {**result, "profile": cfg["profile"], "complete": complete})

    result = run_bench(cfg, _list(args.methods), _list(args.tasks), cfg["data"]["resolution"],
                       args.device, args.runs, args.threads, args.train,
                       progress=lambda s: print(s, file=sys.stderr, flush=True),
                       inference=args.inference, check=args.check,
                       one_process=args.one_process, budget_s=args.budget,
                       cell_timeout_s=args.cell_timeout,
                       on_result=lambda partial: save(partial, False))
    result["profile"] = cfg["profile"]
    save(result, True)
    for r in result["inference"]:
        if "error" in r or "skipped" in r:
            print(f"{r['method']:>8} {r['task']:>7}  "
                  + (f"error: {r['error']}" if "error" in r else f"skipped: {r['skipped']}"))
            continue
        ratio = f"{r['ratio_to_nafnet']:.2f}x NAFNet" if "ratio_to_nafnet" in r else ""
        mem = (f"{r['peak_mem_mb']:8.0f} MB" if "peak_mem_mb" in r
               else f"{r['process_peak_rss_mb']:8.0f} MB (process)")
        failed = "" if r.get("ok", True) else f"  FAILED: {'; '.join(r.get('failures', []))}"
        print(f"{r['method']:>8} {r['task']:>7}  {r['params'] / 1e6:7.2f} M  "
              f"{r['median_s']:7.3f} s  {mem}  {ratio}{failed}")
    for r in result["train"]:
        what = (f"{r['it_per_s']:.3f} it/s ({r['sec_per_iter']:.2f} s/iter, {r['precision']})"
                if "it_per_s" in r else
                f"first step {r['first_step_s']:.2f} s ({r['precision']})" if "first_step_s" in r
                else r.get("note") or r.get("error") or r.get("skipped"))
        if args.check and not r.get("ok"):
            what = f"FAILED: {'; '.join(r.get('failures', [])) or what}"
        print(f"train {r['method']}/{r['task']}/{r['stage']}: {what}")
    print(f"wrote {args.out}")
    failed = [r for r in result["inference"] + result["train"] if args.check and not r.get("ok")]
    if failed:
        print(f"check: {len(failed)} measurement(s) failed or were skipped", file=sys.stderr)
    return 1 if failed else 0
