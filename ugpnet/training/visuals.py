"""What a run shows while it trains: loss curves, validation image grids, optional TensorBoard.

Side files of the run folder, for people to look at. They are no workflow output, no part of any
stage's identity (``logging:`` of params.yaml is read by no ``stage_config``: switching any of it
never reruns a stage), and never a sign that a stage finished (``summary.json`` is):

- ``loss_curves.png``: every numeric column of ``log.jsonl`` (the loss terms and ``lr``; not
  ``sec_per_iter``) against the iteration, one panel each, then one panel per val metric of
  ``val.jsonl`` with a line per output (``psnr``, ``x_reg/psnr``...; the selected iterations
  starred); the y axis is logarithmic where every value is positive and they span at least a
  factor :data:`LOG_SPAN`. Redrawn at log points and validations once :data:`REDRAW_S` seconds
  have passed since the start or the last drawing, and always at the end of the stage (and of a
  stage that failed, up to the failure).
- ``val_grids/iter_<N>.png``: at the validation of iteration ``N``, one row per fixed val image
  -- the first ``logging.val_grid_images`` (default :data:`GRID_IMAGES` = 4) images of the val
  split in sorted id order, as validation reads them -- and the columns ``LQ | the stage's
  outputs | GT``. UGPNet's fusion stage shows ``x_reg | x_syn | x_hat``; its restoration stage
  ``x_reg`` and its synthesis stage ``x_syn`` (what each produces); every other method
  its output. Images are uint8, clamped to [0, 1]. An LQ smaller than the GT (SR with ``lr``
  input) is upsampled by nearest neighbour for display, and its label says so (``x8 nearest``).
  The images come from the validation pass itself: nothing is predicted twice.
- ``tensorboard/``: with ``logging.tensorboard: true`` (needs ``pip install tensorboard``): the
  logged values as scalars (``train/<name>``), the val metrics (``val/<name>``) and the grid
  (``val/grid``). A resumed run purges the events after its checkpoint's iteration.

**Grid layout** (exact, :func:`cell_origin`): a band of :data:`LABEL_H` px on top with the
column labels (two lines: name, note), then ``rows`` × ``columns`` cells of the GT's size
(``H`` × ``W``) separated by :data:`PAD` px of white: the image is
``LABEL_H + rows·H + (rows-1)·PAD`` px high and ``columns·W + (columns-1)·PAD`` wide, cell
(r, c) starts at ``y = LABEL_H + r·(H+PAD)``, ``x = c·(W+PAD)``. The PNG's text chunks
``ugpnet:rows`` / ``ugpnet:columns`` hold the image ids and the column labels (JSON).

Every file is written atomically (:func:`ugpnet.io.atomic_path`). A figure that cannot be drawn
prints a warning and never stops training. The run folder (:mod:`.run`) moves these files aside
with the rest of its state, drops them with a fresh start, and on a resume drops the grids of
iterations after the checkpoint. Cost (smoke, 64 px, shared 2-core CPU): ~0.01 s per grid;
~0.75 s per stage for the matplotlib import and the curves at the end, then 0.3-0.8 s per
redraw (at most one per :data:`REDRAW_S` s); TensorBoard on: ~2 s to import, ~0.05 s per
validation.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ConfigError
from ..io import atomic_path, to_uint8

LOSS_CURVES = "loss_curves.png"
GRIDS_DIR = "val_grids"
TENSORBOARD_DIR = "tensorboard"
VISUAL_FILES = (LOSS_CURVES, GRIDS_DIR, TENSORBOARD_DIR)

GRID_IMAGES = 4      # default logging.val_grid_images
LABEL_H = 26         # px of the label band on top of a grid
PAD = 2              # px between cells
LOG_SPAN = 10.0      # log y axis when every value is > 0 and max/min >= this
REDRAW_S = 30.0      # the curves are redrawn at most this often (and always at the end)
DEFAULT_LOGGING = {"tensorboard": False, "val_grid_images": GRID_IMAGES, "loss_curves": True}
TENSORBOARD_KEY = "logging.tensorboard"


def logging_settings(settings: Mapping | None) -> dict:
    """``logging:`` of params.yaml over :data:`DEFAULT_LOGGING` (absent keys: the defaults)."""
    return {**DEFAULT_LOGGING, **dict(settings or {})}


def require_tensorboard():
    """``torch.utils.tensorboard.SummaryWriter``, or a ConfigError naming the key and the fix."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ConfigError(f"{TENSORBOARD_KEY} is true but the 'tensorboard' package is not "
                          f"installed ({e}): pip install tensorboard (or pip install -e "
                          f"'.[tensorboard]'), or set {TENSORBOARD_KEY}: false") from None
    return SummaryWriter


