"""The paper's figures, drawn: pure functions from plain data (image paths or arrays, DataFrames)
to a PNG and a PDF (matplotlib, Agg; seaborn for the distributions).

Which images and numbers each figure shows is decided by ``ugpnet figures``
(:mod:`ugpnet.commands.figures`, documented in docs/FIGURES.md); these functions only draw what
they are given, in the order given, and return the layout they drew: every panel's place in
the PNG (``bbox_px = [left, top, right, bottom]`` in pixels, origin top-left), so a test (and a
reader of ``figures/index.json``) can check that each cell shows the image it names.

Every file is written atomically (:func:`ugpnet.io.atomic_path`): a killed job leaves no
finished-looking PNG or PDF. PNG and PDF carry no creation date, so the same data give the same
bytes.

- :func:`draw_image_grid`: rows of images (one row per test image), one column per method and the
  ground truth, each panel titled with the method and that image's PSNR/LPIPS; with a crop box
  (fractions of the image, the same for every image) each row is followed by a row of the
  zoomed crops, and the box is drawn as a rectangle on every full image.
- :func:`draw_perception_distortion`: PSNR against FID and against LPIPS, one point per (method,
  task), with the 95 % intervals as error bars where the statistics give finite ones.
- :func:`draw_psnr_distributions`: per task, the per-image PSNR of each method (box and points).
- :func:`draw_backbone_comparison`: Fig. 4's numbers, each backbone alone and inside UGPNet
  (a dumbbell per backbone: PSNR and LPIPS, with 95 % intervals).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .io import atomic_path

DPI = 100
PANEL_IN = 1.3          # side of one image panel, inches
PANEL_TITLE_IN = 0.36   # room above a panel for its two title lines
ROW_LABEL_IN = 1.15     # room left of a row for its label
TOP_IN = 0.4            # the figure's title
BOTTOM_IN = 0.2         # under the last row, besides the note's lines
GAP_IN = 0.06           # between panels of a row
CROP_GAP_IN = 0.08      # between a row of images and the row of their crops
CROP_COLOR = "#ffd400"
TASK_MARKERS = {"denoise": "o", "deblur": "s", "sr": "^"}
TASK_NAMES = {"denoise": "denoising", "deblur": "deblurring", "sr": "8x super-resolution"}
FAMILY_STYLE = {  # how a point shows its method's family (perception-distortion plot)
    "regression": "open marker", "generative": "filled marker", "reference": "grey cross"}

DISPLAY_NAMES = {
    "input": "Input", "gt": "GT", "nafnet": "NAFNet", "uformer": "Uformer", "rrdbnet": "RRDBNet",
    "hinet": "HINet", "unet": "UNet", "esrgan": "ESRGAN", "gfpgan": "GFP-GAN", "gpen": "GPEN",
    "vqfr": "VQFR", "glean": "GLEAN", "gcfsr": "GCFSR", "ugpnet": "UGPNet",
    "x_reg": "x_reg", "x_syn": "x_syn", "x_hat": "x_hat",
}


def display_name(method: str) -> str:
    """How a figure names a method (``ugpnet-hinet``: ``UGPNet (HINet)``); unknown names as
    they are."""
    if method in DISPLAY_NAMES:
        return DISPLAY_NAMES[method]
    if method.startswith("ugpnet-"):
        return f"UGPNet ({display_name(method[len('ugpnet-'):])})"
    return method


@dataclass
class Panel:
    """One image of a grid: its column title, the image (a file or an ``[H, W, 3]`` uint8 array),
    a second title line (e.g. ``24.31 dB | 0.213``) and the key the layout records."""

    title: str
    image: str | os.PathLike | np.ndarray
    subtitle: str = ""
    key: str = ""


@dataclass
class Row:
    """One row of a grid (one test image): its label and its panels, left to right."""

    label: str
    panels: list[Panel]


# ------------------------------------------------------------------------------- helpers
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _load(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    from .io import read_image

    return read_image(image)


def crop_box(shape: Sequence[int], crop: Sequence[float]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` in pixels of the crop ``(x, y, w, h)`` given as fractions of an
    image of ``shape`` (``[H, W, ...]``): rounded, at least one pixel wide and high."""
    h, w = int(shape[0]), int(shape[1])
    fx, fy, fw, fh = (float(v) for v in crop)
    x0, y0 = min(w - 1, round(fx * w)), min(h - 1, round(fy * h))
    x1, y1 = max(x0 + 1, min(w, round((fx + fw) * w))), max(y0 + 1, min(h, round((fy + fh) * h)))
    return x0, y0, x1, y1


