"""ugpnet table: assemble a paper table (CSV + plot) from the metric files of ugpnet evaluate."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("assemble Table 1 (CSV, JSON provenance, PNG plot, Markdown and HTML), the outputs "
        "tables or the timing table from the workflow's results")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--which", default="table1",
                   choices=["table1", "table2", "table3", "outputs", "timing"],
                   help="table1: the paper's Table 1 (test split); table3: the ablations "
                        "(table3: in params.yaml; a .md and .json beside the CSV); outputs: "
                        "every output of the "
                        "methods that have several (e.g. intermediate images) and the degraded "
                        "input of their tasks, on --split; timing: seconds and peak memory of "
                        "every job of the workflow, per rule, from its Snakemake benchmark "
                        "files; table2: parameters and inference time (from --bench) beside the "
                        "paper's Table 2")
    p.add_argument("--bench", default=None, metavar="FILE.json",
                   help="--which table2: the `ugpnet bench` result to read (the workflow's "
                        "table2 rule makes it)")
    p.add_argument("--split", default=None, choices=["val", "test"],
                   help="--which outputs: the split (default: val)")
    p.add_argument("--metrics-dir", default=None,
                   help="folder with <method>/<task>.json from `ugpnet evaluate --method --task` "
                        "(default: <paths.results>/metrics)")
    p.add_argument("--out", required=True, help="CSV to write (table1: a .json and .png beside it)")


def run(args) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from ..plan import Plan

    cfg = load_config(args)
    plan = Plan.of(cfg)
    if args.split is not None and args.which != "outputs":
        raise ConfigError(f"--split is for --which outputs; --which {args.which} "
                          f"{'is the test split' if args.which == 'table1' else 'has no split'}.")
    if args.which == "outputs":
        return _outputs(plan, args)
    if args.which == "timing":
        return _timing(plan, args)
    if args.which == "table3":
        return _table3(plan, args)
    if args.which == "table2":
        return _table2(plan, args)
    if args.bench is not None:
        raise ConfigError("--bench is for --which table2")
    from ..provenance import describe_code
    from ..tables import options_footnote, plot_table, table1, write_csv

    # the method's result (its first output) on the test split, from its metric file
    records = [(m, task, plan.outputs(m)[0], _metrics_file(plan, args, m, task))
               for m, task in plan.table_cells()]
    df = table1(records, cfg["metrics"]["names"])
    families = {m: plan.family(m) for m in df.index}
    sources = {f"{m}/{task}": _source(p, output) for m, task, output, p in records}
    codes = sorted({describe_code(s["code"]) for s in sources.values() if s.get("code")})
    options = {m: plan.options_beyond_paper(m) for m in df.index}
    meta = {"profile": cfg["profile"], "experiment": cfg["experiment"], "note": _note(cfg),
            "options_beyond_paper": options, "families": families, "code_versions": codes,
            "sources": sources}
    if len(codes) > 1 or any("(dirty)" in c for c in codes):
        meta["warning"] = ("the cells were made by different or uncommitted code versions "
                           "(code_versions); code changes do not rerun finished work, see "
                           "docs/RUNS.md")
        print(f"warning: {meta['warning']}: {codes}")
    # the CSV (the workflow's output) is the completion marker: an old one goes first, the PNG
    # and the JSON are written before it, so a kill never leaves a CSV without its companions
    Path(args.out).unlink(missing_ok=True)
    plot_table(df, Path(args.out).with_suffix(".png"),
               f"Table 1 ({cfg['profile']} profile, experiment {cfg['experiment']}: "
               f"{_note(cfg)})", footnote=options_footnote(options))
    from ..io import atomic_path, atomic_write_json

    # numbers only, for `dvc metrics show` (the JSON above holds the provenance)
    atomic_write_json(Path(args.out).with_name(Path(args.out).stem + "_metrics.json"),
                      _numeric(df))
    # uncertainty: 95 % bootstrap intervals over the test images and the paired Wilcoxon test
    # of the methods of table1.compare (UGPNet) against each other method
    from ..tables import cell_stats, table1_markdown

    ours = [m for m in cfg["table1"].get("compare", []) if m in df.index]
    stats = cell_stats(records, cfg["metrics"]["names"], ours)
    out = Path(args.out)
    with atomic_path(out.with_name(out.stem + "_stats.csv"), suffix=".csv") as tmp:
        stats.to_csv(tmp, index=False, float_format="%.6g")
    md = table1_markdown(df, stats, families, options,
                         f"Table 1 ({cfg['profile']} profile, experiment {cfg['experiment']}: "
                         f"{_note(cfg)}; test split)")
    _write_pages(md, out)
    if cfg["table1"].get("vs_paper"):
        _vs_paper(cfg, stats, out)
    write_csv(df, args.out, meta, families=families, options=options)
    print(df.round(4).to_string())
    if options_footnote(options):
        print(options_footnote(options))
    return 0


def _vs_paper(cfg, stats, out: Path) -> None:
    """``table1_vs_paper.{csv,md}`` beside Table 1: ours against the paper's published numbers
    (ugpnet/published/wacv2024.yaml), cell by cell (table1.vs_paper: the paper profile)."""
    from ..io import atomic_path
    from ..published import paper_numbers, table1_value
    from ..tables import table1_vs_paper, vs_paper_markdown

    paper = paper_numbers()["table1"]
    df = table1_vs_paper(stats, table1_value)
    source = (f"{paper.get('transcribed_from') or 'not transcribed'} "
              f"(ugpnet/published/wacv2024.yaml: {paper['status']})")
    title = (f"Table 1 against the paper ({cfg['profile']} profile, experiment "
             f"{cfg['experiment']}: {_note(cfg)}; test split)")
    base = out.with_name(out.stem + "_vs_paper")
    md = vs_paper_markdown(df, title, source)
    _write_pages(md, base)
    with atomic_path(base.with_suffix(".csv"), suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    if paper["status"] == "not_transcribed":
        print("note: the paper's Table 1 numbers are not transcribed in "
              "ugpnet/published/wacv2024.yaml: table1_vs_paper shows ours only")


def _numeric(df) -> dict:
    """``{task: {method: {metric: value}}}`` of Table 1 (finite numbers only)."""
    import math

    out: dict = {}
    for method, row in df.iterrows():
        for (task, metric), value in row.items():
            if value == value and math.isfinite(value):
                out.setdefault(task, {}).setdefault(method, {})[metric] = round(float(value), 6)
    return out


def _metrics_file(plan, args, method: str, task: str) -> str:
    if args.metrics_dir:
        return str(Path(args.metrics_dir) / method / f"{task}.json")
    return plan.metrics_file(method, task)


def _source(path: str, output: str) -> dict:
    """A table cell's metric file: its hash and the provenance its test record of ``output``
    records."""
    from ..io import sha256_file
    from ..metrics.evaluate import read_bundle_record

    out = {"file": str(path), "sha256": sha256_file(path), "output": output}
    prov = read_bundle_record(path, "test", output).get("protocol", {}).get("provenance", {})
    for key in ("checkpoint", "checkpoint_sha256", "gt_manifest_sha256", "input_manifest_sha256"):
        if key in prov:
            out[key] = prov[key]
    code = prov.get("restore_code") or prov.get("code")
    if code:
        out["code"] = code
    return out


def _note(cfg) -> str:
    if cfg["data"]["source"] == "bundled":
        return (f"small-scale run on scikit-image photographs at {cfg['data']['resolution']} px; "
                f"not the paper's FFHQ/CelebA-HQ numbers")
    return f"{cfg['data']['source']} data at {cfg['data']['resolution']} px"


def _outputs(plan, args) -> int:
    """Each output of the methods that have several (intermediate images), and the degraded
    input of their tasks, on one split."""
    from ..io import atomic_path
    from ..tables import stage_summary

    records = [(m, t, o, _metrics_file(plan, args, m, t)) for m, t, o, _ in plan.output_records()]
    df = stage_summary(records, args.split or "val")
    if len(df):
        df.insert(3, "options", ["; ".join(plan.options_beyond_paper(m, t))
                                 for m, t in zip(df["method"], df["task"])])
        # the reference row is the degraded input (the x_reg/x_hat bar to clear); tasks grouped
        ref = df["method"].map(lambda m: plan.family(m) == "reference")
        df.loc[ref, "output"] = "input"
        order = {t: i for i, t in enumerate(plan.cfg["table1"]["tasks"])}
        df = df.sort_values("task", key=lambda c: c.map(order), kind="stable")
    with atomic_path(args.out, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    print(df.round(4).to_string(index=False))
    return 0


def _timing(plan, args) -> int:
    """Per-job and per-rule wall time of the workflow (Snakemake ``benchmark:`` files)."""
    import pandas as pd

    from ..errors import DataError
    from ..io import atomic_path

    folder = Path(plan.logs) / "benchmarks"  # <rule>/<job>.tsv, one per job (workflow/rules)
    files = sorted(folder.glob("*/*.tsv"))
    if not files:
        raise DataError(f"no benchmark files in {folder}: run the workflow first")
    rows = []
    for f in files:
        rec = pd.read_csv(f, sep="\t").iloc[-1]
        rows.append({"job": f"{f.parent.name}/{f.stem}", "rule": f.parent.name,
                     "seconds": float(rec["s"]),
                     "max_rss_mb": float(rec.get("max_rss", float("nan")))})
    df = pd.DataFrame(rows).sort_values("seconds", ascending=False)
    with atomic_path(args.out, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.1f")
    per_rule = df.groupby("rule")["seconds"].agg(["count", "sum"]).sort_values("sum",
                                                                             ascending=False)
    print(per_rule.round(1).to_string())
    print(f"sum of job times: {df['seconds'].sum():.0f} s over {len(df)} jobs "
          f"(wall time is lower with --cores > 1)")
    return 0


def _table3(plan, args) -> int:
    """Table 3: the ablation rows (``table3:``) on their task, test split: the metrics, the
    options each row runs with, the stages it trained itself (the others are its parent's,
    :meth:`ugpnet.plan.Plan.stage_owner`) and the job-seconds they took (Snakemake benchmark
    files; empty when a stage was not trained by the workflow here, e.g. pulled with DVC)."""
    import pandas as pd

    from ..io import atomic_path, atomic_write_json
    from ..tables import METRIC_ORDER, record_mean

    cfg = plan.cfg
    t3 = cfg["table3"]
    metrics = [m for m in METRIC_ORDER if m in cfg["metrics"]["names"]]
    bench = Path(plan.logs) / "benchmarks"
    rows, sources = [], {}
    for method, task in plan.table3_cells():
        path = _metrics_file(plan, args, method, task)
        mean = record_mean(path, "test", plan.outputs(method)[0])
        owned = plan.owned_stages(method, task)
        seconds = [_bench_seconds(bench / "train" / f"{method}_{plan.task_folder(method, task, st)}"
                                  f"_{st}.tsv") for st in owned]
        rows.append({"group": t3["rows"][method]["group"], "row": t3["rows"][method]["row"],
                     "method": method,
                     "options": "; ".join(plan.options_beyond_paper_of(method, task)),
                     "trains": ", ".join(owned),
                     **{m: (float("nan") if mean.get(m) is None else float(mean[m]))
                        for m in metrics},
                     "train_job_s": (sum(seconds) if all(x is not None for x in seconds)
                                     else float("nan"))})
        sources[method] = _source(path, plan.outputs(method)[0])
    df = pd.DataFrame(rows)
    out = Path(args.out)
    numeric = {r["method"]: {k: round(r[k], 6) for k in metrics if r[k] == r[k]} for r in rows}
    meta = {"profile": cfg["profile"], "experiment": cfg["experiment"], "task": t3["task"],
            "split": "test", "note": _note(cfg), "sources": sources,
            "train_job_s": {r["method"]: (None if r["train_job_s"] != r["train_job_s"]
                                          else r["train_job_s"]) for r in rows}}
    out.unlink(missing_ok=True)  # the CSV is the completion marker: written last
    atomic_write_json(out.with_suffix(".json"), meta)
    atomic_write_json(out.with_name(out.stem + "_metrics.json"), {t3["task"]: numeric})
    shown = df.copy()
    for m in metrics:
        shown[m] = shown[m].map(lambda v: f"{v:.4f}" if m in ("ssim", "lpips") else f"{v:.2f}")
    shown["train_job_s"] = shown["train_job_s"].map(lambda v: "" if v != v else f"{v:.0f}")
    title = (f"Table 3 ({cfg['profile']} profile, experiment {cfg['experiment']}; "
             f"{t3['task']}, test split; {_note(cfg)})")
    md = (f"# {title}\n\n" + shown.to_markdown(index=False) + "\n\n"
          "`trains`: the stages the row trained itself; the others are its parent's "
          "(`variant_of`), shared, not retrained. `train_job_s`: seconds of those training "
          "jobs (Snakemake benchmarks). `options`: options beyond the paper and the ablated "
          "modules.\n")
    _write_pages(md, out)
    with atomic_path(out, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    print(shown.to_string(index=False))
    return 0


def _write_pages(md: str, base: Path) -> None:
    """A table for people: its Markdown (``base.md``) and the same as an HTML page
    (``base.html``, what ``snakemake --report`` shows), each written atomically."""
    from ..io import atomic_path
    from ..table_html import markdown_page

    for suffix, text in ((".md", md), (".html", markdown_page(md))):
        with atomic_path(base.with_suffix(suffix), suffix=suffix) as tmp:
            tmp.write_text(text, encoding="utf-8")


def _bench_seconds(path: Path) -> float | None:
    """The last attempt's seconds in a Snakemake benchmark file, None when there is none."""
    import pandas as pd

    if not path.is_file():
        return None
    try:
        return float(pd.read_csv(path, sep="\t").iloc[-1]["s"])
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _table2(plan, args) -> int:
    """Table 2: parameters and inference time of ``table2.methods`` on ``table2.task`` from a
    ``ugpnet bench`` file, beside the paper's (ugpnet/published/wacv2024.yaml)."""
    import json

    from ..errors import ConfigError, DataError
    from ..io import atomic_path, atomic_write_json, sha256_file
    from ..published import FILE as PAPER_FILE
    from ..published import paper_numbers
    from ..tables import table2, table2_markdown

    cfg = plan.cfg
    t2 = cfg.get("table2")
    if not t2:
        raise ConfigError("--which table2 needs a `table2:` block in params.yaml (methods, task, "
                          "profile, size, runs)")
    if not args.bench:
        raise ConfigError("--which table2 needs --bench FILE.json (a `ugpnet bench` result; the "
                          "workflow's table2 rule makes it: snakemake --cores all table2)")
    try:
        bench = json.loads(Path(args.bench).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{args.bench}: not a readable `ugpnet bench` result ({e}); rerun the "
                        f"bench (delete the file and run snakemake --cores all table2)") from None
    if not isinstance(bench.get("inference"), list):
        raise DataError(f"{args.bench}: no `inference` list: not a `ugpnet bench` result")
    paper = paper_numbers()["table2"]
    df = table2(bench, t2["methods"], t2["task"], paper["values"])
    meta = {"profile": cfg["profile"], "experiment": cfg["experiment"],
            "networks_of_profile": bench.get("profile"), "task": t2["task"],
            "device": bench.get("device"), "threads": bench.get("threads"),
            "size": bench.get("size"), "runs": bench.get("runs"),
            "machine": bench.get("machine"), "torch": bench.get("torch"),
            "code": bench.get("code"),
            "bench_file": {"file": str(args.bench), "sha256": sha256_file(args.bench)},
            "paper_device": paper.get("device"), "paper_size": paper.get("size"),
            "paper_status": paper["status"],
            "paper_source": f"{paper.get('transcribed_from') or 'not transcribed'} "
                            f"({PAPER_FILE.name}: {paper['status']})",
            "note": "random weights at the networks' paper-scale architecture: parameters are "
                    "exact, times are this machine's"}
    out = Path(args.out)
    out.unlink(missing_ok=True)  # the CSV is the completion marker: written last
    atomic_write_json(out.with_suffix(".json"), meta)
    title = (f"Table 2 (parameters and inference time; run under the {cfg['profile']} profile, "
             f"networks of the {bench.get('profile')} profile at {bench.get('size')} px)")
    md = table2_markdown(df, meta, title)
    _write_pages(md, out)
    with atomic_path(out, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.4g")
    print(df.drop(columns=["note"]).round(3).to_string(index=False))
    return 0
