"""ugpnet evaluate: PSNR / SSIM / LPIPS / FID of restored images against their ground truth.

Two modes: a folder (``--pred DIR --gt DIR``: one ``ugpnet-evaluation/1`` record), or a method of
the run (``--method M --task T``: every folder the plan says, in one process, into one
``ugpnet-evaluations/1`` file; the metrics from the configuration)."""
from __future__ import annotations

import argparse
import os

from . import add_threads_option

HELP = "score restored images against ground truth (PSNR, SSIM, LPIPS, FID) into a JSON file"

FOLDER_DEFAULTS = {"metrics": "psnr,ssim,lpips,fid", "lpips_net": "alex", "fid_ref": "gt"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    folder = p.add_argument_group("a folder")
    folder.add_argument("--pred", metavar="DIR", help="folder of restored images (PNG)")
    folder.add_argument("--gt", metavar="DIR",
                        help="folder of ground-truth images; paired with --pred by file name")
    folder.add_argument("--metrics", default=None, metavar="LIST",
                        help="comma-separated subset of psnr,ssim,lpips,fid (default: all)")
    folder.add_argument("--gt-manifest", default=None, metavar="FILE",
                        help="manifest.json of the ground truth, recorded with its sha256 "
                             "(default: the one in --gt or its parent folder)")
    folder.add_argument("--lpips-net", default=None, choices=["alex", "vgg"],
                        help="LPIPS backbone (v0.1 linear weights; default: alex)")
    folder.add_argument("--fid-ref", default=None, metavar="gt|PATH.npz|DIR",
                        help="FID reference: 'gt' = the paired ground-truth folder (statistics "
                             "cached), an .npz with mu/sigma (e.g. FFHQ statistics from "
                             "pytorch-fid --save-stats), or another image folder (default: gt)")
    run_ = p.add_argument_group(
        "a method of the run", "every output of the method on the splits the plan says "
        "(ugpnet.plan: evaluation_splits), restored folders and ground truth from the plan, "
        "metrics, LPIPS net and FID reference from the configuration (metrics.*)")
    run_.add_argument("--method", default=None,
                      help="a method defined in params.yaml, or several, comma-separated (one "
                           "process scores them all, each into its own default file)")
    run_.add_argument("--task", default=None, choices=["denoise", "deblur", "sr"])
    p.add_argument("--out", default=None, metavar="FILE.json",
                   help="result file, written atomically (a method: default "
                        "<paths.results>/metrics/<method>/<task>.json)")
    p.add_argument("--device", default="cpu", help="torch device for LPIPS/FID (default: cpu)")
    p.add_argument("--fid-batch-size", type=int, default=50, metavar="N",
                   help="images per Inception forward pass (default: 50)")
    add_threads_option(p)
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

    plan_mode = args.method is not None or args.task is not None
    if plan_mode and (args.pred or args.gt):
        raise ConfigError("give either --pred DIR --gt DIR (a folder) or --method M --task T (a "
                          "method of the run), not both.")
    if plan_mode:
        return _run_method(args)
    if not (args.pred and args.gt and args.out):
        raise ConfigError("ugpnet evaluate needs --pred DIR --gt DIR --out FILE.json (a folder), "
                          "or --method M --task T (a method of the run).")
    return _run_folder(args)


def _run_folder(args) -> int:
    """One folder. A restored folder must hold exactly what its restore manifest records; a
    folder no restore manifest vouches for (a user's own) is scored with a loud warning and a
    note in ``protocol.notes``."""
    import sys

    from ..metrics.evaluate import evaluate_dirs, parse_metrics, print_summary, write_evaluation
    from ..provenance import evaluation_provenance
    from ..restore import check_restored
    from ..training.common import set_threads

    opt = {k: getattr(args, k) if getattr(args, k) is not None else v
           for k, v in FOLDER_DEFAULTS.items()}
    metrics = parse_metrics(opt["metrics"])
    check_out_path(args.out)  # before any metric is computed
    unverified = check_restored(args.pred)
    if unverified:
        print(f"ugpnet evaluate: WARNING: {unverified}", file=sys.stderr)
    set_threads(args.threads)
    result = evaluate_dirs(args.pred, args.gt, metrics=metrics, lpips_net=opt["lpips_net"],
                           fid_ref=opt["fid_ref"], device=args.device,
                           progress=not args.no_progress, fid_batch_size=args.fid_batch_size)
    if unverified:
        result["protocol"]["notes"].append(unverified)
    result["protocol"]["provenance"] = evaluation_provenance(args.pred, args.gt, args.gt_manifest)
    write_evaluation(args.out, result)
    print_summary(result)
    print(f"wrote {args.out}")
    return 0


def _run_method(args) -> int:
    """Every folder of :meth:`~ugpnet.plan.Plan.evaluation_splits`: all folders are checked
    (existence, pairing, headers) before the first metric; LPIPS and Inception load once."""
    from ..config import load_config
    from ..errors import ConfigError
    from ..metrics.evaluate import (evaluation_bundle, inspect_dirs, parse_metrics,
                                    print_summary, score_dirs, write_evaluation)
    from ..plan import Plan
    from ..provenance import evaluation_provenance
    from ..training.common import set_threads

    if args.method is None or args.task is None:
        raise ConfigError("a method of the run needs both --method and --task.")
    given = [f"--{k.replace('_', '-')}" for k in (*FOLDER_DEFAULTS, "gt_manifest")
             if getattr(args, k) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: with --method/--task these come from the "
                          f"configuration (metrics.names, metrics.lpips_net, metrics.fid_ref) and "
                          f"the plan; change them there, e.g. --set metrics.lpips_net=vgg.")
    methods = [m for m in args.method.split(",") if m]
    if len(methods) != len(set(methods)) or not methods:
        raise ConfigError(f"--method {args.method!r}: give one method or several distinct ones, "
                          f"comma-separated")
    if len(methods) > 1 and args.out:
        raise ConfigError("--out names one file: with several methods each is written to its "
                          "own default file (<paths.results>/metrics/<method>/<task>.json)")
    plan = Plan.of(load_config(args))
    mcfg = plan.cfg["metrics"]
    metrics = parse_metrics(mcfg["names"])
    # every method's folders are checked before the first metric is computed
    todo = []
    for method in methods:
        out = args.out or plan.metrics_file(method, args.task)
        check_out_path(out)
        folders = _restored_folders(plan, method, args.task)
        plan.check_restored_models(method, args.task)  # the model each folder names: ours
        todo.append((method, out, {key: inspect_dirs(pred, gt)
                                   for key, (pred, gt) in folders.items()}))
    set_threads(args.threads)
    for method, out, inspected in todo:
        splits: dict[str, dict[str, dict]] = {}
        for (split, output), pairs in inspected.items():
            result = score_dirs(pairs, metrics, lpips_net=mcfg["lpips_net"],
                                fid_ref=plan.fid_ref(split), device=args.device,
                                progress=not args.no_progress,
                                fid_batch_size=args.fid_batch_size,
                                fid_bootstrap=mcfg.get("fid_bootstrap") if split == "test" else None)
            result["protocol"]["provenance"] = evaluation_provenance(
                pairs.pred_dir, pairs.gt_dir, plan.gt_manifest())
            splits.setdefault(split, {})[output] = result
            print(f"{method}/{args.task} {split} {output}: ", end="")
            print_summary(result)
        write_evaluation(out, evaluation_bundle(method, args.task, splits))
        print(f"wrote {out}")
    return 0


def _restored_gap(plan, method: str, task: str, split: str, output: str,
                  first: bool) -> list[str]:
    """Why the restored folder of ``output`` cannot be scored ([] when it can); a missing or
    foreign manifest is said once per split (``first``)."""
    from pathlib import Path

    from ..io import read_json_or_none
    from ..restore import is_restore_manifest, mismatch

    manifest = Path(plan.restored_manifest(method, task, split))
    pred = plan.restored_dir(method, task, split, output)
    record = read_json_or_none(manifest)
    if not manifest.is_file():
        return [f"{manifest.parent} ({split} split: no manifest.json, so not restored or "
                f"unfinished)"] if first else []
    if not is_restore_manifest(record):
        return [f"{manifest} ({split} split: not a manifest of ugpnet restore)"] if first else []
    if not Path(pred).is_dir():
        return [f"{pred} ({split} split, output {output}: the folder does not exist)"]
    wrong = mismatch(pred, manifest, record, output)
    return [f"{pred} ({split} split, output {output}: not the files its restore manifest "
            f"records: {wrong})"] if wrong else []


def _restored_folders(plan, method, task: str) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(split, output): (restored folder, ground-truth folder)}``; DataError naming every
    restored folder that is missing, unfinished (no manifest.json) or not exactly the files its
    restore manifest records (names and sha256: no mixed or changed folder is scored), before
    any is read."""
    from ..errors import DataError

    folders, missing, redo = {}, [], []
    for split, outputs in plan.evaluation_splits(method, task).items():
        gaps = []
        for output in outputs:
            pred = plan.restored_dir(method, task, split, output)
            folders[(split, output)] = (pred, plan.gt_dir(split))
            gaps += _restored_gap(plan, method, task, split, output, first=not gaps)
        missing += gaps
        redo += [split] if gaps else []
    if missing:
        model = plan.final_model(method, task)
        checkpoint = f" --checkpoint {model}" if model else ""
        commands = "\n".join(
            f"  ugpnet restore --method {method} --task {task}{checkpoint} --in "
            f"{plan.lq_dir(task, split)} --out {plan.restored_dir(method, task, split)} "
            f"--intermediate" for split in redo)
        lines = "\n".join(f"  - {m}" for m in missing)
        raise DataError(f"{method}/{task}: restored folders to evaluate are missing, "
                        f"unfinished or mixed:\n{lines}\n"
                        f"Restore them first (the workflow does: snakemake --cores all "
                        f"results/table1.csv):\n{commands}")
    return folders