def _bbox_px(fig, ax) -> list[int]:
    """``[left, top, right, bottom]`` of ``ax`` in the saved PNG (pixels, origin top-left); the
    figure is saved at its own dpi, without a tight bounding box."""
    bb = ax.get_window_extent()
    height = fig.bbox.height
    return [int(round(bb.x0)), int(round(height - bb.y1)), int(round(bb.x1)),
            int(round(height - bb.y0))]


def save(fig, out: str | os.PathLike) -> list[str]:
    """``out``.png and ``out``.pdf (``out`` without suffix), each written atomically; returns
    their paths. No creation date or software stamp: the same figure gives the same bytes."""
    out = Path(out)
    files = []
    for ext, meta in (("png", {"Software": None}),
                      ("pdf", {"Creator": None, "Producer": None, "CreationDate": None})):
        path = out.with_name(out.name + "." + ext)
        with atomic_path(path, suffix="." + ext) as tmp:
            fig.savefig(tmp, format=ext, dpi=DPI, metadata=meta)
        files.append(str(path))
    return files


def _finish(fig, out) -> list[str]:
    plt = _pyplot()
    try:
        return save(fig, out)
    finally:
        plt.close(fig)


NOTE_LINE_IN = 0.12  # one line of the note under a figure (6.5 pt)


def _note_lines(note: str, width_in: float) -> list[str]:
    import textwrap

    return textwrap.wrap(note, max(40, int(width_in * 18)))[:5] if note else []


def _note(fig, note: str, y_in: float = 0.08) -> None:
    """The note under a figure (at most five lines), its last line ``y_in`` above the bottom."""
    lines = _note_lines(note, fig.get_figwidth())
    if lines:
        fig.text(0.01, y_in / fig.get_figheight(), "\n".join(lines), fontsize=6.5,
                 color="#444444", ha="left", va="bottom")


