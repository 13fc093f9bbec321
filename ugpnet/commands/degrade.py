"""ugpnet degrade: the paper's degradation of a folder (denoise, deblur, sr), deterministic."""
from __future__ import annotations

import argparse
import json

HELP = "degrade a folder of images (denoise | deblur | sr) deterministically from a seed"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, choices=["denoise", "deblur", "sr"])
    p.add_argument("--seed", type=int, default=None,
                   help="base seed (default: degradations.seed of params.yaml)")
    p.add_argument("--in", dest="in_dir", required=True, metavar="DIR",
                   help="folder of clean images")
    p.add_argument("--out", dest="out_dir", required=True, metavar="DIR",
                   help="output folder: PNG with the input stems, manifest.json written last")
    p.add_argument("--sigma", type=float, default=None,
                   help="denoise: Gaussian std on [0,1] (default: degradations.denoise.sigma)")
    p.add_argument("--k", type=float, default=None,
                   help="denoise: Poisson scale k (default: degradations.denoise.k)")
    p.add_argument("--kernels", default=None, metavar="FILE.npy",
                   help="deblur (required): kernel bank written by 'ugpnet kernels'")
    p.add_argument("--scale", type=int, default=None,
                   help="sr: downsampling factor (default: degradations.sr.scale)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes (results are identical for any N; default: 1)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def config_degradations(args) -> dict | None:
    """``degradations`` of the resolved config, or None when no params file exists at all."""
    from ..config import find_params, load_config
    from ..errors import ConfigError

    try:
        return load_config(args)["degradations"]
    except ConfigError:
        if getattr(args, "params", None) is None:
            try:
                find_params(None)
            except ConfigError:
                return None  # no params.yaml anywhere: flags only
        raise


def resolve_options(args) -> dict:
    """Task options from the flags, missing ones from params.yaml (flags win)."""
    from ..errors import ConfigError

    needed = {"denoise": ["sigma", "k"], "deblur": [], "sr": ["scale"]}[args.task]
    opts = {"seed": args.seed}
    for key in needed:
        opts[key] = getattr(args, key)
    if any(v is None for v in opts.values()):
        deg = config_degradations(args)
        if deg is not None:
            if opts["seed"] is None:
                opts["seed"] = deg["seed"]
            for key in needed:
                if opts[key] is None:
                    opts[key] = deg[args.task][key]
    missing = [f"--{key}" for key, v in opts.items() if v is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not given and no params.yaml found: pass "
                          f"{' '.join(missing)} on the command line (paper: --seed 2023 "
                          f"--sigma 0.3 --k 30 --scale 8), or --params FILE.")
    if args.task == "deblur" and not args.kernels:
        raise ConfigError("--task deblur needs --kernels FILE.npy (make one with: ugpnet kernels "
                          "--out FILE.npy --n 1000 --resolution 512 --seed 0)")
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    return opts


def run(args) -> int:
    from ..degradations import degrade_folder

    opts = resolve_options(args)
    manifest = degrade_folder(args.task, opts["seed"], args.in_dir, args.out_dir,
                              sigma=opts.get("sigma"), k=opts.get("k"),
                              kernel_bank=args.kernels if args.task == "deblur" else None,
                              scale=opts.get("scale"), workers=args.workers,
                              progress=not args.no_progress)
    summary = {"task": manifest["task"], "seed": manifest["seed"], "count": manifest["count"],
               "out": str(args.out_dir), "params": manifest["params"]}
    print(json.dumps(summary, indent=2))
    return 0
