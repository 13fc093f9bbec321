"""The figures (ugpnet/figures.py, ugpnet figures, the figures rule): each drawing writes a PNG
and a PDF, the grids show the documented images in the documented order (read back from the
PNG: every test image has its own colour), the crop panels show the crop, the index lists what
is shown, a missing input is a clear error, and the figures rule builds in a dry run."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ugpnet.errors import ConfigError, DataError
from ugpnet.io import sha256_file, write_png

REPO = Path(__file__).resolve().parents[1]

# outer colour (outside the crop box) and inner colour (inside it) of each synthetic image
COLOURS = [((230, 30, 30), (30, 230, 230)), ((30, 200, 30), (200, 30, 200)),
           ((30, 30, 230), (230, 230, 30)), ((240, 140, 0), (0, 110, 240)),
           ((120, 60, 20), (150, 255, 150)), ((255, 160, 200), (10, 90, 60))]
CROP = (0.25, 0.25, 0.5, 0.5)


def _image(outer, inner, size=32) -> np.ndarray:
    img = np.empty((size, size, 3), np.uint8)
    img[:] = outer
    a, b = round(CROP[0] * size), round((CROP[0] + CROP[2]) * size)
    img[a:b, a:b] = inner
    return img


def _pixel(png: np.ndarray, bbox, fx: float, fy: float) -> np.ndarray:
    """The colour at the fraction (fx, fy) of a panel's box in the PNG."""
    x0, y0, x1, y1 = bbox
    return png[int(y0 + fy * (y1 - y0)), int(x0 + fx * (x1 - x0)), :3].astype(int)


def _close(a, b, tol=12) -> bool:
    return bool(np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= tol)


def _check_files(files):
    png, pdf = (Path(f) for f in files)
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    assert Image.open(png).format == "PNG"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert not [p for p in png.parent.iterdir() if p.name.startswith(".")]  # no temporaries


# ----------------------------------------------------------------------------- drawing functions
def test_the_grid_shows_each_image_in_its_cell_and_the_crop_below_it(tmp_path):
    from ugpnet.figures import Panel, Row, crop_box, draw_image_grid

    rows = []
    for r in range(2):
        panels = []
        for c in range(3):
            outer, inner = COLOURS[r * 3 + c]
            path = tmp_path / f"img_{r}{c}.png"
            write_png(path, _image(outer, inner))
            panels.append(Panel(f"M{c}", path, "20.00 dB | LPIPS 0.100", f"m{c}"))
        rows.append(Row(f"denoising\nid_{r}", panels))
    layout = draw_image_grid(rows, tmp_path / "grid", title="t", crop=CROP, note="a note")
    _check_files(layout["files"])
    png = np.asarray(Image.open(layout["files"][0]).convert("RGB"))
    assert [png.shape[1], png.shape[0]] == layout["size_px"]
    full = [p for p in layout["panels"] if p["kind"] == "full"]
    crops = [p for p in layout["panels"] if p["kind"] == "crop"]
    assert [(p["row"], p["column"], p["key"]) for p in full] == \
        [(r, c, f"m{c}") for r in range(2) for c in range(3)]
    for p in full:
        outer, inner = COLOURS[p["row"] * 3 + p["column"]]
        assert _close(_pixel(png, p["bbox_px"], 0.1, 0.1), outer), p
        assert _close(_pixel(png, p["bbox_px"], 0.5, 0.5), inner), p
        assert p["crop_box_px"] == list(crop_box((32, 32), CROP)) == [8, 8, 24, 24]
    for p in crops:  # the crop panel is the inside of the box only, zoomed to the panel
        _, inner = COLOURS[p["row"] * 3 + p["column"]]
        for fx, fy in ((0.12, 0.12), (0.5, 0.5), (0.88, 0.88), (0.12, 0.88)):
            assert _close(_pixel(png, p["bbox_px"], fx, fy), inner), (p, fx, fy)
    # each crop row lies below its image row, same columns
    for f, c in zip(full, crops):
        assert (f["row"], f["column"]) == (c["row"], c["column"])
        assert c["bbox_px"][1] > f["bbox_px"][3] and abs(c["bbox_px"][0] - f["bbox_px"][0]) <= 1


