"""ugpnet table: assemble a paper table (CSV + plot) from evaluate JSONs."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "assemble Table 1 (CSV, JSON provenance, PNG plot) from evaluate JSONs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--which", default="table1", choices=["table1", "stages"],
                   help="table1: the paper's Table 1; stages: UGPNet's x_reg/x_syn/x_hat on val")
    p.add_argument("--metrics-dir", required=True,
                   help="folder with <method>/<task>.json from `ugpnet evaluate`")
    p.add_argument("--out", required=True, help="CSV to write (a .json and .png go beside it)")


def run(args) -> int:
    from ..config import load_config
    from ..io import sha256_file
    from ..tables import plot_table, table1, write_csv

    cfg = load_config(args)
    if args.which == "stages":
        return _stages(cfg, args)
    t = cfg["table1"]
    records = []
    for method in t["methods"]:
        for task in t["tasks"]:
            if task in cfg["methods"][method]["tasks"]:
                records.append((method, task, Path(args.metrics_dir) / method / f"{task}.json"))
    df = table1(records, cfg["metrics"]["names"])
    meta = {"profile": cfg["profile"], "note": _note(cfg),
            "sources": {f"{m}/{task}": {"file": str(p), "sha256": sha256_file(p)}
                        for m, task, p in records}}
    write_csv(df, args.out, meta)
    plot_table(df, Path(args.out).with_suffix(".png"),
               f"Table 1 ({cfg['profile']} profile: {_note(cfg)})")
    print(df.round(4).to_string())
    return 0


def _note(cfg) -> str:
    if cfg["data"]["source"] == "bundled":
        return (f"small-scale run on scikit-image photographs at {cfg['data']['resolution']} px; "
                f"not the paper's FFHQ/CelebA-HQ numbers")
    return f"{cfg['data']['source']} data at {cfg['data']['resolution']} px"


def _stages(cfg, args) -> int:
    """x_reg vs x_syn vs x_hat of every UGPNet method on the validation split (long CSV)."""
    from ..tables import stage_summary

    methods = [m for m in cfg["table1"]["methods"] if cfg["methods"][m]["kind"] == "ugpnet"]
    records = [(m, task, o, Path(args.metrics_dir) / m / task / f"{o}.json")
               for m in methods for task in cfg["methods"][m]["tasks"]
               for o in ("x_reg", "x_syn", "x_hat")]
    df = stage_summary(records)
    from ..io import atomic_path

    with atomic_path(args.out, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    print(df.round(4).to_string(index=False))
    return 0