# ------------------------------------------------------------------------------- image grids
def draw_image_grid(rows: Sequence[Row], out: str | os.PathLike, *, title: str,
                    crop: Sequence[float] | None = None, note: str = "") -> dict:
    """One grid of images; writes ``out``.png and ``out``.pdf.

    ``rows``: one per image, its panels left to right (columns may differ between rows: a row
    has as many panels as it is given). ``crop``: ``(x, y, w, h)`` as fractions of each image;
    then every row of full images is followed by a row of the crops, zoomed to the panel size
    (nearest neighbour: the pixels as they are), framed in the colour of the rectangle drawn
    on the full images, and labelled with the box in pixels. Images are drawn with nearest
    neighbour interpolation, so an 8x8 super-resolution input shows its 64 pixels.

    Returns ``{"files": [png, pdf], "panels": [{"row", "column", "kind": "full"|"crop", "key",
    "title", "bbox_px", "crop_box_px"}], "size_px": [w, h]}``.
    """
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    loaded = [[_load(p.image) for p in r.panels] for r in rows]
    ncols = max([len(r.panels) for r in rows] + [1])
    per_image = 2 if crop is not None else 1
    full_h, crop_h = PANEL_TITLE_IN + PANEL_IN, CROP_GAP_IN + PANEL_IN  # a row's height
    width = ROW_LABEL_IN + ncols * (PANEL_IN + GAP_IN) + 0.1
    height = TOP_IN + max(1, len(rows)) * full_h + (len(rows) * crop_h if crop else 0) \
        + BOTTOM_IN + NOTE_LINE_IN * len(_note_lines(note, width))
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    fig.suptitle(title, x=0.01, y=1 - 0.12 / height, ha="left", va="top", fontsize=9)
    if not rows:
        fig.text(0.5, 0.5, "no image to show (see the note)", ha="center", va="center",
                 fontsize=8)
    placed = []
    cursor = height - TOP_IN  # the top of the next row, inches from the bottom
    for i, (row, images) in enumerate(zip(rows, loaded)):
        boxes = [crop_box(img.shape, crop) if crop is not None else None for img in images]
        for part in range(per_image):
            cursor -= PANEL_TITLE_IN if part == 0 else CROP_GAP_IN
            bottom = cursor - PANEL_IN
            cursor = bottom
            label = row.label
            if part == 1:  # the box in the pixels of the row's largest image (the GT's)
                big = max(range(len(images)), key=lambda k: images[k].shape[1]) if images else None
                x0, y0, x1, y1 = boxes[big] if big is not None else (0, 0, 0, 0)
                label = f"zoom: {row.label.splitlines()[-1]}\nx {x0}:{x1}, y {y0}:{y1}"
            fig.text(0.08 / width, (bottom + PANEL_IN / 2) / height, label, fontsize=7,
                     ha="left", va="center")
            for j, (panel, img, box) in enumerate(zip(row.panels, images, boxes)):
                left = ROW_LABEL_IN + j * (PANEL_IN + GAP_IN)
                ax = fig.add_axes([left / width, bottom / height, PANEL_IN / width,
                                   PANEL_IN / height])
                ax.set_xticks([])
                ax.set_yticks([])
                if part == 0:
                    ax.imshow(img, interpolation="nearest")
                    ax.set_title(panel.title + (f"\n{panel.subtitle}" if panel.subtitle else ""),
                                 fontsize=6.5, pad=2)
                    if box is not None:
                        x0, y0, x1, y1 = box
                        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0,
                                               fill=False, edgecolor=CROP_COLOR, linewidth=1.0))
                else:
                    x0, y0, x1, y1 = box
                    ax.imshow(img[y0:y1, x0:x1], interpolation="nearest")
                    for spine in ax.spines.values():
                        spine.set_edgecolor(CROP_COLOR)
                        spine.set_linewidth(1.5)
                placed.append((ax, {"row": i, "column": j, "kind": "full" if part == 0 else "crop",
                                    "key": panel.key, "title": panel.title,
                                    "crop_box_px": list(box) if box is not None else None}))
    _note(fig, note)
    fig.canvas.draw()
    panels = [{**info, "bbox_px": _bbox_px(fig, ax)} for ax, info in placed]
    size = [int(round(fig.bbox.width)), int(round(fig.bbox.height))]
    return {"files": _finish(fig, out), "panels": panels, "size_px": size}


