"""ugpnet kernels: a bank of random camera-shake motion-blur kernels (.npy + .json manifest)."""
from __future__ import annotations

import argparse
import json

HELP = "generate a bank of motion-blur kernels (FILE.npy float32 [N,K,K] + FILE.json manifest)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="FILE.npy",
                   help="bank file; its manifest is written next to it as FILE.json (last)")
    p.add_argument("--n", type=int, default=None,
                   help="number of kernels (default: degradations.deblur.n_kernels)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size", type=int, default=None, metavar="K",
                      help="kernel size in pixels (odd)")
    size.add_argument("--resolution", type=int, default=None, metavar="R",
                      help="image resolution: K = odd integer nearest 71*R/512, at least 7 "
                           "(default: data.resolution of params.yaml)")
    p.add_argument("--seed", type=int, default=None,
                   help="bank seed (default: degradations.deblur.bank_seed)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    import sys

    from ..degradations.motion import kernel_size_for, write_kernel_bank
    from ..errors import ConfigError
    from .degrade import config_degradations

    n, seed, size, resolution = args.n, args.seed, args.size, args.resolution
    base_size, base_res = 71, 512
    if n is None or seed is None or size is None:
        deg = config_degradations(args)
        if deg is not None:
            d = deg["deblur"]
            n = d["n_kernels"] if n is None else n
            seed = d["bank_seed"] if seed is None else seed
            base_size, base_res = d["kernel_size"], d["base_resolution"]
            if size is None and resolution is None:
                from ..config import load_config

                resolution = load_config(args)["data"]["resolution"]
    if size is None and resolution is not None:
        if resolution < 1:
            raise ConfigError("--resolution must be positive")
        size = kernel_size_for(resolution, base_size, base_res)
    missing = [flag for flag, v in (("--n", n), ("--seed", seed), ("--size/--resolution", size))
               if v is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not given and no params.yaml found: pass them on "
                          f"the command line (paper: --n 1000 --resolution 512 --seed 0).")
    if n < 1:
        raise ConfigError("--n must be at least 1")
    if size < 3 or size % 2 == 0:
        raise ConfigError(f"kernel size must be odd and >= 3, got {size}")
    if not str(args.out).endswith(".npy"):
        raise ConfigError(f"--out must end with .npy, got '{args.out}'")
    manifest = write_kernel_bank(args.out, n, size, seed, resolution=resolution,
                                 progress=not args.no_progress and sys.stderr.isatty())
    print(json.dumps({"out": str(args.out), "n": n, "size": size, "seed": seed,
                      "stats": manifest["stats"]}, indent=2))
    return 0