def test_crop_box_is_in_the_pixels_of_each_image():
    from ugpnet.figures import crop_box

    assert crop_box((64, 64, 3), CROP) == (16, 16, 48, 48)
    assert crop_box((8, 8, 3), CROP) == (2, 2, 6, 6)  # an 8x8 SR input: the same region
    assert crop_box((4, 4), (0.9, 0.9, 0.01, 0.01)) == (3, 3, 4, 4)  # at least one pixel


def _stats(fid_interval: bool) -> pd.DataFrame:
    rows = []
    for task in ("denoise", "sr"):
        for i, method in enumerate(("input", "nafnet", "ugpnet")):
            for metric, base in (("psnr", 20.0), ("lpips", 0.3), ("fid", 90.0)):
                mean = base + i
                ci = (mean - 0.5, mean + 0.5) if metric != "fid" or (
                    fid_interval and method == "ugpnet") else (math.nan, math.nan)
                for vs in ("ugpnet", "other"):  # the csv repeats a cell per compared row
                    rows.append({"method": method, "task": task, "metric": metric, "mean": mean,
                                 "ci_low": ci[0], "ci_high": ci[1], "vs": vs})
    return pd.DataFrame(rows)


FAMILIES = {"input": "reference", "nafnet": "regression", "ugpnet": "generative"}


@pytest.mark.parametrize("fid_interval", [False, True])
def test_perception_distortion_draws_every_cell_with_the_finite_intervals(tmp_path,
                                                                          fid_interval):
    from ugpnet.figures import draw_perception_distortion

    res = draw_perception_distortion(_stats(fid_interval), tmp_path / "pd", families=FAMILIES,
                                     title="t", note="n")
    _check_files(res["files"])
    points = {(p["method"], p["task"]): p for p in res["points"]}
    assert set(points) == {(m, t) for m in FAMILIES for t in ("denoise", "sr")}
    assert points[("nafnet", "sr")]["psnr"] == 21.0 and points[("nafnet", "sr")]["fid"] == 91.0
    assert points[("nafnet", "sr")]["family"] == "regression"
    assert "fid" not in points[("nafnet", "sr")]["error_bars"]
    assert ("fid" in points[("ugpnet", "sr")]["error_bars"]) == fid_interval
    assert {"psnr", "lpips"} <= set(points[("input", "denoise")]["error_bars"])


def test_psnr_distributions_leave_out_non_finite_values(tmp_path):
    from ugpnet.figures import draw_psnr_distributions

    rows = [{"method": m, "task": "denoise", "image": f"i{k}", "psnr": 20.0 + k}
            for m in ("input", "ugpnet") for k in range(4)]
    rows.append({"method": "ugpnet", "task": "denoise", "image": "same", "psnr": math.inf})
    res = draw_psnr_distributions(pd.DataFrame(rows), tmp_path / "d",
                                  order={"denoise": ["input", "ugpnet"]}, title="t")
    _check_files(res["files"])
    assert res["counts"] == {"denoise": {"input": 4, "ugpnet": 4}} and res["left_out"] == 1


def test_backbone_comparison_pairs_each_backbone(tmp_path):
    from ugpnet.figures import draw_backbone_comparison

    rows = [{"task": t, "backbone": b, "setting": s, "metric": m, "mean": 20.0 + (s == "inside"),
             "ci_low": math.nan if b == "unet" else 19.0, "ci_high": math.nan if b == "unet"
             else 22.0} for t in ("deblur", "sr") for b in ("unet", "nafnet")
            for s in ("alone", "inside") for m in ("psnr", "lpips")]
    res = draw_backbone_comparison(pd.DataFrame(rows), tmp_path / "b", tasks=["deblur", "sr"],
                                   backbones=["unet", "nafnet"], title="t")
    _check_files(res["files"])
    assert [(p["task"], p["backbone"], p["settings"]) for p in res["pairs"]] == \
        [(t, b, ["alone", "inside"]) for t in ("deblur", "sr") for b in ("unet", "nafnet")]


def test_display_names():
    from ugpnet.figures import display_name

    assert display_name("gfpgan") == "GFP-GAN"
    assert display_name("ugpnet-hinet") == "UGPNet (HINet)"
    assert display_name("my_net") == "my_net"


