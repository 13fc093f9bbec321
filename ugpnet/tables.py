"""Paper tables from the metric files of ``ugpnet evaluate --method --task``, plus a plot."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from .io import atomic_path

METRIC_ORDER = ("psnr", "ssim", "lpips", "fid")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "fid": False}
DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4, "fid": 1}  # decimals shown in the tables for people


def record_mean(path: str | Path, split: str, output: str) -> dict:
    """The means of ``output`` on ``split`` in a (method, task) metric file (``ugpnet
    evaluate --method --task``); DataError naming the file and the fix otherwise."""
    from .metrics.evaluate import read_bundle_record

    return read_bundle_record(path, split, output)["mean"]


def table1(records: Iterable[tuple[str, str, str, Path]], metrics: Iterable[str]) -> pd.DataFrame:
    """One row per method, one column per ``<task>/<metric>`` (paper Table 1 layout), test split.

    ``records``: (method, task, output shown, path to its metric file). A method that does not
    run a task leaves those cells empty (NaN), as in the paper.
    """
    metrics = [m for m in METRIC_ORDER if m in set(metrics)]
    rows: dict[str, dict] = {}
    tasks: list[str] = []
    for method, task, output, path in records:
        mean = record_mean(path, "test", output)
        if task not in tasks:
            tasks.append(task)
        for metric in metrics:
            value = mean.get(metric)
            rows.setdefault(method, {})[(task, metric)] = (float("inf") if value == "inf" else
                                                           float("nan") if value is None else
                                                           float(value))
    columns = pd.MultiIndex.from_tuples([(t, m) for t in tasks for m in metrics],
                                        names=["task", "metric"])
    df = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns)
    df.index.name = "method"
    return df


def options_column(options: Mapping[str, Iterable[str]], methods: Iterable[str]) -> list[str]:
    """The ``options`` cell of each method: its options beyond the paper, ``; ``-joined (empty
    for the official network; see :mod:`ugpnet.models.options`)."""
    return ["; ".join(options.get(m, ())) for m in methods]


def options_footnote(options: Mapping[str, Iterable[str]]) -> str:
    """One line naming every method that ran with options beyond the paper or departures from
    its authors' recipe (:meth:`ugpnet.methods.MethodKind.deviations`), or ``""``."""
    named = [f"{m}: {', '.join(o)}" for m, o in options.items() if o]
    return ("not the paper's networks or recipes as published; options beyond the paper and "
            "departures from the authors' recipes: " + "; ".join(named)) if named else ""


def write_csv(df: pd.DataFrame, path: str | Path, meta: Mapping | None = None,
              families: Mapping[str, str] | None = None,
              options: Mapping[str, Iterable[str]] | None = None) -> None:
    """Flat CSV: ``method, [family,] [options,] <task>_<metric>...``; ``meta`` goes to a JSON
    beside it, written first, so a CSV (the completion marker) always has its JSON."""
    flat = df.copy()
    flat.columns = [f"{t}_{m}" for t, m in df.columns]
    if options is not None:
        flat.insert(0, "options", options_column(options, flat.index))
    if families is not None:
        flat.insert(0, "family", [families.get(m, "") for m in flat.index])
    if meta is not None:
        from .io import atomic_write_json

        atomic_write_json(Path(path).with_suffix(".json"), dict(meta))
    with atomic_path(path, suffix=".csv") as tmp:
        flat.to_csv(tmp, float_format="%.4f")