# ------------------------------------------------------------------------------- statistics
def _one_row_per_cell(stats):
    """table1_stats.csv has one row per (method, task, metric) and compared method; the mean and
    its interval are the same on each, so the first is kept."""
    return stats.drop_duplicates(["method", "task", "metric"], keep="first")


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def perception_points(stats, families: Mapping[str, str],
                      metrics: Iterable[str] = ("fid", "lpips")):
    """One row per (method, task) of ``stats`` (the columns of table1_stats.csv: method, task,
    metric, mean, ci_low, ci_high): ``method, task, family`` and per metric of ``psnr`` and
    ``metrics`` its ``<m>``, ``<m>_low``, ``<m>_high`` (NaN where absent)."""
    import pandas as pd

    s = _one_row_per_cell(stats)
    rows = []
    for (method, task), cell in s.groupby(["method", "task"], sort=False):
        row = {"method": method, "task": task, "family": families.get(method, "")}
        by = {m: r for m, r in zip(cell["metric"], cell.itertuples())}
        for m in ("psnr", *metrics):
            r = by.get(m)
            row[m] = float(r.mean) if r is not None and _finite(r.mean) else math.nan
            row[f"{m}_low"] = float(r.ci_low) if r is not None and _finite(r.ci_low) else math.nan
            row[f"{m}_high"] = (float(r.ci_high) if r is not None and _finite(r.ci_high)
                                else math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _err(mean: float, low: float, high: float):
    """matplotlib's ``[[below], [above]]`` of an interval, or None when it is not finite."""
    if not (_finite(low) and _finite(high) and _finite(mean)):
        return None
    return [[max(0.0, mean - low)], [max(0.0, high - mean)]]


def _method_colors(methods: Sequence[str]) -> dict[str, tuple]:
    import seaborn as sns

    palette = sns.color_palette("tab10" if len(methods) <= 10 else "husl", len(methods))
    return dict(zip(methods, palette))


def draw_perception_distortion(stats, out: str | os.PathLike, *, families: Mapping[str, str],
                               methods: Sequence[str] | None = None,
                               tasks: Sequence[str] | None = None, title: str,
                               note: str = "") -> dict:
    """PSNR against FID (left) and against LPIPS (right): one point per (method, task) of
    ``stats`` (table1_stats.csv's columns), the colour the method's, the marker the task's
    (:data:`TASK_MARKERS`), filled for a generative method, open for a regression one, a grey
    cross for the reference row (the degraded input). Error bars: the 95 % intervals of
    ``ci_low``/``ci_high`` where they are finite (PSNR and LPIPS: bootstrap over the test
    images; FID: where the statistics give one), none otherwise. Writes ``out``.png/.pdf and
    returns ``{"files", "points": [{method, task, family, psnr, fid, lpips, error_bars}]}``."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    pts = perception_points(stats, families)
    methods = list(methods or dict.fromkeys(pts["method"])) if len(pts) else list(methods or [])
    tasks = list(tasks or dict.fromkeys(pts["task"])) if len(pts) else list(tasks or [])
    colors = _method_colors(methods)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6), dpi=DPI)
    fig.subplots_adjust(left=0.07, right=0.78, top=0.86, bottom=0.2, wspace=0.28)
    fig.suptitle(title, x=0.01, ha="left", fontsize=9)
    drawn = []
    for ax, metric, name in zip(axes, ("fid", "lpips"), ("FID", "LPIPS")):
        shown = 0
        for p in pts.itertuples():
            x, y = getattr(p, metric), p.psnr
            if not (_finite(x) and _finite(y)) or p.method not in colors:
                continue
            fam = p.family
            c = "#888888" if fam == "reference" else colors[p.method]
            marker = "x" if fam == "reference" else TASK_MARKERS.get(p.task, "D")
            face = c if fam == "generative" else "none"
            xerr = _err(x, getattr(p, f"{metric}_low"), getattr(p, f"{metric}_high"))
            yerr = _err(y, p.psnr_low, p.psnr_high)
            ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="none", ecolor=c, elinewidth=0.8,
                        alpha=0.7, capsize=2)
            ax.plot([x], [y], linestyle="none", marker=marker, markersize=7,
                    markerfacecolor=face if marker != "x" else c, markeredgecolor=c,
                    markeredgewidth=1.3)
            shown += 1
            if metric == "fid":
                drawn.append({"method": p.method, "task": p.task, "family": fam})
        ax.set_xlabel(f"{name} ↓")
        ax.set_ylabel("PSNR (dB) ↑")
        ax.set_title(f"PSNR against {name} (test split)", fontsize=9)
        ax.grid(True, linewidth=0.4, alpha=0.5)
        if not shown:
            ax.text(0.5, 0.5, f"no {name} in this run's statistics", transform=ax.transAxes,
                    ha="center", va="center", fontsize=8)
        else:
            ax.annotate("better", xy=(0.03, 0.97), xycoords="axes fraction", fontsize=7,
                        ha="left", va="top", color="#555555")
    handles = [Line2D([], [], linestyle="none", marker="o", color=colors[m], label=display_name(m))
               for m in methods if families.get(m) != "reference"]
    handles += [Line2D([], [], linestyle="none", marker="x", color="#888888", label=display_name(m))
                for m in methods if families.get(m) == "reference"]
    leg1 = fig.legend(handles=handles, title="method", loc="upper left",
                      bbox_to_anchor=(0.8, 0.88), fontsize=7, title_fontsize=7, frameon=False)
    fig.add_artist(leg1)
    task_handles = [Line2D([], [], linestyle="none", marker=TASK_MARKERS.get(t, "D"),
                           color="#333333", markerfacecolor="none", label=TASK_NAMES.get(t, t))
                    for t in tasks]
    fam_handles = [Line2D([], [], linestyle="none", marker="o", color="#333333",
                          markerfacecolor="none", label="regression"),
                   Line2D([], [], linestyle="none", marker="o", color="#333333",
                          label="generative")]
    fig.legend(handles=task_handles + fam_handles, title="task / family", loc="lower left",
               bbox_to_anchor=(0.8, 0.2), fontsize=7, title_fontsize=7, frameon=False)
    _note(fig, note, y_in=0.08)
    # where each point's bars came from, for the index
    for d in drawn:
        row = pts[(pts["method"] == d["method"]) & (pts["task"] == d["task"])].iloc[0]
        d.update({m: (float(row[m]) if _finite(row[m]) else None) for m in ("psnr", "fid", "lpips")
                  if m in row})
        d["error_bars"] = [m for m in ("psnr", "fid", "lpips")
                           if f"{m}_low" in row and _finite(row[f"{m}_low"])
                           and _finite(row[f"{m}_high"])]
    return {"files": _finish(fig, out), "points": drawn}


def draw_psnr_distributions(per_image, out: str | os.PathLike, *,
                            order: Mapping[str, Sequence[str]], title: str,
                            note: str = "") -> dict:
    """Per task (one panel each, in ``order``'s order), the per-image PSNR of each method (x, in
    ``order[task]``'s order): a box (median, quartiles, 1.5 IQR whiskers) with every image as a
    point. ``per_image``: a DataFrame with ``method, task, image, psnr``; non-finite values
    (an image equal to its ground truth has PSNR +inf) are left out and counted in the
    returned ``left_out``. Writes ``out``.png/.pdf; returns ``{"files", "counts":
    {task: {method: n}}, "left_out"}``."""
    plt = _pyplot()
    import seaborn as sns

    df = per_image.copy()
    finite = np.isfinite(df["psnr"].astype(float)) if len(df) else np.array([], bool)
    left_out = int((~finite).sum()) if len(df) else 0
    df = df[finite] if len(df) else df
    tasks = [t for t in order if order[t]] or ["(none)"]
    width = 1.2 + sum(max(2.2, 0.55 * len(order.get(t, ())) + 0.6) for t in tasks)
    fig, axes = plt.subplots(1, len(tasks), figsize=(width, 4.2), dpi=DPI, squeeze=False)
    fig.subplots_adjust(top=0.84, bottom=0.3, left=0.07, right=0.98, wspace=0.25)
    fig.suptitle(title, x=0.01, ha="left", fontsize=9)
    counts: dict = {}
    for ax, task in zip(axes[0], tasks):
        methods = list(order.get(task, ()))
        sub = df[df["task"] == task] if len(df) else df
        counts[task] = {m: int((sub["method"] == m).sum()) if len(sub) else 0 for m in methods}
        if len(sub):
            labels = {m: display_name(m) for m in methods}
            sub = sub.assign(name=sub["method"].map(labels))
            names = [labels[m] for m in methods]
            with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11 `vert`
                warnings.simplefilter("ignore", DeprecationWarning)
                sns.boxplot(data=sub, x="name", y="psnr", order=names, ax=ax, color="#dddddd",
                            fliersize=0, linewidth=0.8)
            sns.stripplot(data=sub, x="name", y="psnr", order=names, ax=ax, size=3.5,
                          color="#1f4e9c", alpha=0.8, jitter=0.18)
        else:
            ax.text(0.5, 0.5, "no per-image values", transform=ax.transAxes, ha="center",
                    fontsize=8)
        ax.set_title(TASK_NAMES.get(task, task), fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("PSNR (dB) per test image" if ax is axes[0][0] else "")
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        for lab in ax.get_xticklabels():
            lab.set_ha("right")
        ax.grid(True, axis="y", linewidth=0.4, alpha=0.5)
    _note(fig, note + (f" {left_out} non-finite PSNR value(s) (an image equal to its ground "
                       f"truth) left out." if left_out else ""), y_in=0.06)
    return {"files": _finish(fig, out), "counts": counts, "left_out": left_out}


def draw_backbone_comparison(df, out: str | os.PathLike, *, tasks: Sequence[str],
                             backbones: Sequence[str], metrics: Sequence[str] = ("psnr", "lpips"),
                             title: str, note: str = "") -> dict:
    """Fig. 4's numbers: per task (rows) and metric (columns) a dumbbell per backbone: the
    backbone alone (open circle) and inside UGPNet (filled), joined by a line, with their 95 %
    intervals where finite. ``df``: ``task, backbone, setting ('alone' | 'inside'), metric,
    mean, ci_low, ci_high``. Writes ``out``.png/.pdf; returns ``{"files", "pairs": [...]}``."""
    plt = _pyplot()

    arrows = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓", "fid": "FID ↓"}
    tasks = list(tasks) or ["(none)"]
    fig, axes = plt.subplots(len(tasks), len(metrics), dpi=DPI, squeeze=False,
                             figsize=(3.4 * len(metrics) + 1.2, 0.45 * max(1, len(backbones)) *
                                      len(tasks) + 1.4 * len(tasks) + 0.6))
    fig.subplots_adjust(left=0.16, right=0.97, top=1 - 0.6 / fig.get_figheight(), bottom=0.12,
                        hspace=0.55, wspace=0.3)
    fig.suptitle(title, x=0.01, ha="left", fontsize=9)
    pairs = []
    for r, task in enumerate(tasks):
        for c, metric in enumerate(metrics):
            ax = axes[r][c]
            ys = list(range(len(backbones)))
            for y, bb in zip(ys, backbones):
                vals = {}
                for setting in ("alone", "inside"):
                    hit = df[(df["task"] == task) & (df["backbone"] == bb) &
                             (df["setting"] == setting) & (df["metric"] == metric)] \
                        if len(df) else df
                    if len(hit):
                        h = hit.iloc[0]
                        vals[setting] = (float(h["mean"]), float(h["ci_low"]),
                                         float(h["ci_high"]))
                # alone just above the backbone's line, inside just below: both intervals show
                at = {"alone": y - 0.14, "inside": y + 0.14}
                if len(vals) == 2 and all(_finite(v[0]) for v in vals.values()):
                    ax.plot([vals["alone"][0], vals["inside"][0]], [at["alone"], at["inside"]],
                            color="#999999", linewidth=1.5, zorder=1)
                for setting, (mean, low, high) in vals.items():
                    if not _finite(mean):
                        continue
                    color = "#1f4e9c" if setting == "inside" else "#555555"
                    ax.errorbar([mean], [at[setting]], xerr=_err(mean, low, high), fmt="none",
                                ecolor=color, elinewidth=0.8, capsize=2, zorder=2)
                    ax.plot([mean], [at[setting]], linestyle="none", marker="o", markersize=7,
                            markerfacecolor=color if setting == "inside" else "white",
                            markeredgecolor=color, zorder=3,
                            label="inside UGPNet" if setting == "inside" else "alone")
                if metric == metrics[0]:
                    pairs.append({"task": task, "backbone": bb,
                                  "settings": sorted(vals)})
            ax.set_yticks(ys)
            ax.set_yticklabels([display_name(b) for b in backbones], fontsize=7)
            ax.set_ylim(-0.6, len(backbones) - 0.4)
            ax.invert_yaxis()
            ax.set_xlabel(arrows.get(metric, metric), fontsize=8)
            ax.set_title(f"{TASK_NAMES.get(task, task)}: {metric.upper()}", fontsize=8)
            ax.grid(True, axis="x", linewidth=0.4, alpha=0.5)
            if r == 0 and c == len(metrics) - 1:
                handles, labels = ax.get_legend_handles_labels()
                uniq = dict(zip(labels, handles))
                if uniq:
                    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="best")
    _note(fig, note, y_in=0.06)
    return {"files": _finish(fig, out), "pairs": pairs}