# ----------------------------------------------------------------------------- the command
# tiny's Table 1: input, nafnet, rrdbnet, ugpnet wherever each runs the task
TINY_CELLS = {"denoise": ["input", "nafnet", "ugpnet"],
              "deblur": ["input", "nafnet", "rrdbnet", "ugpnet"],
              "sr": ["input", "nafnet", "rrdbnet", "ugpnet"]}
# every column its own colours: outer (outside the crop box) and inner (inside it)
PALETTE = [(230, 30, 30), (30, 200, 30), (30, 30, 230), (240, 140, 0), (120, 60, 20),
           (255, 160, 200), (10, 90, 60), (140, 0, 160), (0, 160, 160), (160, 160, 0),
           (90, 90, 90), (250, 250, 120), (0, 0, 0)]
KEYS = ["gt", "input", "nafnet", "rrdbnet", "ugpnet", "unet", "ugpnet-unet", "hinet",
        "ugpnet-hinet", "ugpnet-nafnet", "ugpnet-rrdbnet", "ugpnet:x_reg", "ugpnet:x_syn"]


def colours(key: str):
    """The (outer, inner) colours of a column's images (``ugpnet`` = its x_hat)."""
    outer = PALETTE[KEYS.index(key)]
    return outer, PALETTE[(KEYS.index(key) + 5) % len(PALETTE)]


def _restored(folder: Path, stems, key: str, size: int, outputs=("x_hat",), metrics=None):
    """A restored folder as ``ugpnet restore`` leaves it: the images of every output, then
    the manifest with their sha256."""
    digests = {o: {} for o in outputs}
    for o in outputs:
        sub = folder if o == outputs[0] else folder / o
        k = key if o == outputs[0] else f"{key}:{o}"
        for stem in stems:
            write_png(sub / f"{stem}.png", _image(*colours(k), size))
            digests[o][f"{stem}.png"] = sha256_file(sub / f"{stem}.png")
    (folder / "manifest.json").write_text(json.dumps(
        {"tool": "ugpnet restore", "checkpoint": None, "outputs": list(outputs),
         "sha256": digests[outputs[0]], "intermediate_sha256": {o: digests[o]
                                                                for o in outputs[1:]}}))


def _scored(plan, method, task, stems):
    per_image = {stem: {"psnr": 20.0 + k, "ssim": 0.5, "lpips": 0.1 * (k + 1)}
                 for k, stem in enumerate(stems)}
    mean = {"psnr": 21.5, "ssim": 0.5, "lpips": 0.25, "fid": 80.0}
    path = Path(plan.metrics_file(method, task))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": "ugpnet-evaluations/1", "method": method,
                                "task": task, "splits": {"test": {plan.outputs(method)[0]: {
                                    "mean": mean, "per_image": per_image, "protocol": {}}}}}))
    return mean


def _listed(folder: Path, names) -> None:
    """A data manifest (``ugpnet degrade``, ``ugpnet figures --prepare-ood``): ``files``."""
    (folder / "manifest.json").write_text(json.dumps(
        {"files": [{"name": n, "sha256": sha256_file(folder / n)} for n in names]}))


