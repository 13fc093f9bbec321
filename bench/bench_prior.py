"""What the smoke prior's length buys: x_syn on val against the prior's pretraining iterations.

For each prior length N (``--iters``), pretrain the smoke StyleGAN2 prior for N iterations (the
DAG's ``pretrain_prior`` with ``priors.<the method's prior>.pretrain.total_iters = N``), then train UGPNet's
synthesis stage of ``--task`` from it exactly as the DAG does (same configuration, the DAG's own
restoration model, the stage's configured iterations), and record the val metrics of the final
x_syn (the synthesis stage validates x_syn; its ``val.jsonl``) and the seconds each step took.
Runs in a scratch folder; the DAG's runs are only read. Needs the DAG's restoration model of the
task (run ``snakemake --cores all results/table1.csv`` first).

    .venv/bin/python bench/bench_prior.py --iters 100,200,400 --task denoise \\
        --out bench/cpu-smoke-prior-curve.json
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", default="100,200,400", help="prior lengths, comma-separated")
    p.add_argument("--task", default="denoise")
    p.add_argument("--method", default="ugpnet")
    p.add_argument("--profile", default="smoke")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the DAG's smoke: 1)")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--out", required=True, help="JSON result")
    args = p.parse_args()

    import torch

    from ugpnet.config import load_config
    from ugpnet.methods import get_kind
    from ugpnet.plan import Plan
    from ugpnet.training.common import resolve_device, seed_everything, set_threads
    from ugpnet.training.prior import pretrain_prior

    cfg = load_config(profile=args.profile)
    plan = Plan.of(cfg)
    set_threads(args.threads)
    device = resolve_device(cfg["device"])
    work = Path(args.work or tempfile.mkdtemp(prefix="prior-curve-"))
    restoration = Path(plan.stage_model(args.method, args.task, "restoration"))
    if not restoration.exists():
        raise SystemExit(f"{restoration} does not exist: run the DAG first (README)")
    rows = []
    for n in [int(v) for v in args.iters.split(",")]:
        sg = copy.deepcopy(cfg["priors"][plan.mcfg(args.method).get("prior", "stylegan2")])
        sg["pretrain"]["total_iters"] = n
        seed_everything(cfg["data"]["seed"])
        t0 = time.perf_counter()
        pretrain_prior(sg, Path(plan.gt_root()), work / f"prior-{n}", device,
                       seed=cfg["data"]["seed"], progress=False)
        prior_s = time.perf_counter() - t0
        ctx = plan.context(args.method, args.task, "synthesis", device=device, progress=False,
                           overrides={"prior": str(work / f"prior-{n}" / "model.pt")})
        ctx.out = work / f"synthesis-{n}"
        seed_everything(cfg["data"]["seed"])
        t0 = time.perf_counter()
        get_kind(plan.mcfg(args.method)["kind"]).train_stage(ctx)
        synthesis_s = time.perf_counter() - t0
        val = [json.loads(line) for line in (ctx.out / "val.jsonl").read_text().splitlines()]
        last = val[-1]
        row = {"prior_iters": n, "prior_seconds": round(prior_s, 1),
               "synthesis_iters": last["iter"], "synthesis_seconds": round(synthesis_s, 1),
               **{f"x_syn_val_{k}": last[k] for k in ("psnr", "ssim", "lpips") if k in last}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"what": "x_syn (val) after the synthesis stage, per smoke prior length",
              "profile": args.profile, "task": args.task, "threads": args.threads,
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
