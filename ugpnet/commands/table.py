"""ugpnet table: assemble a paper table (CSV + plot) from evaluate JSONs."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "assemble Table 1 (CSV, JSON provenance, PNG plot) from evaluate JSONs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--which", default="table1", choices=["table1", "outputs"],
                   help="table1: the paper's Table 1 (test split); outputs: every output of the "
                        "methods that have several (e.g. intermediate images), on the val split")
    p.add_argument("--metrics-dir", default=None,
                   help="folder with <method>/<task>.json from `ugpnet evaluate` (default: "
                        "<paths.results>/metrics, or metrics_val for --which outputs)")
    p.add_argument("--out", required=True, help="CSV to write (table1: a .json and .png beside it)")


def run(args) -> int:
    from ..config import load_config
    from ..plan import Plan

    cfg = load_config(args)
    plan = Plan.of(cfg)
    if args.which == "outputs":
        return _outputs(plan, args)
    from ..io import sha256_file
    from ..tables import plot_table, table1, write_csv

    base = Path(args.metrics_dir) if args.metrics_dir else Path(plan.results) / "metrics"
    records = [(m, task, base / m / f"{task}.json") for m, task in plan.table_cells()]
    df = table1(records, cfg["metrics"]["names"])
    families = {m: plan.family(m) for m in df.index}
    meta = {"profile": cfg["profile"], "note": _note(cfg), "families": families,
            "sources": {f"{m}/{task}": {"file": str(p), "sha256": sha256_file(p)}
                        for m, task, p in records}}
    write_csv(df, args.out, meta, families=families)
    plot_table(df, Path(args.out).with_suffix(".png"),
               f"Table 1 ({cfg['profile']} profile: {_note(cfg)})")
    print(df.round(4).to_string())
    return 0


def _note(cfg) -> str:
    if cfg["data"]["source"] == "bundled":
        return (f"small-scale run on scikit-image photographs at {cfg['data']['resolution']} px; "
                f"not the paper's FFHQ/CelebA-HQ numbers")
    return f"{cfg['data']['source']} data at {cfg['data']['resolution']} px"


def _outputs(plan, args) -> int:
    """Each output of the methods that have several (intermediate images), on the val split."""
    from ..io import atomic_path
    from ..tables import stage_summary

    records = plan.val_output_records()
    if args.metrics_dir:
        records = [(m, t, o, str(Path(args.metrics_dir) / m / t / f"{o}.json"))
                   for m, t, o, _ in records]
    df = stage_summary(records)
    with atomic_path(args.out, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    print(df.round(4).to_string(index=False))
    return 0