@pytest.fixture
def results(tmp_path, monkeypatch):
    """A tiny configuration's results, made up: the test split's ground truth (4 images; the
    manifest order is not the sorted order), every cell of Table 1 and of Figure 4 restored
    (each column's images in its own colours) and scored, table1_stats.csv, and Fig. 7's
    photograph degraded and restored (UGPNet with x_reg and x_syn; NAFNet as the baseline)."""
    from ugpnet.config import load_config
    from ugpnet.plan import Plan

    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    cfg = load_config(params="params.yaml", profile="tiny")
    plan = Plan.of(cfg)
    size = cfg["data"]["resolution"]
    ids = ["b_000", "a_000", "b_001", "a_001"]  # manifest order: round-robin over photos
    gt_dir = Path(plan.gt_dir("test"))
    for stem in ids:
        write_png(gt_dir / f"{stem}.png", _image(*colours("gt"), size))
    Path(plan.gt_manifest()).write_text(json.dumps({"format": "ugpnet-gt/1", "splits": {
        "test": {"count": 4, "files": [{"name": f"{s}.png", "sha256": sha256_file(
            gt_dir / f"{s}.png")} for s in ids]}}}))
    assert sorted(plan.table_cells()) == sorted((m, t) for t, ms in TINY_CELLS.items()
                                                for m in ms)
    stats = []
    for method, task in dict.fromkeys([*plan.table_cells(), *plan.figure4_cells()]):
        _restored(Path(plan.restored_dir(method, task, "test")), ids, method, size)
        mean = _scored(plan, method, task, ids)
        if (method, task) in set(plan.table_cells()):
            stats += [{"method": method, "task": task, "metric": k, "mean": v,
                       "ci_low": v - 1, "ci_high": v + 1} for k, v in mean.items()]
    pd.DataFrame(stats).to_csv(plan.table1_csv().replace(".csv", "_stats.csv"), index=False)
    ood = Path("results/tiny/default/ood")
    write_png(ood / "gt" / "brick.png", _image(*colours("gt"), size))
    (ood / "gt" / "manifest.json").write_text(json.dumps(
        {"image": "skimage:brick.png", "source_file": "brick.png", "source_sha256": "0" * 64,
         "geometry": "central square", "files": [{"name": "brick.png", "sha256": sha256_file(
             ood / "gt" / "brick.png")}]}))
    for task in TINY_CELLS:
        lq = ood / "lq" / task
        write_png(lq / "brick.png", _image(*colours("input"), 4 if task == "sr" else size))
        _listed(lq, ["brick.png"])
        _restored(ood / "restored" / "ugpnet" / task, ["brick"], "ugpnet", size,
                  outputs=plan.outputs("ugpnet"))
        _restored(ood / "restored" / "nafnet" / task, ["brick"], "nafnet", size)
    return plan, ids


def _panels_show_their_images(png: np.ndarray, entry: dict) -> None:
    """Every panel of an index entry shows its column's colours where the index says, and its
    crop panel the inside of the box."""
    for im in entry["images"]:
        for panel in im["panels"]:
            assert Path(panel["file"]).stem == im["id"]
            assert panel["sha256"] == sha256_file(panel["file"])
            outer, inner = colours(panel["column"])
            assert _close(_pixel(png, panel["bbox_px"], 0.1, 0.1), outer), panel
            assert _close(_pixel(png, panel["bbox_px"], 0.5, 0.5), inner), panel
            assert _close(_pixel(png, panel["crop_bbox_px"], 0.15, 0.85), inner), panel


def _figures(*extra) -> int:
    from ugpnet import cli

    return cli.main(["--params", "params.yaml", "--profile", "tiny", "figures", *extra])


def test_the_command_draws_the_documented_images_and_indexes_them(results):
    plan, ids = results
    assert _figures("--only", "figure5,figure6,perception_distortion,psnr_distributions") == 0
    out = Path(plan.results) / "figures"
    index = json.loads((out / "index.json").read_text())
    assert index["profile"] == "tiny" and index["test_ids"] == ids[:2]  # the first 2, in order
    figs = {f["name"]: f for f in index["figures"]}
    assert list(figs) == ["figure5", "figure6", "perception_distortion", "psnr_distributions"]
    for name in figs:
        _check_files([out / f for f in figs[name]["files"]])
    f5 = figs["figure5"]
    assert f5["columns"] == {"denoise": ["input", "nafnet", "ugpnet", "gt"],
                             "deblur": ["input", "nafnet", "ugpnet", "gt"]}  # paper's order
    # the paper's methods this profile's Table 1 lacks are left out, named, not an error
    assert {x["method"] for x in f5["left_out"]} == {"uformer", "gfpgan", "gpen", "vqfr"}
    assert "Uformer" in f5["note"] and "GFP-GAN" in f5["note"]
    png = np.asarray(Image.open(out / "figure5.png").convert("RGB"))
    assert [(im["task"], im["id"]) for im in f5["images"]] == \
        [(t, i) for t in ("denoise", "deblur") for i in ids[:2]]
    _panels_show_their_images(png, f5)
    for im in f5["images"]:
        metrics = {p["column"]: p.get("metrics") for p in im["panels"]}
        assert metrics["ugpnet"]["psnr"] == 20.0 + ids.index(im["id"])
    assert figs["figure6"]["columns"] == {"sr": ["input", "rrdbnet", "ugpnet", "gt"]}
    assert {(p["method"], p["task"]) for p in figs["perception_distortion"]["points"]} == \
        {(m, t) for t, ms in TINY_CELLS.items() for m in ms}
    assert figs["psnr_distributions"]["counts"]["sr"] == {"input": 4, "nafnet": 4, "rrdbnet": 4,
                                                          "ugpnet": 4}