def plot_table(df: pd.DataFrame, path: str | Path, title: str, footnote: str = "") -> None:
    """One panel per metric: grouped bars (task × method), arrows saying which way is better;
    ``footnote`` (e.g. :func:`options_footnote`) is printed under the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    long = df.stack(["task", "metric"], future_stack=True).rename("value").reset_index()
    long = long.dropna()
    metrics = [m for m in METRIC_ORDER if m in set(long["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sub = long[long["metric"] == metric]
        sns.barplot(data=sub, x="task", y="value", hue="method", ax=ax)
        ax.set_title(f"{metric.upper()} {'↑' if HIGHER_IS_BETTER[metric] else '↓'}")
        ax.set_xlabel("")
        ax.set_ylabel("")
        leg = ax.get_legend()
        if leg:
            leg.remove()
    # one legend for every panel, outside them (inside, it hid the bars of the last panel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                   title="method")
    fig.suptitle(title, fontsize=10)
    if footnote:
        import textwrap

        fig.text(0.01, 0.01, textwrap.fill(footnote, 40 * len(metrics)), fontsize=8,
                 ha="left", va="bottom")
        fig.tight_layout(rect=(0, 0.05 * (1 + len(footnote) // (40 * len(metrics))), 1, 1))
    else:
        fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)


def stage_summary(records: Iterable[tuple[str, str, str, Path]], split: str) -> pd.DataFrame:
    """Rows (method, task, output, metrics...) of x_reg / x_syn / x_hat on ``split`` from
    ``records`` (method, task, output, metric file)."""
    rows = []
    for method, task, output, path in records:
        mean = record_mean(path, split, output)
        rows.append({"method": method, "task": task, "output": output,
                     **{m: mean.get(m) for m in METRIC_ORDER if m in mean}})
    return pd.DataFrame(rows)


PER_IMAGE_METRICS = ("psnr", "ssim", "lpips")  # FID is one value per set: no per-image values


def cell_stats(records: Iterable[tuple[str, str, str, Path]], metrics: Iterable[str],
               against: Iterable[str]) -> pd.DataFrame:
    """Per (method, task, metric) of Table 1: the mean, its 95 % bootstrap interval over the
    test images and, for each method in ``against`` (UGPNet) run on the same task, the paired
    Wilcoxon signed-rank test of that method against this one (:mod:`ugpnet.stats`).

    ``records``: (method, task, output shown, metric file), as :func:`table1`. Columns:
    ``method, task, metric, mean, ci_low, ci_high, n_images, vs, wilcoxon_statistic, wilcoxon_p,
    median_diff, note``; FID rows carry the mean alone (one value per set, said in ``note``)."""
    from .metrics.evaluate import read_bundle_record
    from .stats import bootstrap_ci, paired_wilcoxon

    metrics = [m for m in METRIC_ORDER if m in set(metrics)]
    per_image: dict[tuple[str, str], dict] = {}
    means: dict[tuple[str, str], dict] = {}
    fid_boot: dict[tuple[str, str], dict] = {}
    for method, task, output, path in records:
        rec = read_bundle_record(path, "test", output)
        per_image[(method, task)] = rec.get("per_image") or {}
        means[(method, task)] = rec["mean"]
        fid_boot[(method, task)] = rec.get("fid_bootstrap") or {}
    against = [m for m in against]
    rows = []
    for (method, task), images in per_image.items():
        for metric in metrics:
            mean = means[(method, task)].get(metric)
            row = {"method": method, "task": task, "metric": metric,
                   "mean": float("nan") if mean is None else float(mean),
                   "ci_low": float("nan"), "ci_high": float("nan"), "n_images": len(images),
                   "vs": "", "wilcoxon_statistic": float("nan"), "wilcoxon_p": float("nan"),
                   "median_diff": float("nan"), "note": ""}
            if metric not in PER_IMAGE_METRICS:
                boot = fid_boot[(method, task)] if metric == "fid" else {}
                if "ci_low" in boot:
                    row["ci_low"], row["ci_high"] = boot["ci_low"], boot["ci_high"]
                    row["note"] = (f"{metric}: one value per set; interval: bootstrap over the "
                                   f"test images ({boot['n_resamples']} resamples), no paired test")
                else:
                    row["note"] = (f"{metric}: one value per set, no paired test; no interval: "
                                   + (boot.get("skipped") or "the evaluation has no bootstrap "
                                      "(metrics.fid_bootstrap unset)"))
                rows.append(row)
                continue
            values = {k: float(v[metric]) for k, v in images.items()
                      if isinstance(v.get(metric), (int, float)) and math.isfinite(v[metric])}
            row["ci_low"], row["ci_high"] = bootstrap_ci(list(values.values()))
            refs = [u for u in against if u != method and (u, task) in per_image]
            if not refs:
                rows.append(row)
            for ref in refs:
                theirs = {k: float(v[metric]) for k, v in per_image[(ref, task)].items()
                          if isinstance(v.get(metric), (int, float))}
                test = paired_wilcoxon(theirs, values)
                rows.append({**row, "vs": ref, "wilcoxon_statistic": test["statistic"],
                             "wilcoxon_p": test["p"], "median_diff": test["median_diff"],
                             "note": test["note"]})
    return pd.DataFrame(rows)


def table1_markdown(df: pd.DataFrame, stats: pd.DataFrame, families: Mapping[str, str],
                    options: Mapping[str, Iterable[str]], title: str) -> str:
    """Table 1 for people: per task, one row per method with each metric as ``mean [95 % CI]``,
    then the paired Wilcoxon p of UGPNet against every other method, per metric."""
    lines = [f"# {title}", ""]
    for task in dict.fromkeys(t for t, _ in df.columns):
        sub = stats[stats["task"] == task]
        lines += [f"## {task}", ""]
        metrics = [m for t, m in df.columns if t == task]
        head = ["method", "family"] + [f"{m.upper()} {'↑' if HIGHER_IS_BETTER[m] else '↓'}"
                                       for m in metrics]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method in df.index:
            if df.loc[method, [(task, m) for m in metrics]].isna().all():
                continue
            cells = []
            for m in metrics:
                r = sub[(sub["method"] == method) & (sub["metric"] == m)].head(1)
                d = DIGITS[m]
                if r.empty or r["mean"].isna().all():
                    cells.append("")
                elif r["ci_low"].isna().all():
                    cells.append(f"{r['mean'].iloc[0]:.{d}f}")
                else:
                    cells.append(f"{r['mean'].iloc[0]:.{d}f} [{r['ci_low'].iloc[0]:.{d}f}, "
                                 f"{r['ci_high'].iloc[0]:.{d}f}]")
            label = method + (" *" if options.get(method) else "")
            lines.append(f"| {label} | {families.get(method, '')} | " + " | ".join(cells) + " |")
        tests = sub[sub["vs"] != ""]
        if len(tests):
            lines += ["", "Paired Wilcoxon signed-rank test (two-sided, per test image) of "
                      + ", ".join(sorted(set(tests["vs"]))) + " against each method: p (n images, median per-image difference " +
                      "of the first minus the second)", ""]
            pm = [m for m in metrics if m in PER_IMAGE_METRICS]
            lines += ["| vs | method | " + " | ".join(m.upper() for m in pm) + " |",
                      "|" + "---|" * (2 + len(pm))]
            for (vs, method), g in tests.groupby(["vs", "method"], sort=False):
                cells = []
                for m in pm:
                    r = g[g["metric"] == m]
                    if r.empty:
                        cells.append("")
                    elif r["wilcoxon_p"].isna().all():
                        cells.append(r["note"].iloc[0])
                    else:
                        cells.append(f"{r['wilcoxon_p'].iloc[0]:.3g} (n {r['n_images'].iloc[0]}, "
                                     f"{r['median_diff'].iloc[0]:+.3g})")
                lines.append(f"| {vs} | {method} | " + " | ".join(cells) + " |")
        lines.append("")
    named = [f"- {m}: {'; '.join(o)}" for m, o in options.items() if o]
    if named:
        lines += ["\\* not the paper's network or recipe as published (options beyond the paper, "
                  "departures from the authors' recipes):", "", *named, ""]
    fid_notes = sorted(set(stats.loc[(stats["metric"] == "fid") & stats["ci_low"].isna(),
                                      "note"])) if "fid" in set(stats["metric"]) else []
    fid_text = (" FID is one value per image set: its interval is the percentile bootstrap of "
                "FID over resampled test sets (image ids drawn with replacement, restored and "
                "ground-truth features together; metrics.fid_bootstrap resamples, seed 0). "
                "Repeated images shrink both covariances, so the bootstrap FIDs can be biased "
                "against the full-set value: read the interval as the sampling spread." if "fid" in set(stats["metric"]) else "")
    lines += ["Intervals: 95 % percentile bootstrap of the mean over the test images "
              "(scipy.stats.bootstrap, 9,999 resamples, seed 0)." + fid_text, ""]
    if fid_notes:
        lines += ["FID cells without an interval: " + "; ".join(fid_notes), ""]
    return "\n".join(lines)


def table2(bench: Mapping, methods: Iterable[str], task: str,
           published: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """Table 2 from a ``ugpnet bench`` result: per method (in ``methods`` order) the parameters
    (M), the median inference time (ms) and its ratio to NAFNet's, beside the paper's
    (``published``: method -> ``{params_m, time_ms}``, None where not transcribed) and the
    paper's ratio to NAFNet. A method the bench did not time (or that failed) keeps its row
    with the reason in ``note``."""
    rows = {r["method"]: r for r in bench.get("inference", []) if r.get("task") == task}
    published = published or {}
    ours_ref = rows.get("nafnet", {}).get("median_s")
    paper_ref = (published.get("nafnet") or {}).get("time_ms")
    out = []
    for m in methods:
        r = rows.get(m, {})
        pub = published.get(m) or {}
        ms = r["median_s"] * 1e3 if "median_s" in r else float("nan")
        out.append({
            "method": m, "family": r.get("family", ""),
            "params_m": r["params"] / 1e6 if "params" in r else float("nan"),
            "time_ms": ms,
            "min_ms": r["min_s"] * 1e3 if "min_s" in r else float("nan"),
            "ratio_to_nafnet": ms / (ours_ref * 1e3) if ours_ref and ms == ms else float("nan"),
            "peak_mem_mb": r.get("peak_mem_mb", float("nan")),
            "paper_params_m": _num(pub.get("params_m")),
            "paper_time_ms": _num(pub.get("time_ms")),
            "paper_ratio_to_nafnet": (_num(pub.get("time_ms")) / paper_ref
                                      if paper_ref and pub.get("time_ms") is not None
                                      else float("nan")),
            "note": r.get("error", "" if r else f"not timed (no {m}/{task} in the bench file)")})
    return pd.DataFrame(out)


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def table2_markdown(df: pd.DataFrame, meta: Mapping, title: str) -> str:
    """Table 2 for people: ours (device, threads, size named) beside the paper's RTX 3090
    figures; a value the paper file does not hold is ``not transcribed``."""
    def f(v, d):
        return "" if v != v else f"{v:.{d}f}"

    def p(v, d):
        return "not transcribed" if v != v else f"{v:.{d}f}"

    lines = [f"# {title}", "",
             f"Ours: {meta['device']}, {meta['threads']} thread(s), {meta['size']}x{meta['size']} "
             f"input, batch 1, median of {meta['runs']} timed runs after one warm-up, random "
             f"weights, the networks of the {meta['networks_of_profile']} profile. "
             f"Paper: {meta['paper_device']} at {meta['paper_size']} px.", "",
             "| method | params (M) | time (ms) | × NAFNet | paper params (M) | paper time (ms) | "
             "paper × NAFNet | note |", "|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append(f"| {r['method']} | {f(r['params_m'], 2)} | {f(r['time_ms'], 0)} | "
                     f"{f(r['ratio_to_nafnet'], 2)} | {p(r['paper_params_m'], 1)} | "
                     f"{p(r['paper_time_ms'], 0)} | {p(r['paper_ratio_to_nafnet'], 2)} | "
                     f"{r['note']} |")
    lines += ["", "Times are not comparable across devices; the ratios to NAFNet are the "
              "comparable column. Source of the paper's values: " + meta["paper_source"], ""]
    return "\n".join(lines)


VS_PAPER_COLUMNS = ["task", "method", "metric", "ours", "ours_ci_low", "ours_ci_high", "paper",
                    "diff", "paper_in_ci", "note"]


def table1_vs_paper(stats: pd.DataFrame, paper_value) -> pd.DataFrame:
    """Table 1 beside the paper's published numbers: per (task, method, metric) our mean and
    95 % interval (``stats``: :func:`cell_stats`), the paper's value (``paper_value(task,
    method, metric)`` -> float or None), ``diff`` = ours − paper and whether the paper's value
    lies in our interval. A cell the paper file does not hold says ``not transcribed``."""
    first = stats.drop_duplicates(["method", "task", "metric"])
    rows = []
    for _, r in first.iterrows():
        paper = paper_value(r["task"], r["method"], r["metric"])
        has_ci = r["ci_low"] == r["ci_low"]
        rows.append({"task": r["task"], "method": r["method"], "metric": r["metric"],
                     "ours": r["mean"], "ours_ci_low": r["ci_low"], "ours_ci_high": r["ci_high"],
                     "paper": float("nan") if paper is None else paper,
                     "diff": float("nan") if paper is None else r["mean"] - paper,
                     "paper_in_ci": ("" if paper is None or not has_ci else
                                     bool(r["ci_low"] <= paper <= r["ci_high"])),
                     "note": "not transcribed (ugpnet/published/wacv2024.yaml)" if paper is None
                     else ""})
    return pd.DataFrame(rows, columns=VS_PAPER_COLUMNS)


def vs_paper_markdown(df: pd.DataFrame, title: str, source: str) -> str:
    """The vs-paper view for people: per task, method × metric cells ``ours [CI] | paper | Δ``."""
    lines = [f"# {title}", "", f"Paper: {source}. Δ = ours − paper; a paper value inside our "
             "95 % interval is marked ✓.", ""]
    for task, sub in df.groupby("task", sort=False):
        lines += [f"## {task}", "", "| method | metric | ours [95 % CI] | paper | Δ |",
                  "|---|---|---|---|---|"]
        for _, r in sub.iterrows():
            d = DIGITS.get(r["metric"], 4)
            ours = "" if r["ours"] != r["ours"] else f"{r['ours']:.{d}f}"
            if r["ours_ci_low"] == r["ours_ci_low"]:
                ours += f" [{r['ours_ci_low']:.{d}f}, {r['ours_ci_high']:.{d}f}]"
            paper = "not transcribed" if r["paper"] != r["paper"] else f"{r['paper']:.{d}f}" + \
                (" ✓" if r["paper_in_ci"] is True else "")
            diff = "" if r["diff"] != r["diff"] else f"{r['diff']:+.{d}f}"
            lines.append(f"| {r['method']} | {r['metric'].upper()} | {ours} | {paper} | {diff} |")
        lines.append("")
    return "\n".join(lines)
