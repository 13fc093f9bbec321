"""ugpnet prepare: build the ground-truth train/val/test splits (manifest.json written last)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "prepare the ground-truth train/val/test images (bundled photos or FFHQ/CelebA-HQ folders)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=["bundled", "folder"], default=None,
                   help="bundled: scikit-image photographs (offline); folder: FFHQ + CelebA-HQ "
                        "(default: data.source)")
    p.add_argument("--out", default=None,
                   help="output folder: OUT/{train,val,test}/*.png + OUT/manifest.json "
                        "(default: <paths.data>/gt-<id>, see ugpnet.plan)")
    p.add_argument("--resolution", type=int, default=None, help="square size in px (default: "
                   "data.resolution)")
    p.add_argument("--seed", type=int, default=None, help="bundled crops seed (default: data.seed)")
    p.add_argument("--ffhq", default=None, metavar="DIR",
                   help="FFHQ images1024x1024/ (default: data.folder.ffhq)")
    p.add_argument("--celebahq", default=None, metavar="DIR",
                   help="CelebA-HQ-img/ (default: data.folder.celebahq)")
    p.add_argument("--val-count", type=int, default=None,
                   help="validation images = last N FFHQ ids (default: data.folder.val_count)")
    p.add_argument("--test-count", type=int, default=None,
                   help="test images = last N CelebA-HQ ids (default: data.folder.test_count)")
    p.add_argument("--test-first-id", type=int, default=None,
                   help="take the test ids from this CelebA-HQ id on instead of the last ones")
    p.add_argument("--allow-partial", action="store_true", default=None,
                   help="accept FFHQ/CelebA-HQ subsets (recorded in the manifest; default: "
                        "data.folder.allow_partial)")
    p.add_argument("--upscale", action="store_true",
                   help="Lanczos-upsample images smaller than the resolution instead of failing")
    p.add_argument("--workers", type=int, default=1, help="conversion processes (folder source)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..config import load_config
    from ..data.prepare import prepare_bundled, prepare_folder
    from ..plan import Plan

    cfg = load_config(args)
    data = cfg["data"]
    source = args.source or data["source"]
    resolution = args.resolution or data["resolution"]
    out = Path(args.out) if args.out else Path(Plan.of(cfg).gt_root())
    progress = not args.no_progress
    if source == "bundled":
        seed = data["seed"] if args.seed is None else args.seed
        man = prepare_bundled(out, resolution=resolution, counts=data["bundled"], seed=seed,
                              progress=progress)
    else:
        folder = data.get("folder") or {}
        allow = args.allow_partial if args.allow_partial is not None else \
            bool(folder.get("allow_partial", False))
        man = prepare_folder(
            out, ffhq_dir=args.ffhq or folder.get("ffhq"),
            celebahq_dir=args.celebahq or folder.get("celebahq"), resolution=resolution,
            val_count=_pick(args.val_count, folder.get("val_count", 1000)),
            test_count=_pick(args.test_count, folder.get("test_count", 3000)),
            allow_partial=allow, workers=args.workers, progress=progress, upscale=args.upscale,
            test_first_id=args.test_first_id)
    counts = ", ".join(f"{s} {man['splits'][s]['count']}" for s in ("train", "val", "test"))
    partial = " (PARTIAL: see manifest)" if man.get("partial") else ""
    print(f"{out}: {source} data at {resolution}x{resolution}: {counts}{partial}; "
          f"manifest {out / 'manifest.json'}")
    return 0


def _pick(flag, configured):
    return configured if flag is None else flag