def test_every_figure_by_default_fig4_and_fig7_included(results):
    plan, ids = results
    assert _figures("--set", "figures.figure7.baseline=nafnet") == 0
    out = Path(plan.results) / "figures"
    index = json.loads((out / "index.json").read_text())
    figs = {f["name"]: f for f in index["figures"]}
    assert list(figs) == ["figure4_deblur", "figure4_sr", "figure4_metrics", "figure5", "figure6",
                          "figure7", "perception_distortion", "psnr_distributions"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f for e in index["figures"] for f in e["files"]] + ["index.json"])
    pairs = [["unet", "ugpnet-unet"], ["hinet", "ugpnet-hinet"], ["nafnet", "ugpnet-nafnet"],
             ["rrdbnet", "ugpnet-rrdbnet"]]
    for task in ("deblur", "sr"):
        entry = figs[f"figure4_{task}"]
        assert entry["columns"] == {task: ["input", *[m for p in pairs for m in p], "gt"]}
        _panels_show_their_images(np.asarray(Image.open(out / entry["files"][0]).convert("RGB")),
                                  entry)
    values = figs["figure4_metrics"]["values"]
    assert {(v["task"], v["backbone"], v["setting"], v["metric"]) for v in values} == {
        (t, a, s, m) for t in ("deblur", "sr") for a, _ in pairs for s in ("alone", "inside")
        for m in ("psnr", "lpips")}
    assert all(v["mean"] == 21.5 and v["ci_low"] < 21.5 < v["ci_high"] for v in values
               if v["metric"] == "psnr")  # the per-image values 20..23, bootstrapped
    f7 = figs["figure7"]
    assert f7["ood_image"]["spec"] == "skimage:brick.png" and f7["tasks"] == list(TINY_CELLS)
    for im in f7["images"]:  # LQ | x_reg | x_syn | x_hat | baseline | GT, each its own image
        assert [p["column"] for p in im["panels"]] == [
            "input", "ugpnet:x_reg", "ugpnet:x_syn", "ugpnet:x_hat", "nafnet", "gt"]
        assert Path(im["panels"][1]["file"]).parent.name == "x_reg"
        for p in im["panels"]:
            p["column"] = p["column"].replace(":x_hat", "")
        psnr = [p["metrics"]["psnr"] if "metrics" in p else None for p in im["panels"]]
        assert (psnr[0] is None) == (im["task"] == "sr")  # 4x4 SR input: no PSNR
    _panels_show_their_images(np.asarray(Image.open(out / "figure7.png").convert("RGB")), f7)


def test_the_images_can_be_named_and_a_missing_one_is_an_error(results):
    plan, ids = results
    assert _figures("--set", "figures.images=[a_001, b_000]", "--only", "figure6") == 0
    index = json.loads((Path(plan.results) / "figures" / "index.json").read_text())
    assert [im["id"] for im in index["figures"][0]["images"]] == ["a_001", "b_000"]
    with pytest.raises(ConfigError, match="nope"):
        from ugpnet.config import load_config
        from ugpnet.commands.figures import FigurePlan, Sources, grid_ids
        from ugpnet.plan import Plan

        cfg = load_config(params="params.yaml", profile="tiny", sets=["figures.images=[nope]"])
        grid_ids(FigurePlan(Plan.of(cfg)), Sources())


def test_a_missing_input_names_the_file_and_the_fix(results, capsys):
    plan, _ = results
    gone = Path(plan.metrics_file("nafnet", "deblur"))
    gone.unlink()
    assert _figures("--only", "figure5,figure6") == 2
    err = capsys.readouterr().err
    assert str(gone) in err and "snakemake --cores all figures" in err and "figure5" in err
    out = Path(plan.results) / "figures"
    assert (out / "figure6.png").is_file()  # what could be drawn was
    assert not (out / "index.json").exists()  # but the set is not complete


