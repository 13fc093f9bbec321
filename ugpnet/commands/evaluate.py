"""ugpnet evaluate: PSNR / SSIM / LPIPS / FID of a prediction folder against its ground truth."""
from __future__ import annotations

import argparse
import os

HELP = "score restored images against ground truth (PSNR, SSIM, LPIPS, FID) into a JSON file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, metavar="DIR", help="folder of restored images (PNG)")
    p.add_argument("--gt", required=True, metavar="DIR",
                   help="folder of ground-truth images; paired with --pred by file name")
    p.add_argument("--metrics", default="psnr,ssim,lpips,fid", metavar="LIST",
                   help="comma-separated subset of psnr,ssim,lpips,fid (default: all)")
    p.add_argument("--out", required=True, metavar="FILE.json", help="result file (written atomically)")
    p.add_argument("--gt-manifest", default=None, metavar="FILE",
                   help="manifest.json of the ground truth, recorded with its sha256 (default: "
                        "the one in --gt or its parent folder)")
    p.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"],
                   help="LPIPS backbone (v0.1 linear weights; default: alex)")
    p.add_argument("--fid-ref", default="gt", metavar="gt|PATH.npz|DIR",
                   help="FID reference: 'gt' = the paired ground-truth folder (statistics cached), an "
                        ".npz with mu/sigma (e.g. FFHQ statistics from pytorch-fid --save-stats), or "
                        "another image folder (default: gt)")
    p.add_argument("--device", default="cpu", help="torch device for LPIPS/FID (default: cpu)")
    p.add_argument("--fid-batch-size", type=int, default=50, metavar="N",
                   help="images per Inception forward pass (default: 50)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def check_out_path(out) -> None:
    """DataError unless ``out`` can become the result file: not an existing folder, and no
    ancestor that exists is a plain file."""
    from pathlib import Path

    from ..errors import DataError

    p = Path(out)
    if p.is_dir():
        raise DataError(f"--out '{p}' is an existing folder; give a file name, e.g. "
                        f"--out {p / 'metrics.json'}.")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"--out '{p}': '{parent}' is a file, not a folder; choose a result "
                                f"path in a folder (e.g. --out {parent.parent / p.name}).")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise DataError(f"--out '{p}': folder '{parent}' is not writable; choose another "
                                f"--out.")
            break


def run(args) -> int:
    from ..errors import ConfigError
    from ..metrics.evaluate import evaluate_dirs, parse_metrics, print_summary, write_evaluation

    metrics = parse_metrics(args.metrics)
    check_out_path(args.out)  # before any metric is computed
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError("--threads must be at least 1.")
        import torch

        torch.set_num_threads(args.threads)
    result = evaluate_dirs(args.pred, args.gt, metrics=metrics, lpips_net=args.lpips_net,
                           fid_ref=args.fid_ref, device=args.device,
                           progress=not args.no_progress, fid_batch_size=args.fid_batch_size)
    from ..provenance import evaluation_provenance

    result["protocol"]["provenance"] = evaluation_provenance(args.pred, args.gt, args.gt_manifest)
    write_evaluation(args.out, result)
    print_summary(result)
    print(f"wrote {args.out}")
    return 0
