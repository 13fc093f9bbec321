"""ugpnet figures: the paper's figures from a run's results (docs/FIGURES.md).

``ugpnet figures [--out DIR] [--only NAMES]`` draws, into ``<results>/figures/`` by default,
PNG + PDF each (:mod:`ugpnet.figures`):

- ``figure4_<task>`` and ``figure4_metrics``: each backbone alone and inside UGPNet
  (``figure4:`` in params.yaml): the test images, and PSNR/LPIPS as dumbbells;
- ``figure5``: denoising and deblurring (``figures.figure5``), ``figure6``: 8x SR
  (``figures.figure6``): rows = the fixed test images, columns = the input, the methods in the
  paper's order, the ground truth, each with that image's PSNR/LPIPS, and the zoomed crop;
- ``figure7``: an out-of-distribution photograph (``figures.figure7.image``), degraded as each
  task's test split, through every output of UGPNet (its intermediate images, then its
  result), beside a generative baseline;
- ``perception_distortion``: PSNR against FID and LPIPS, one point per (method, task), with the
  95 % intervals of table1_stats.csv;
- ``psnr_distributions``: the per-image PSNR of every method of Table 1, per task;

then ``index.json``: each figure's files, the images shown (test ids, the files and their
sha256 as their manifests record them, checked against the files), the crop boxes, the panels'
places in the PNG, and what was left out and why. A figure whose inputs are missing is not
drawn; the command then names every missing file and how to make it, writes no index.json,
and exits 2.

``ugpnet figures --prepare-ood --out DIR`` writes Fig. 7's ground truth (the photograph's
central square at data.resolution, ``DIR/<name>.png`` and ``DIR/manifest.json``); the workflow
then degrades and restores it (workflow/rules/figures.smk).

What is drawn is decided here (:class:`FigurePlan`, which the workflow also asks for the
``figures`` rule's inputs and outputs); how, in :mod:`ugpnet.figures`.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError

HELP = ("draw the paper's figures (Fig. 4-7, perception-distortion, per-image PSNR) from a "
        "run's results, with an index of the images shown")

NAMES = ("figure4", "figure5", "figure6", "figure7", "perception_distortion",
         "psnr_distributions")
# for a configuration without (some keys of) the figures block; the paper's columns and Fig. 7's
# methods are in params.yaml (the host names no method): without them a grid shows the input
# and the ground truth, and Fig. 7 is not drawn
DEFAULTS = {
    "which": list(NAMES),
    "images": 2,
    "crop": [0.25, 0.25, 0.5, 0.5],
    "show_input": True,
    "figure5": {"tasks": ["denoise", "deblur"], "methods": []},
    "figure6": {"tasks": ["sr"], "methods": []},
    "figure7": {"image": "skimage:brick.png", "tasks": ["denoise", "deblur", "sr"],
                "method": None, "baseline": None},
}
SKIMAGE = "skimage:"
FIX = "make them with the workflow: snakemake --cores all figures"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder to write the figures and index.json to (default: "
                        "<paths.results>/figures); with --prepare-ood: the folder of Fig. 7's "
                        "ground truth")
    p.add_argument("--only", default=None, metavar="NAMES",
                   help=f"comma-separated figures to draw (default: figures.which of "
                        f"params.yaml); of: {', '.join(NAMES)}")
    p.add_argument("--prepare-ood", action="store_true",
                   help="write Fig. 7's ground truth (figures.figure7.image at data.resolution) "
                        "into --out, instead of drawing")


def run(args) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from ..plan import Plan

    cfg = load_config(args)
    plan = Plan.of(cfg)
    fp = FigurePlan(plan)
    fp.check()
    if args.prepare_ood:
        if not args.out:
            raise ConfigError("--prepare-ood needs --out DIR (the workflow gives "
                              f"{fp.ood_gt_dir()})")
        man = prepare_ood(cfg, args.out)
        print(f"{args.out}: {man['files'][0]['name']} from {man['image']} "
              f"({man['resolution']} px)")
        return 0
    only = None
    if args.only:
        only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in only if n not in NAMES]
        if unknown:
            raise ConfigError(f"--only: unknown figure(s) {unknown}; the figures are "
                              f"{', '.join(NAMES)}")
    out = Path(args.out) if args.out else Path(fp.out_dir())
    return draw_all(fp, out, only)


# ------------------------------------------------------------------------------- the plan
class FigurePlan:
    """Which figures a configuration draws, from which files: shared by the command and the
    workflow (workflow/rules/figures.smk), so the rule's inputs and outputs are the files the
    command reads and writes."""

    def __init__(self, plan):
        self.plan = plan
        self.cfg = plan.cfg
        self.fcfg = _merged(DEFAULTS, self.cfg.get("figures") or {})

    def check(self) -> None:
        """ConfigError for a method the figures name that is not defined under ``methods:`` (a
        misspelt name; a defined one that Table 1 lacks is left out with a note). Checked when
        drawing, not when the workflow is read: a configuration without some method still runs
        its other targets."""
        f7 = self.fcfg["figure7"]
        for key, names in (("figure5.methods", self.fcfg["figure5"]["methods"]),
                           ("figure6.methods", self.fcfg["figure6"]["methods"]),
                           ("figure7.method", [f7["method"]]),
                           ("figure7.baseline", [f7["baseline"]])):
            unknown = [m for m in names if m is not None and m not in self.cfg["methods"]]
            if unknown:
                raise ConfigError(f"figures.{key} names {unknown}, which methods: does not "
                                  f"define (defined: {', '.join(sorted(self.cfg['methods']))})")

    # .................................................................. what is drawn
    def selected(self, only=None) -> list[str]:
        """The figures drawn, in :data:`NAMES` order: ``figures.which`` (or ``only``), without
        Fig. 4 when the configuration has no ``figure4:`` and without Fig. 7 when it names no
        ``figures.figure7.method``."""
        which = set(only if only is not None else self.fcfg["which"])
        return [n for n in NAMES if n in which and (n != "figure4" or self.cfg.get("figure4"))
                and (n != "figure7" or self.fcfg["figure7"]["method"])]

    def out_dir(self) -> str:
        return str(Path(self.plan.results) / "figures")

    def bases(self, name: str) -> list[str]:
        """The file names (without suffix) of figure ``name``."""
        if name == "figure4":
            return [f"figure4_{t}" for t in self.figure4_tasks()] + ["figure4_metrics"]
        return [name]

    def outputs(self, only=None, out_dir: str | None = None) -> list[str]:
        """Every file the command writes: each figure's PNG and PDF, then index.json."""
        out = Path(out_dir or self.out_dir())
        files = [str(out / f"{b}.{ext}") for n in self.selected(only) for b in self.bases(n)
                 for ext in ("png", "pdf")]
        return files + [str(out / "index.json")]

    def inputs(self, name: str) -> list[str]:
        """The files figure ``name`` reads (the workflow's inputs of the ``figures`` rule)."""
        p = self.plan
        files = [p.gt_manifest()]
        if name in ("figure5", "figure6"):
            for task, methods in self.grid_methods(name).items():
                files += self._input_column_files(task)
                for m in methods:
                    files += [p.restored_manifest(m, task, "test"), p.metrics_file(m, task)]
        elif name == "figure4":
            for task in self.figure4_tasks():
                files += self._input_column_files(task)
            files += p.figure4_inputs()
        elif name == "figure7":
            files += [self.ood_gt_manifest()]
            for task in self.ood_tasks():
                files.append(self.ood_lq_manifest(task))
                files += [self.ood_restored_manifest(m, task) for m in self.ood_methods(task)]
        elif name == "perception_distortion":
            files.append(self.stats_csv())
        elif name == "psnr_distributions":
            files += [p.metrics_file(m, t) for m, t in p.table_cells()]
        return list(dict.fromkeys(files))

    def all_inputs(self, only=None) -> list[str]:
        return list(dict.fromkeys(f for n in self.selected(only) for f in self.inputs(n)))

    def stats_csv(self) -> str:
        return self.plan.table1_csv().replace(".csv", "_stats.csv")

    # .................................................................. image grids
    def cells(self) -> set:
        return set(self.plan.table_cells())

    def grid_methods(self, name: str) -> dict[str, list[str]]:
        """``{task: [methods]}`` of Fig. 5 or 6: its tasks that Table 1 runs, each with the
        figure's methods (paper order) that are Table 1 cells of this configuration."""
        spec = self.fcfg[name]
        cells = self.cells()
        return {t: [m for m in spec["methods"] if (m, t) in cells]
                for t in spec["tasks"] if t in self.cfg["table1"]["tasks"]}

    def grid_left_out(self, name: str) -> list[dict]:
        spec = self.fcfg[name]
        cells = self.cells()
        out = [{"task": t, "why": "not a task of this configuration's Table 1 (table1.tasks)"}
               for t in spec["tasks"] if t not in self.cfg["table1"]["tasks"]]
        for t in spec["tasks"]:
            if t in self.cfg["table1"]["tasks"]:
                out += [{"method": m, "task": t,
                         "why": "not in this configuration's Table 1 for this task"}
                        for m in spec["methods"] if (m, t) not in cells]
        return out

    def input_column(self, task: str) -> dict | None:
        """The input column of a grid: Table 1's reference row (the degraded input as the
        methods see it: for SR the bicubic upsampling of the method ``input``) where it is a
        cell, else the degraded test image itself; None with ``figures.show_input: false``."""
        if not self.fcfg["show_input"]:
            return None
        p = self.plan
        if ("input", task) in self.cells():
            return {"key": "input", "dir": p.restored_dir("input", task, "test"),
                    "manifest": p.restored_manifest("input", task, "test"),
                    "metrics": p.metrics_file("input", task), "output": p.outputs("input")[0]}
        return {"key": "input", "dir": p.lq_dir(task, "test"),
                "manifest": p.lq_manifest(task, "test"), "metrics": None, "output": None}

    def _input_column_files(self, task: str) -> list[str]:
        col = self.input_column(task)
        return [] if col is None else [f for f in (col["manifest"], col["metrics"]) if f]

    def figure4_tasks(self) -> list[str]:
        f4 = self.cfg.get("figure4") or {}
        return [t for t in f4.get("tasks", []) if any(
            (m, t) in self.plan.figure4_cells() for m in f4.get("pairs", {}))]

    def figure4_pairs(self, task: str) -> list[tuple[str, str]]:
        cells = set(self.plan.figure4_cells())
        return [(a, i) for a, i in self.cfg["figure4"]["pairs"].items()
                if (a, task) in cells and (i, task) in cells]

    # .................................................................. Fig. 7 (OOD)
    def ood_root(self) -> Path:
        return Path(self.plan.results) / "ood"

    def ood_gt_dir(self) -> str:
        return str(self.ood_root() / "gt")

    def ood_gt_manifest(self) -> str:
        return str(Path(self.ood_gt_dir()) / "manifest.json")

    def ood_lq_dir(self, task: str) -> str:
        return str(self.ood_root() / "lq" / task)

    def ood_lq_manifest(self, task: str) -> str:
        return str(Path(self.ood_lq_dir(task)) / "manifest.json")

    def ood_restored_dir(self, method: str, task: str) -> str:
        return str(self.ood_root() / "restored" / method / task)

    def ood_restored_manifest(self, method: str, task: str) -> str:
        return str(Path(self.ood_restored_dir(method, task)) / "manifest.json")

    def ood_tasks(self) -> list[str]:
        """Fig. 7's tasks (``figures.figure7.tasks``) where its UGPNet is a Table 1 cell (the
        figure restores with Table 1's trained models only)."""
        f7 = self.fcfg["figure7"]
        cells = self.cells()
        return [t for t in f7["tasks"] if (f7["method"], t) in cells]

    def ood_methods(self, task: str) -> list[str]:
        f7 = self.fcfg["figure7"]
        return [m for m in dict.fromkeys((f7["method"], f7["baseline"])) if m is not None and
                (m, task) in self.cells()]

    def ood_left_out(self) -> list[dict]:
        f7 = self.fcfg["figure7"]
        cells = self.cells()
        return [{"method": m, "task": t, "why": "not in this configuration's Table 1 for this "
                 "task (Fig. 7 restores with Table 1's trained models only)"}
                for t in f7["tasks"] for m in (f7["method"], f7["baseline"])
                if m is not None and (m, t) not in cells]

    def ood_config(self) -> dict:
        """What defines Fig. 7's ground truth (the workflow reruns its preparation on a
        change)."""
        return {"image": self.fcfg["figure7"]["image"],
                "resolution": int(self.cfg["data"]["resolution"])}


