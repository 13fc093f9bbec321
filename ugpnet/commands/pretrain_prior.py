"""ugpnet pretrain-prior: train a small StyleGAN2 prior on the training split (offline profiles)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "pretrain a StyleGAN2 prior on the training split (when no pretrained one is given)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="prepared data folder (default: paths.data)")
    p.add_argument("--out", default=None, help="output folder (default: RUNS/prior)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ..config import fmt_path, load_config
    from ..training.common import resolve_device, seed_everything, set_threads
    from ..training.prior import pretrain_prior

    cfg = load_config(args)
    set_threads(args.threads)
    seed_everything(cfg["data"]["seed"])
    data = Path(args.data or fmt_path(cfg["paths"]["data"], cfg))
    out = Path(args.out or Path(fmt_path(cfg["paths"]["runs"], cfg)) / "prior")
    summary = pretrain_prior(cfg["stylegan2"], data, out, resolve_device(cfg["device"]),
                             seed=cfg["data"]["seed"], progress=not args.no_progress)
    print(f"prior written to {out / 'model.pt'} ({summary['total_iters']} iterations, "
          f"{summary['seconds']} s); samples: {out / 'samples.png'}")
    return 0