# ----------------------------------------------------------------------------- run-folder upkeep
def grid_name(it: int) -> str:
    return f"iter_{int(it)}.png"


def grid_iter(path: Path) -> int | None:
    """The iteration of a grid file name ``iter_<N>.png`` (None for any other name)."""
    stem = path.name[len("iter_"):-len(".png")] if path.name.startswith("iter_") \
        and path.name.endswith(".png") else ""
    return int(stem) if stem.isdigit() else None


def drop_grids_after(run_dir: str | os.PathLike, it: int) -> list[str]:
    """Remove the grids of iterations after ``it`` (a killed attempt drew them after the
    checkpoint a resume starts from) and the temporary files of cut-short writes; return the
    removed names."""
    folder = Path(run_dir) / GRIDS_DIR
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            n = grid_iter(p)
            if (n is not None and n > it) or (p.is_file() and p.name.startswith(".")):
                p.unlink()
                removed.append(p.name)
    return removed


def remove_visuals(run_dir: str | os.PathLike) -> list[str]:
    """Remove every visual side file of a run folder (a fresh start); return their names."""
    run_dir = Path(run_dir)
    removed = []
    for name in VISUAL_FILES:
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        else:
            continue
        removed.append(name)
    return removed


# ----------------------------------------------------------------------------- loss curves
def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut by a kill
            continue
        if isinstance(rec, dict) and "iter" in rec:
            out.append(rec)
    return out


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _columns(records: list[dict], skip=("iter",)) -> list[str]:
    cols: list[str] = []
    for r in records:
        for k, v in r.items():
            if k not in skip and k not in cols and _numeric(v):
                cols.append(k)
    return cols


def log_scale(values) -> bool:
    """Whether a panel's y axis is logarithmic: every value > 0, spanning >= :data:`LOG_SPAN`."""
    v = np.asarray(values, dtype=float)
    return v.size > 1 and bool(np.all(v > 0)) and float(v.max() / v.min()) >= LOG_SPAN


def draw_loss_curves(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                     title: str | None = None) -> Path | None:
    """Draw ``<run_dir>/loss_curves.png`` from ``log.jsonl`` (and ``val.jsonl``); None when the
    log has no line yet (nothing is written)."""
    run_dir = Path(run_dir)
    train = _read_jsonl(run_dir / "log.jsonl")
    if not train:
        return None
    val = _read_jsonl(run_dir / "val.jsonl")
    # one panel per logged value (sec_per_iter is timing, not a loss: TensorBoard has it), then
    # one per val metric with a line per output (x_reg/psnr beside psnr)
    panels = [(k, [("", [(r["iter"], r[k]) for r in train if _numeric(r.get(k))])], None)
              for k in _columns(train, skip=("iter", "sec_per_iter"))]
    by_metric: dict[str, list] = {}
    for k in _columns(val, skip=("iter", "selected")):
        output, _, metric = k.rpartition("/")
        by_metric.setdefault(metric, []).append(
            (output or "output", [(r["iter"], r[k]) for r in val if _numeric(r.get(k))]))
    for metric, lines in by_metric.items():
        chosen = [(r["iter"], r[metric]) for r in val if r.get("selected")
                  and _numeric(r.get(metric))]
        panels.append((f"val {metric}", lines, chosen))

    import matplotlib.style
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, NullLocator

    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    style = "seaborn-v0_8-whitegrid"
    with matplotlib.style.context(style if style in matplotlib.style.available else "default"):
        fig = Figure(figsize=(3.0 * ncols, 2.2 * nrows + 0.4), dpi=80)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, (name, lines, chosen) in zip(axes, panels):
            ys = []
            for label, pts in lines:
                x, y = zip(*pts)
                ys += y
                ax.plot(x, y, lw=1.2, marker="." if len(x) <= 50 else None,
                        label=label or None)
            if chosen:
                cx, cy = zip(*chosen)
                ax.plot(cx, cy, ls="none", marker="*", ms=8, color="gold", mec="black",
                        mew=0.5, label="selected")
            if len(lines) > 1 or chosen:
                ax.legend(fontsize=6, loc="upper left", framealpha=0.6)
            if log_scale(ys):
                ax.set_yscale("log")
                ax.yaxis.set_minor_locator(NullLocator())  # minor ticks: most of a redraw
            ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
            ax.set_title(name, fontsize=9, y=1.0, pad=3)  # a fixed y: no layout pass per panel
            ax.tick_params(labelsize=7)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        if title:
            fig.suptitle(f"{title} (x: iteration)", fontsize=10)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12 / nrows + 0.04,
                            top=1 - 0.55 / (2.2 * nrows + 0.4), wspace=0.35, hspace=0.6)
        out = Path(out) if out is not None else run_dir / LOSS_CURVES
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png")
    return out