def _merged(base: Mapping, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(base[k], v) if isinstance(v, Mapping) and isinstance(base.get(k),
                                                                              Mapping) else v
    return out


# ------------------------------------------------------------------------------- Fig. 7's image
def resolve_ood_image(cfg: Mapping, spec: str) -> Path:
    """The file of ``figures.figure7.image``: ``skimage:<file>`` (a sample of the installed
    scikit-image wheel) or a path. A scikit-image sample that this configuration's bundled
    data use (any split) is refused: it would not be out of distribution."""
    from ..data import sources as S
    from ..errors import ConfigError, DataError
    from ..io import sha256_file

    if spec.startswith(SKIMAGE):
        name = spec[len(SKIMAGE):]
        path = S.skimage_data_dir() / name
        if not path.is_file():
            raise ConfigError(f"figures.figure7.image '{spec}': scikit-image ships no '{name}' "
                              f"(in {S.skimage_data_dir()}); choose another sample (the default "
                              f"is skimage:brick.png) or give the path of a photograph.")
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise DataError(f"figures.figure7.image '{spec}' does not exist: give the path of a "
                            f"photograph (not a face, not in the training data) or "
                            f"skimage:<file> (default skimage:brick.png).")
    if cfg["data"]["source"] == "bundled":
        digest = sha256_file(path)
        for photo in S.BUNDLED_PHOTOS:
            split = S.bundled_assignment()[photo.name]
            for rel in photo.files:
                src = S.skimage_data_dir() / rel
                same = src.resolve() == path.resolve() or (src.is_file()
                                                           and sha256_file(src) == digest)
                if same and split is not None:
                    raise ConfigError(
                        f"figures.figure7.image '{spec}' is the bundled photo '{photo.name}', "
                        f"which this configuration's data use for the {split} split: it is not "
                        f"out of distribution. Choose an image no split uses (default "
                        f"skimage:brick.png) or a photograph of your own.")
    return path


def prepare_ood(cfg: Mapping, out_dir) -> dict:
    """Fig. 7's ground truth in ``out_dir``: the photograph's central square (side = its short
    side), resized with PIL's Lanczos filter to ``data.resolution`` (grey photographs become
    three equal channels, :func:`ugpnet.io.read_image`), as ``<stem>.png``; ``manifest.json``
    (written last; an old one is removed first) records the source, its sha256 and the
    geometry."""
    import numpy as np
    from PIL import Image

    from ..io import atomic_write_json, read_image, sha256_file, write_png

    spec = str(cfg.get("figures", {}).get("figure7", {}).get("image")
               or DEFAULTS["figure7"]["image"])
    src = resolve_ood_image(cfg, spec)
    out = Path(out_dir)
    manifest = out / "manifest.json"
    manifest.unlink(missing_ok=True)
    img = read_image(src)
    h, w = img.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    square = img[y0:y0 + side, x0:x0 + side]
    res = int(cfg["data"]["resolution"])
    if side != res:
        square = np.asarray(Image.fromarray(square).resize((res, res), Image.Resampling.LANCZOS))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    name = f"{src.stem}.png"
    write_png(out / name, np.ascontiguousarray(square))
    man = {"tool": "ugpnet figures --prepare-ood", "image": spec, "source_file": str(src),
           "source_sha256": sha256_file(src), "source_size": [w, h], "resolution": res,
           "geometry": f"central square {side}x{side} at ({x0}, {y0}), PIL Lanczos to "
                       f"{res}x{res}",
           "files": [{"name": name, "sha256": sha256_file(out / name)}]}
    atomic_write_json(manifest, man)
    return man


# ------------------------------------------------------------------------------- drawing
class Sources:
    """The manifests and metric files a figure reads, each read once; every image shown is
    checked against the sha256 its manifest records."""

    def __init__(self):
        self._json: dict = {}
        self._records: dict = {}

    def manifest(self, path) -> dict:
        import json

        from ..errors import DataError

        path = str(path)
        if path not in self._json:
            try:
                self._json[path] = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise DataError(f"manifest '{path}' is missing or not JSON ({e}); {FIX}.") \
                    from None
        return self._json[path]

    def digest(self, manifest_path, name: str, output: str | None = None,
               primary: str | None = None) -> str:
        """The sha256 ``manifest_path`` records for file ``name`` (a restore manifest: of
        ``output``; a data manifest: its ``files`` list; the ground truth: the test split)."""
        from ..errors import DataError

        man = self.manifest(manifest_path)
        found = None
        if "sha256" in man and isinstance(man["sha256"], dict):  # ugpnet restore
            found = (man["sha256"] if output in (None, primary) else
                     (man.get("intermediate_sha256") or {}).get(output, {})).get(name)
        elif "splits" in man:  # ugpnet prepare
            found = {f["name"]: f["sha256"] for f in man["splits"]["test"]["files"]}.get(name)
        else:  # ugpnet degrade, ugpnet figures --prepare-ood
            found = {f["name"]: f.get("sha256") for f in man.get("files", [])}.get(name)
        if found is None:
            raise DataError(f"manifest '{manifest_path}' records no '{name}'"
                            f"{f' of output {output}' if output else ''}; {FIX}.")
        return found

    def shown(self, path, manifest_path, output=None, primary=None) -> dict:
        """``{file, sha256, manifest}`` of an image shown, after checking its sha256."""
        from ..errors import DataError
        from ..io import sha256_file

        path = Path(path)
        want = self.digest(manifest_path, path.name, output, primary)
        if not path.is_file():
            raise DataError(f"image '{path}' (listed in '{manifest_path}') is missing; {FIX}.")
        got = sha256_file(path)
        if got != want:
            raise DataError(f"image '{path}' is not the file '{manifest_path}' records (sha256 "
                            f"{got[:12]}... against {want[:12]}...): it changed after it was "
                            f"written; {FIX} (its step reruns when forced: --forcerun).")
        return {"file": str(path), "sha256": got, "manifest": str(manifest_path)}

    def per_image(self, metrics_file, output: str) -> dict:
        from ..metrics.evaluate import read_bundle_record

        key = (str(metrics_file), output)
        if key not in self._records:
            self._records[key] = read_bundle_record(metrics_file, "test", output)
        return self._records[key].get("per_image") or {}


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def metric_line(values: Mapping | None) -> str:
    """``24.31 dB | LPIPS 0.213`` of one image's metric values (what is there)."""
    if not values:
        return ""
    parts = []
    psnr, lpips = _num(values.get("psnr")), _num(values.get("lpips"))
    if not math.isnan(psnr):
        parts.append("PSNR inf" if math.isinf(psnr) else f"{psnr:.2f} dB")
    if not math.isnan(lpips):
        parts.append(f"LPIPS {lpips:.3f}")
    return " | ".join(parts)


def profile_note(cfg: Mapping) -> str:
    """The caveat every figure carries: which profile and data made it."""
    d = cfg["data"]
    what = (f"small-scale run on scikit-image photographs at {d['resolution']} px: not the "
            f"paper's networks, data or numbers (see table1.md for each method's options)"
            if d["source"] == "bundled" else f"{d['source']} data at {d['resolution']} px")
    return f"{cfg['profile']} profile, experiment {cfg['experiment']}: {what}."


def grid_ids(fp: FigurePlan, src: Sources) -> list[str]:
    """The fixed test images of the grids: ``figures.images`` = N, the first N images of the
    test split in its ground-truth manifest's order (bundled crops are dealt round-robin over
    the test photographs, so 2 shows one crop of each; FFHQ/CelebA-HQ: ascending id), or a list
    of ids (file stems)."""
    from ..errors import ConfigError

    files = [f["name"] for f in src.manifest(fp.plan.gt_manifest())["splits"]["test"]["files"]]
    stems = [Path(n).stem for n in files]
    want = fp.fcfg["images"]
    if isinstance(want, int):
        return stems[:want]
    missing = [i for i in want if str(i) not in stems]
    if missing:
        raise ConfigError(f"figures.images names {missing}, which the test split "
                          f"({fp.plan.gt_manifest()}) does not hold (its first ids: "
                          f"{stems[:5]})")
    return [str(i) for i in want]


def _gt_panel(fp: FigurePlan, src: Sources, stem: str):
    from ..figures import Panel

    path = Path(fp.plan.gt_dir("test")) / f"{stem}.png"
    return Panel("GT", path, "", "gt"), {"column": "gt", **src.shown(path, fp.plan.gt_manifest())}


def _input_panel(fp: FigurePlan, src: Sources, task: str, stem: str):
    from ..figures import Panel

    col = fp.input_column(task)
    if col is None:
        return None, None
    path = Path(col["dir"]) / f"{stem}.png"
    values = src.per_image(col["metrics"], col["output"]).get(stem) if col["metrics"] else None
    shown = src.shown(path, col["manifest"], col["output"], col["output"])
    title = "Input" if col["metrics"] else "Input (degraded)"
    return Panel(title, path, metric_line(values), "input"), {"column": "input", **shown}


def _method_panel(fp: FigurePlan, src: Sources, method: str, task: str, stem: str):
    from ..figures import Panel, display_name

    p = fp.plan
    output = p.outputs(method)[0]
    path = Path(p.restored_dir(method, task, "test")) / f"{stem}.png"
    shown = src.shown(path, p.restored_manifest(method, task, "test"), output, output)
    values = src.per_image(p.metrics_file(method, task), output).get(stem)
    return (Panel(display_name(method), path, metric_line(values), method),
            {"column": method, **shown, "metrics": {k: _num(v) for k, v in (values or {}).items()}})


def _grid(fp: FigurePlan, src: Sources, columns: Mapping[str, list[str]], ids: list[str]):
    """Rows (and their provenance) of an image grid: per task, per test id: the input, the
    ``columns[task]`` methods, the ground truth."""
    from ..figures import Row, TASK_NAMES

    rows, images = [], []
    for task, methods in columns.items():
        for stem in ids:
            panels, shown = [], []
            for panel, rec in [_input_panel(fp, src, task, stem),
                               *[_method_panel(fp, src, m, task, stem) for m in methods],
                               _gt_panel(fp, src, stem)]:
                if panel is not None:
                    panels.append(panel)
                    shown.append(rec)
            rows.append(Row(f"{TASK_NAMES.get(task, task)}\n{stem}", panels))
            images.append({"task": task, "id": stem, "panels": shown})
    return rows, images


def _attach_layout(images: list[dict], layout: dict) -> None:
    """Each panel's place (and crop box) in the PNG, into the provenance of its image."""
    for panel in layout["panels"]:
        rec = images[panel["row"]]["panels"][panel["column"]]
        rec["bbox_px" if panel["kind"] == "full" else "crop_bbox_px"] = panel["bbox_px"]
        rec["crop_box_px"] = panel["crop_box_px"]


def _left_out_note(left: list[dict]) -> str:
    from ..figures import display_name

    methods = list(dict.fromkeys(display_name(x["method"]) for x in left if "method" in x))
    tasks = list(dict.fromkeys(x["task"] for x in left if "method" not in x))
    parts = []
    if methods:
        parts.append(f"left out (not in this run's Table 1): {', '.join(methods)}.")
    if tasks:
        parts.append(f"tasks not in this run's Table 1: {', '.join(tasks)}.")
    return " ".join(parts)


def draw_grid_figure(fp: FigurePlan, src: Sources, name: str, out: Path, ids: list[str]) -> dict:
    from ..figures import draw_image_grid

    crop = fp.fcfg["crop"]
    columns = fp.grid_methods(name)
    rows, images = _grid(fp, src, columns, ids)
    left = fp.grid_left_out(name)
    what = {"figure5": "Fig. 5: denoising and deblurring", "figure6": "Fig. 6: 8x super-resolution"}
    title = (f"{what[name]} (test images; PSNR | LPIPS of each image; "
             f"{fp.cfg['profile']} profile)")
    note = " ".join(x for x in (_left_out_note(left), profile_note(fp.cfg)) if x)
    layout = draw_image_grid(rows, out / name, title=title, crop=crop, note=note)
    _attach_layout(images, layout)
    return {"name": name, "files": _rel(layout["files"], out), "kind": "image grid",
            "tasks": list(columns), "columns": {t: (["input"] if fp.fcfg["show_input"] else [])
                                                + m + ["gt"] for t, m in columns.items()},
            "images": images, "crop_fraction_xywh": list(crop), "left_out": left,
            "size_px": layout["size_px"], "note": note}


def draw_figure4(fp: FigurePlan, src: Sources, out: Path, ids: list[str]) -> list[dict]:
    import pandas as pd

    from ..figures import draw_backbone_comparison, draw_image_grid
    from ..stats import bootstrap_ci

    entries = []
    p = fp.plan
    note = profile_note(fp.cfg)
    rows_df = []
    backbones = list(fp.cfg["figure4"]["pairs"])
    for task in fp.figure4_tasks():
        pairs = fp.figure4_pairs(task)
        methods = [m for pair in pairs for m in pair]
        rows, images = _grid(fp, src, {task: methods}, ids)
        from ..figures import TASK_NAMES

        layout = draw_image_grid(
            rows, out / f"figure4_{task}", crop=fp.fcfg["crop"], note=note,
            title=f"Fig. 4: each backbone alone and inside UGPNet, "
                  f"{TASK_NAMES.get(task, task)} (test images; PSNR | LPIPS; "
                  f"{fp.cfg['profile']} profile)")
        _attach_layout(images, layout)
        entries.append({"name": f"figure4_{task}", "files": _rel(layout["files"], out),
                        "kind": "image grid", "tasks": [task],
                        "columns": {task: (["input"] if fp.fcfg["show_input"] else []) + methods
                                    + ["gt"]},
                        "pairs": [{"alone": a, "inside": i} for a, i in pairs],
                        "images": images, "crop_fraction_xywh": list(fp.fcfg["crop"]),
                        "size_px": layout["size_px"], "note": note})
        for alone, inside in pairs:
            for setting, m in (("alone", alone), ("inside", inside)):
                output = p.outputs(m)[0]
                per = src.per_image(p.metrics_file(m, task), output)
                for metric in ("psnr", "lpips"):
                    vals = [_num(v.get(metric)) for v in per.values()]
                    vals = [v for v in vals if math.isfinite(v)]
                    mean = sum(vals) / len(vals) if vals else math.nan
                    low, high = bootstrap_ci(vals) if len(vals) >= 2 else (math.nan, math.nan)
                    rows_df.append({"task": task, "backbone": alone, "setting": setting,
                                    "method": m, "metric": metric, "mean": mean, "ci_low": low,
                                    "ci_high": high, "n_images": len(vals)})
    df = pd.DataFrame(rows_df, columns=["task", "backbone", "setting", "method", "metric", "mean",
                                        "ci_low", "ci_high", "n_images"])
    shown = [b for b in backbones if len(df) and (df["backbone"] == b).any()]
    res = draw_backbone_comparison(
        df, out / "figure4_metrics", tasks=fp.figure4_tasks(), backbones=shown,
        title=f"Fig. 4: backbones alone and inside UGPNet, test split means with 95 % "
              f"bootstrap intervals ({fp.cfg['profile']} profile)", note=note)
    entries.append({"name": "figure4_metrics", "files": _rel(res["files"], out),
                    "kind": "dumbbell", "values": _records(df), "note": note})
    return entries


def draw_figure7(fp: FigurePlan, src: Sources, out: Path) -> dict:
    from ..figures import Panel, Row, TASK_NAMES, display_name, draw_image_grid
    from ..io import read_image
    from ..metrics.evaluate import psnr

    f7 = fp.fcfg["figure7"]
    gt_man = src.manifest(fp.ood_gt_manifest())
    name = gt_man["files"][0]["name"]
    gt_path = Path(fp.ood_gt_dir()) / name
    gt_rec = src.shown(gt_path, fp.ood_gt_manifest())
    gt = read_image(gt_path)

    def panel(title, path, manifest, key, output=None, primary=None):
        rec = src.shown(path, manifest, output, primary)
        img = read_image(path)
        value = psnr(gt, img) if img.shape == gt.shape else math.nan
        rec["metrics"] = {"psnr": value}
        line = "" if math.isnan(value) else ("PSNR inf" if math.isinf(value) else
                                              f"{value:.2f} dB")
        return Panel(title, path, line, key), {"column": key, **rec}

    rows, images = [], []
    method = f7["method"]
    outs = list(fp.plan.outputs(method))  # the result first, then the intermediate images
    primary = outs[0]
    baseline = f7["baseline"] if any(f7["baseline"] in fp.ood_methods(t)[1:]
                                     for t in fp.ood_tasks()) else None
    beside = f", beside {display_name(baseline)}" if baseline else ""
    for task in fp.ood_tasks():
        panels = [panel("Input (degraded)", Path(fp.ood_lq_dir(task)) / name,
                        fp.ood_lq_manifest(task), "input")]
        for output in outs[1:] + outs[:1]:
            folder = Path(fp.ood_restored_dir(method, task))
            path = folder / (name if output == primary else f"{output}/{name}")
            title = f"{display_name(method)} {output}"
            panels.append(panel(title, path, fp.ood_restored_manifest(method, task),
                                f"{method}:{output}", output, primary))
        for m in fp.ood_methods(task)[1:]:
            o = fp.plan.outputs(m)[0]
            panels.append(panel(display_name(m), Path(fp.ood_restored_dir(m, task)) / name,
                                fp.ood_restored_manifest(m, task), m, o, o))
        panels.append((Panel("GT", gt_path, "", "gt"), {"column": "gt", **gt_rec}))
        rows.append(Row(f"{TASK_NAMES.get(task, task)}\n{Path(name).stem}",
                        [x for x, _ in panels]))
        images.append({"task": task, "id": Path(name).stem, "panels": [r for _, r in panels]})
    left = fp.ood_left_out()
    note = " ".join(x for x in (
        f"Out of distribution: {gt_man['image']} ({gt_man['geometry']}), in no split of the "
        f"training data; degraded as each task's test split. PSNR against it (no LPIPS here).",
        _left_out_note(left), profile_note(fp.cfg)) if x)
    layout = draw_image_grid(rows, out / "figure7", crop=fp.fcfg["crop"], note=note,
                             title=f"Fig. 7: an out-of-distribution photograph through "
                                   f"{display_name(method)}'s {', '.join(outs[1:])} and "
                                   f"{outs[0]}{beside} ({fp.cfg['profile']} profile)")
    _attach_layout(images, layout)
    return {"name": "figure7", "files": _rel(layout["files"], out), "kind": "image grid",
            "tasks": fp.ood_tasks(), "ood_image": {"spec": gt_man["image"],
                                                   "source_file": gt_man["source_file"],
                                                   "source_sha256": gt_man["source_sha256"],
                                                   "geometry": gt_man["geometry"]},
            "images": images, "crop_fraction_xywh": list(fp.fcfg["crop"]), "left_out": left,
            "size_px": layout["size_px"], "note": note}


def draw_perception(fp: FigurePlan, src: Sources, out: Path) -> dict:
    import pandas as pd

    from ..errors import DataError
    from ..figures import draw_perception_distortion

    path = fp.stats_csv()
    try:
        stats = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise DataError(f"'{path}' is missing or unreadable ({e}); make it with: snakemake "
                        f"--cores all results/table1.csv") from None
    need = {"method", "task", "metric", "mean", "ci_low", "ci_high"}
    if not need <= set(stats.columns):
        raise DataError(f"'{path}' lacks the columns {sorted(need - set(stats.columns))}; "
                        f"remake it: snakemake --cores all results/table1.csv --forcerun table1")
    p = fp.plan
    methods = p.table1_methods()
    families = {m: p.family(m) for m in methods}
    note = profile_note(fp.cfg)
    res = draw_perception_distortion(
        stats, out / "perception_distortion", families=families, methods=methods,
        tasks=list(fp.cfg["table1"]["tasks"]), note=note,
        title=f"Perception-distortion: Table 1's methods on the test split, 95 % intervals "
              f"({fp.cfg['profile']} profile)")
    from ..io import sha256_file

    return {"name": "perception_distortion", "files": _rel(res["files"], out),
            "kind": "scatter", "source": {"file": path, "sha256": sha256_file(path)},
            "points": res["points"], "note": note}


def draw_distributions(fp: FigurePlan, src: Sources, out: Path) -> dict:
    import pandas as pd

    from ..figures import draw_psnr_distributions
    from ..io import sha256_file
    from ..plan import table1_rows

    p = fp.plan
    rows, sources = [], {}
    for m, t in p.table_cells():
        path = p.metrics_file(m, t)
        per = src.per_image(path, p.outputs(m)[0])
        sources[f"{m}/{t}"] = {"file": path, "sha256": sha256_file(path)}
        rows += [{"method": m, "task": t, "image": k, "psnr": _num(v.get("psnr"))}
                 for k, v in per.items()]
    df = pd.DataFrame(rows, columns=["method", "task", "image", "psnr"])
    order = table1_rows(fp.cfg)
    note = profile_note(fp.cfg)
    res = draw_psnr_distributions(df, out / "psnr_distributions", order=order, note=note,
                                  title=f"Per-image PSNR of Table 1's methods, test split "
                                        f"({fp.cfg['profile']} profile)")
    return {"name": "psnr_distributions", "files": _rel(res["files"], out), "kind": "box",
            "counts": res["counts"], "left_out_non_finite": res["left_out"],
            "sources": sources, "note": note}


def _rel(files, out: Path) -> list[str]:
    return [Path(f).name if Path(f).parent == out else str(f) for f in files]


def _records(df) -> list[dict]:
    out = []
    for rec in df.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in rec.items()})
    return out


