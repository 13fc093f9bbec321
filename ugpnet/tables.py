"""Paper tables from the metric files of ``ugpnet evaluate --method --task``, plus a plot."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from .io import atomic_path

METRIC_ORDER = ("psnr", "ssim", "lpips", "fid")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "fid": False}


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
        if ax is not axes[0][-1]:
            leg = ax.get_legend()
            if leg:
                leg.remove()
    fig.suptitle(title, fontsize=10)
    if footnote:
        import textwrap

        fig.text(0.01, 0.01, textwrap.fill(footnote, 40 * len(metrics)), fontsize=8,
                 ha="left", va="bottom")
        fig.tight_layout(rect=(0, 0.05 * (1 + len(footnote) // (40 * len(metrics))), 1, 1))
    else:
        fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
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