# ----------------------------------------------------------------------------- validation grids
def output_columns(outs, label: str = "output") -> list[tuple[str, Any]]:
    """(label, image) of a stage's prediction for the grid: a tensor is one column named
    ``label``; a dict keeps its order with ``x_hat`` (the final output) moved last, so UGPNet's
    fusion shows ``x_reg | x_syn | x_hat``."""
    if not isinstance(outs, Mapping):
        return [(label, outs)]
    items = [(str(k), v) for k, v in outs.items()]
    return [kv for kv in items if kv[0] != "x_hat"] + [kv for kv in items if kv[0] == "x_hat"]


def display_lq(lq: np.ndarray, h: int, w: int) -> tuple[np.ndarray, str]:
    """The LQ image at the GT's size for display, and the label's note: an integer-smaller LQ
    (SR) is upsampled by nearest neighbour (``x8 nearest``)."""
    lh, lw = lq.shape[:2]
    if (lh, lw) == (h, w):
        return lq, ""
    if h % lh == 0 and w % lw == 0 and h // lh == w // lw:
        f = h // lh
        return np.repeat(np.repeat(lq, f, axis=0), f, axis=1), f"x{f} nearest"
    from PIL import Image

    return np.asarray(Image.fromarray(lq).resize((w, h), Image.NEAREST)), "nearest"


class GridRows:
    """Collects the first ``k`` validation images (``on_image`` of
    :func:`~ugpnet.training.validate.validate`): LQ, the stage's outputs and GT as uint8."""

    def __init__(self, k: int, label: str = "output"):
        self.k, self.label, self.rows = int(k), label, []

    def __call__(self, index: int, batch: Mapping, outs) -> None:
        if index >= self.k:
            return
        names = batch.get("name")
        name = names[0] if isinstance(names, (list, tuple)) and names else str(index)
        self.rows.append({"name": str(name), "lq": to_uint8(batch["lq"][0]),
                          "gt": to_uint8(batch["gt"][0]),
                          "outputs": [(k, to_uint8(v[0])) for k, v in
                                      output_columns(outs, self.label)]})


def grid_size(rows: int, cols: int, h: int, w: int) -> tuple[int, int]:
    """(height, width) of a grid of ``rows`` × ``cols`` cells of ``h`` × ``w`` px."""
    return LABEL_H + rows * h + (rows - 1) * PAD, cols * w + (cols - 1) * PAD


def cell_origin(row: int, col: int, h: int, w: int) -> tuple[int, int]:
    """(y, x) of the top-left pixel of cell (``row``, ``col``)."""
    return LABEL_H + row * (h + PAD), col * (w + PAD)


def _fit(draw, text: str, font, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-1]
    return text


def compose_grid(rows: list[Mapping]) -> tuple[np.ndarray, list[str]]:
    """The grid image (uint8 [H, W, 3]) of :class:`GridRows` rows and its column labels."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = rows[0]["gt"].shape[:2]
    _, note = display_lq(rows[0]["lq"], h, w)
    heads = [("LQ", note)] + [(k, "") for k, _ in rows[0]["outputs"]] + [("GT", "")]
    gh, gw = grid_size(len(rows), len(heads), h, w)
    canvas = np.full((gh, gw, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        cells = [display_lq(row["lq"], h, w)[0]] + [img for _, img in row["outputs"]] \
            + [row["gt"]]
        for c, img in enumerate(cells):
            y, x = cell_origin(r, c, h, w)
            if img.shape[:2] != (h, w):  # an output of another size: shown at the GT's
                img = np.asarray(Image.fromarray(img).resize((w, h), Image.NEAREST))
            canvas[y:y + h, x:x + w] = img
    pil = Image.fromarray(canvas)
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default()
    for c, (name, sub) in enumerate(heads):
        x = c * (w + PAD)
        for line, text in enumerate((name, sub)):
            text = _fit(draw, text, font, w)
            if text:
                tx = x + max(0, (w - draw.textlength(text, font=font)) / 2)
                draw.text((tx, 1 + 12 * line), text, fill=(0, 0, 0), font=font)
    labels = [f"{name} ({sub})" if sub else name for name, sub in heads]
    # the label band only: the cells keep the exact pixels
    canvas[:LABEL_H] = np.asarray(pil)[:LABEL_H]
    return canvas, labels


def write_grid(path: str | os.PathLike, rows: list[Mapping]) -> np.ndarray:
    """Write the grid of ``rows`` to ``path`` (atomically); return the image."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    grid, labels = compose_grid(rows)
    info = PngInfo()
    info.add_text("ugpnet:rows", json.dumps([r["name"] for r in rows]))
    info.add_text("ugpnet:columns", json.dumps(labels))
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(grid).save(tmp, format="PNG", pnginfo=info, compress_level=1)
    return grid