def draw_all(fp: FigurePlan, out: Path, only=None) -> int:
    """Draw every selected figure whose inputs exist; index.json when all are drawn, else a
    DataError naming the missing files."""
    from ..errors import DataError
    from ..io import atomic_write_json
    from ..provenance import code_version

    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.json"
    index_path.unlink(missing_ok=True)  # the completion marker goes first
    src = Sources()
    entries, missing = [], {}
    ids: list[str] | None = None
    for name in fp.selected(only):
        before = len(entries)
        absent = [f for f in fp.inputs(name) if not Path(f).is_file()]
        if absent:
            missing[name] = absent
            continue
        if name in ("figure4", "figure5", "figure6") and ids is None:
            ids = grid_ids(fp, src)
        if name in ("figure5", "figure6"):
            entries.append(draw_grid_figure(fp, src, name, out, ids))
        elif name == "figure4":
            entries += draw_figure4(fp, src, out, ids)
        elif name == "figure7":
            entries.append(draw_figure7(fp, src, out))
        elif name == "perception_distortion":
            entries.append(draw_perception(fp, src, out))
        else:
            entries.append(draw_distributions(fp, src, out))
        print(f"{name}: {', '.join(f for e in entries[before:] for f in e['files'])}")
    if missing:
        lines = [f"  {name}: {', '.join(files[:4])}"
                 + (f" ... ({len(files)} files)" if len(files) > 4 else "")
                 for name, files in missing.items()]
        drawn = [e["name"] for e in entries]
        raise DataError("these figures' inputs are missing, so they were not drawn "
                        f"(drawn: {', '.join(drawn) or 'none'}; no index.json written):\n"
                        + "\n".join(lines) + f"\n{FIX[0].upper() + FIX[1:]} (or draw only the "
                        f"others: --only NAMES).")
    cfg = fp.cfg
    index = {"schema": "ugpnet-figures/1", "profile": cfg["profile"],
             "experiment": cfg["experiment"], "note": profile_note(cfg),
             "code": code_version(),
             "image_choice": (f"figures.images = {fp.fcfg['images']!r}: "
                              + ("the first N test images in the ground-truth manifest's order"
                                 if isinstance(fp.fcfg["images"], int) else "these test ids")),
             "test_ids": ids, "crop_fraction_xywh": list(fp.fcfg["crop"]),
             "figures": entries}
    atomic_write_json(index_path, _json_safe(index))
    print(f"{out}: {len(entries)} figures, index.json")
    return 0


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return _json_safe(obj.item())
    return obj