def test_an_image_changed_after_its_manifest_is_refused(results, capsys):
    plan, ids = results
    write_png(Path(plan.restored_dir("ugpnet", "sr", "test")) / f"{ids[0]}.png",
              _image((0, 0, 0), (1, 1, 1), 32))
    assert _figures("--only", "figure6") == 2
    assert "is not the file" in capsys.readouterr().err


def test_a_misspelt_method_is_a_config_error(results, capsys):
    assert _figures("--set", "figures.figure6.methods=[rrdbnet, ugpnett]") == 2
    assert "ugpnett" in capsys.readouterr().err
    assert _figures("--set", "figures.which=[figure9]") == 2


# ----------------------------------------------------------------------------- Fig. 7's image
def test_the_ood_image_is_in_no_split_and_prepared_at_the_resolution(tmp_path):
    from ugpnet.commands.figures import prepare_ood, resolve_ood_image
    from ugpnet.config import load_config
    from ugpnet.data.sources import BUNDLED_PHOTOS

    cfg = load_config(params=str(REPO / "params.yaml"), profile="tiny")
    assert cfg["figures"]["figure7"]["image"] == "skimage:brick.png"
    used = {f for p in BUNDLED_PHOTOS for f in p.files}
    assert "brick.png" not in used
    for photo in used:  # every photo of the bundled data is refused
        with pytest.raises(ConfigError, match="not out of distribution"):
            resolve_ood_image(cfg, f"skimage:{photo}")
    with pytest.raises(DataError, match="does not exist"):
        resolve_ood_image(cfg, str(tmp_path / "none.png"))
    man = prepare_ood(cfg, tmp_path / "ood")
    img = np.asarray(Image.open(tmp_path / "ood" / "brick.png"))
    assert img.shape == (cfg["data"]["resolution"],) * 2 + (3,)
    assert man["files"] == [{"name": "brick.png", "sha256": sha256_file(tmp_path / "ood" /
                                                                         "brick.png")}]
    assert json.loads((tmp_path / "ood" / "manifest.json").read_text()) == man


def test_the_figures_block_is_in_no_identity():
    from ugpnet.config import load_config
    from ugpnet.plan import Plan

    a = Plan.of(load_config(params=str(REPO / "params.yaml"), profile="tiny"))
    b = Plan.of(load_config(params=str(REPO / "params.yaml"), profile="tiny",
                            sets=["figures.images=3", "figures.figure7.baseline=gpen"]))
    assert a.cfg["figures"] != b.cfg["figures"]
    for method, task in [*a.table_cells(), *a.figure4_cells()]:
        for st in a.stages(method, task):  # what enters each stage's identity
            assert a.stage_config(method, task, st.name) == b.stage_config(method, task, st.name)


# ----------------------------------------------------------------------------- the workflow
def test_the_figures_rule_in_a_dry_run(tmp_path):
    from workspace import copy_workflow, env_with, snakemake

    work = copy_workflow(tmp_path / "w", REPO)
    r = snakemake(["-n", "--cores", "1", "--config", "profile=tiny", "-p", "figures"], cwd=work,
                  env=env_with(REPO), timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = r.stdout + r.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", text, re.M))
    # Fig. 7: one preparation, one degradation per task, UGPNet's restore per task (tiny's
    # Table 1 has no GFP-GAN: the baseline is left out, not trained for the figure)
    assert (jobs["ood_prepare"], jobs["ood_degrade"], jobs["ood_restore"], jobs["figures"]) == \
        ("1", "3", "3", "1")
    assert "ugpnet figures --out results/tiny/default/figures" in text
    assert "ugpnet figures --prepare-ood --out results/tiny/default/ood/gt" in text
    for task in ("denoise", "deblur", "sr"):
        assert (f"ugpnet restore --method ugpnet --task {task} --checkpoint "
                in text), task
        assert f"--in results/tiny/default/ood/lq/{task} --out " \
               f"results/tiny/default/ood/restored/ugpnet/{task} --intermediate" in text
