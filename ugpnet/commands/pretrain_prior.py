"""ugpnet pretrain-prior: train a named StyleGAN2 prior on the training split (offline profiles)."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_threads_option

HELP = "pretrain a StyleGAN2 prior on the training split (when no pretrained one is given)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gt", default=None,
                   help="prepared ground-truth folder (train/, manifest.json; default: the plan's)")
    p.add_argument("--prior", default=None,
                   help="the prior to pretrain, a key of priors: in params.yaml (default: the "
                        "only one the configured methods read)")
    p.add_argument("--out", default=None,
                   help="output folder (default: RUNS/priors/<id>, id: the prior's settings)")
    p.add_argument("--restart", action="store_true",
                   help="start afresh: earlier state is moved to superseded-<hash>/")
    add_threads_option(p)
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ..config import load_config
    from ..plan import Plan
    from ..training.common import configure_backends, resolve_device, seed_everything, set_threads
    from ..training.prior import pretrain_prior

    from ..errors import ConfigError

    cfg = load_config(args)
    plan = Plan.of(cfg)
    name = args.prior
    if name is None:
        read = plan.priors_read() or sorted(cfg["priors"])
        if len(read) != 1:
            raise ConfigError(f"several priors could be meant ({', '.join(read)}): name one "
                              f"with --prior")
        name = read[0]
    if int(plan.prior_cfg(name)["pretrain"]["total_iters"]) < 1:
        raise ConfigError(f"priors.{name}.pretrain.total_iters is 0: no prior is pretrained, and "
                          f"a prior trained for 0 iterations is never written. Set "
                          f"priors.{name}.checkpoint to your pretrained StyleGAN2 (README), or "
                          f"give priors.{name}.pretrain.total_iters > 0.")
    set_threads(args.threads)
    seed_everything(cfg["data"]["seed"])
    gt = Path(args.gt or plan.gt_root())
    out = Path(args.out or Path(plan.pretrained_prior(name)).parent)
    print(f"prior '{name}' -> {out}", flush=True)
    device = resolve_device(cfg["device"])
    configure_backends(cfg.get("cuda"), device)
    summary = pretrain_prior(cfg["priors"][name], gt, out, device,
                             seed=cfg["data"]["seed"], progress=not args.no_progress,
                             restart=args.restart, logging=cfg.get("logging"))
    print(f"prior: {out / 'model.pt'} ({summary['total_iters']} iterations, "
          f"{summary['seconds']} s); samples: {out / 'samples.png'}")
    return 0
