"""ugpnet train: train a method for a task (all its stages, or one)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train a method for a task (stages in order; finished stages are kept; resumes)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help="method name in params.yaml (e.g. nafnet, ugpnet)")
    p.add_argument("--task", required=True, choices=["denoise", "deblur", "sr"])
    p.add_argument("--stage", default=None,
                   help="one stage only (regression: train; ugpnet: restoration, synthesis, fusion)")
    p.add_argument("--data", default=None, help="prepared data folder (default: paths.data)")
    p.add_argument("--runs", default=None,
                   help="runs folder; the run goes to RUNS/<method>/<task>/<stage> (default: paths.runs)")
    p.add_argument("--prior", default=None,
                   help="StyleGAN2 prior checkpoint (default: stylegan2.checkpoint, or the smoke "
                        "profile's pretrained prior in RUNS/prior/model.pt)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..config import fmt_path, load_config
    from ..methods import check_task, kind_of, stages
    from ..training.common import resolve_device, seed_everything, set_threads

    cfg = load_config(args)
    check_task(cfg, args.method, args.task)
    set_threads(args.threads)
    device = resolve_device(cfg["device"])
    data = Path(args.data or fmt_path(cfg["paths"]["data"], cfg))
    runs = Path(args.runs or fmt_path(cfg["paths"]["runs"], cfg))
    kind = kind_of(cfg, args.method)
    todo = stages(cfg, args.method)
    if args.stage:
        if args.stage not in todo:
            from ..errors import ConfigError

            raise ConfigError(f"method '{args.method}' has stages {todo}, not '{args.stage}'")
        todo = [args.stage]
    for stage in todo:
        out = runs / args.method / args.task / stage
        if (out / "model.pt").exists() and not args.stage:
            print(f"{out}: already finished (model.pt exists)")
            continue
        seed_everything(cfg["data"]["seed"])
        summary = kind.train(cfg, args.method, args.task, stage, data, out, device,
                             progress=not args.no_progress, runs=runs, prior=args.prior)
        print(f"{out}: selected iteration {summary['selected_iter']} on the val split "
              f"({summary['select_metric']} = {summary['val'][summary['select_metric']]:.4f})")
    return 0