# ----------------------------------------------------------------------------- one run's visuals
class Visuals:
    """A run's curves, grids and TensorBoard events (used by :func:`~.loop.run_stage` and the
    prior's pretraining). Made before the run folder is touched: a switched-on TensorBoard
    without the package is a ConfigError at once."""

    def __init__(self, run_dir: str | os.PathLike, settings: Mapping | None = None,
                 title: str | None = None, output_label: str = "output",
                 say: Callable[[str], None] | None = None):
        self.dir = Path(run_dir)
        self.settings = logging_settings(settings)
        self.title = title
        self.output_label = output_label or "output"
        self._say = say or (lambda line: print(line, file=sys.stdout, flush=True))
        self._writer_cls = require_tensorboard() if self.settings["tensorboard"] else None
        self.writer = None
        self._drawn = time.monotonic()  # the first curves after REDRAW_S s, or at the end
        self._warned: set[str] = set()

    def _guard(self, what: str, fn: Callable, *args):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - a figure never stops training
            if what not in self._warned:
                self._warned.add(what)
                self._say(f"[{self.dir}] warning: could not write {what} ({type(e).__name__}: "
                          f"{e}); training goes on")
            return None

    def begin(self, resume_iter: int | None) -> None:
        """Open the TensorBoard writer (after :meth:`Run.start`, which settled the folder)."""
        if self._writer_cls is not None:
            purge = None if resume_iter is None else int(resume_iter) + 1
            self.writer = self._guard("TensorBoard events", lambda: self._writer_cls(
                log_dir=str(self.dir / TENSORBOARD_DIR), purge_step=purge))

    def grid_rows(self) -> GridRows | None:
        k = int(self.settings["val_grid_images"])
        return GridRows(k, self.output_label) if k > 0 else None

    def curves(self, force: bool = False) -> None:
        if not self.settings["loss_curves"]:
            return
        if not force and time.monotonic() - self._drawn < REDRAW_S:
            return
        self._guard(LOSS_CURVES, draw_loss_curves, self.dir, None, self.title)
        self._drawn = time.monotonic()

    def logged(self, it: int, values: Mapping[str, float]) -> None:
        """After a ``log.jsonl`` line."""
        if self.writer is not None:
            for k, v in values.items():
                if _numeric(v):
                    self._guard("TensorBoard events", self.writer.add_scalar, f"train/{k}",
                                float(v), int(it))
        self.curves()

    def validated(self, it: int, metrics: Mapping[str, float], rows: GridRows | None) -> None:
        """After a validation (its ``val.jsonl`` line written)."""
        grid = None
        if rows is not None and rows.rows:
            grid = self._guard("the validation grid", write_grid,
                               self.dir / GRIDS_DIR / grid_name(it), rows.rows)
        if self.writer is not None:
            def events():
                for k, v in metrics.items():
                    if _numeric(v):
                        self.writer.add_scalar(f"val/{k}", float(v), int(it))
                if grid is not None:
                    self.writer.add_image("val/grid", grid, int(it), dataformats="HWC")
                self.writer.flush()
            self._guard("TensorBoard events", events)
        self.curves()

    def close(self, final: bool = True) -> None:
        """The last curves (``final``: the stage ended, not failed) and the writer closed."""
        if final:
            self.curves(force=True)
        if self.writer is not None:
            self._guard("TensorBoard events", self.writer.close)
            self.writer = None
