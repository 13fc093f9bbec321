"""`ugpnet evaluate --method M --task T`: every output folder of a (method, task) scored in one
process into one ``ugpnet-evaluations/1`` file, and the tables that read it.

The restored folders are made here (noisy copies of small ground-truth images, a restore
manifest naming a checkpoint), so the tests need no trained model and check the scores against
folder-mode ``ugpnet evaluate`` and scikit-image directly.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.metrics import peak_signal_noise_ratio

from ugpnet.cli import main
from ugpnet.config import load_config
from ugpnet.io import read_image, sha256_file, write_png
from ugpnet.metrics.evaluate import BUNDLE_SCHEMA, SCHEMA, read_bundle_record
from ugpnet.plan import Plan

REPO = Path(__file__).resolve().parents[1]
N_IMAGES = 3  # per split: FID is defined from 2 images
SIZE = 32
# noise per output: the outputs must score differently, so a mixed-up folder shows
SIGMA = {"x_hat": 4.0, "x_reg": 12.0, "x_syn": 30.0}
CELLS = ("input", "ugpnet")  # a reference row and a multi-output method, one task
TASK = "denoise"


def _sets(root: Path) -> list[str]:
    return [f"paths.data={root / 'data'}", f"paths.runs={root / 'runs'}",
            f"paths.results={root / 'results'}", f"table1.methods=[{', '.join(CELLS)}]",
            f"table1.tasks=[{TASK}]"]


def _cli(root: Path, *args: str) -> int:
    sets = [a for s in _sets(root) for a in ("--set", s)]
    return main(["--params", str(REPO / "params.yaml"), "--profile", "tiny", *sets, *args])


def _photo(name: str, seed: int) -> np.ndarray:
    from PIL import Image
    from skimage import data

    img = np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB"))
    y = np.random.default_rng(seed).integers(0, img.shape[0] - 4 * SIZE)
    crop = img[y:y + 4 * SIZE, :4 * SIZE]
    return np.asarray(Image.fromarray(crop).resize((SIZE, SIZE), Image.BICUBIC))


def _noisy(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(img + rng.normal(0, sigma, img.shape)), 0, 255).astype(np.uint8)


@pytest.fixture
def run(tmp_path):
    """A plan whose ground truth and restored folders exist (val and test, every output)."""
    plan = Plan.of(load_config(params=str(REPO / "params.yaml"), profile="tiny",
                               sets=_sets(tmp_path)))
    photos = ("astronaut", "coffee", "chelsea")
    for s, split in enumerate(("val", "test")):
        for i, name in enumerate(photos[:N_IMAGES]):
            write_png(Path(plan.gt_dir(split)) / f"im{i}.png", _photo(name, seed=10 * s + i))
    Path(plan.gt_manifest()).write_text(json.dumps({"splits": {"val": N_IMAGES,
                                                                "test": N_IMAGES}}))
    seed = 0
    for m in CELLS:
        # a weight file the manifests name (evaluate checks it is unchanged since the restore;
        # not a ugpnet-bench model.pt, so it has no identity to check)
        weights = tmp_path / "weights" / f"{m}.bin"
        weights.parent.mkdir(parents=True, exist_ok=True)
        weights.write_bytes(f"{m} weights".encode())
        for split, outputs in plan.evaluation_splits(m, TASK).items():
            for output in outputs:
                folder = Path(plan.restored_dir(m, TASK, split, output))
                for gt in sorted(Path(plan.gt_dir(split)).glob("*.png")):
                    seed += 1
                    write_png(folder / gt.name, _noisy(read_image(gt), SIGMA[output], seed))
            manifest = Path(plan.restored_manifest(m, TASK, split))
            digests = {o: {p.name: sha256_file(p) for p in sorted(Path(
                plan.restored_dir(m, TASK, split, o)).glob("*.png"))} for o in outputs}
            manifest.write_text(json.dumps({  # as ugpnet restore writes it
                "tool": "ugpnet restore", "method": m, "task": TASK,
                "checkpoint": str(weights), "checkpoint_sha256": sha256_file(weights),
                "input_manifest": "lq/manifest.json", "input_manifest_sha256": f"{m}-{split}-lq",
                "outputs": outputs, "sha256": digests[outputs[0]],
                "intermediate_sha256": {o: digests[o] for o in outputs[1:]}}))
    return tmp_path, plan


def test_plan_splits_say_what_each_method_scores():
    plan = Plan.of(load_config(params=str(REPO / "params.yaml"), profile="tiny"))
    multi = plan.multi_output_methods()
    assert multi, "the tiny profile has a multi-output method (UGPNet)"
    cells = plan.output_cells()
    for m, t in plan.table_cells():
        splits = plan.evaluation_splits(m, t)
        assert splits["test"] == list(plan.outputs(m))  # every output on test
        assert ("val" in splits) == ((m, t) in cells)
        assert "val" not in splits or splits["val"] == splits["test"]
        if m in multi:
            assert "val" in splits
    # the reference rows are there for the tasks of the multi-output methods only
    assert {t for m, t in cells if plan.family(m) == "reference"} == \
        {t for m, t in plan.table_cells() if m in multi}
    assert set(plan.table1_inputs()) >= {plan.outputs_csv("val"), plan.outputs_csv("test")}
    assert not hasattr(plan, "val_metrics_file")


def test_method_mode_scores_every_output_of_both_splits_like_folder_mode(run):
    root, plan = run
    assert _cli(root, "evaluate", "--method", "ugpnet", "--task", TASK, "--no-progress") == 0
    path = Path(plan.metrics_file("ugpnet", TASK))  # the default --out
    bundle = json.loads(path.read_text())
    assert bundle["schema"] == BUNDLE_SCHEMA
    assert (bundle["method"], bundle["task"]) == ("ugpnet", TASK)
    outputs = list(plan.outputs("ugpnet"))
    assert {s: list(r) for s, r in bundle["splits"].items()} == {"test": outputs, "val": outputs}
    names = plan.cfg["metrics"]["names"]
    for split, records in bundle["splits"].items():
        psnrs = {}
        for output, rec in records.items():
            pred, gt = plan.restored_dir("ugpnet", TASK, split, output), plan.gt_dir(split)
            assert rec["protocol"]["schema"] == SCHEMA
            assert rec["protocol"]["pred_dir"] == pred and rec["protocol"]["gt_dir"] == gt
            prov = rec["protocol"]["provenance"]
            assert prov["checkpoint_sha256"] == sha256_file(root / "weights" / "ugpnet.bin")
            assert prov["gt_manifest_sha256"] == sha256_file(plan.gt_manifest())
            # folder mode on the same folder, with the configuration's metric settings
            alone = root / f"alone-{split}-{output}.json"
            assert main(["evaluate", "--pred", pred, "--gt", gt, "--metrics", ",".join(names),
                         "--lpips-net", plan.cfg["metrics"]["lpips_net"],
                         "--fid-ref", plan.fid_ref(split), "--no-progress",
                         "--out", str(alone)]) == 0
            want = json.loads(alone.read_text())["mean"]
            assert set(rec["mean"]) == set(want) == set(names)
            for metric in names:
                assert rec["mean"][metric] == pytest.approx(want[metric], rel=1e-6, abs=1e-9), \
                    (split, output, metric)
            # and PSNR straight from the files
            direct = np.mean([peak_signal_noise_ratio(read_image(Path(gt) / p.name),
                                                      read_image(p), data_range=255)
                              for p in sorted(Path(pred).glob("*.png"))])
            assert rec["mean"]["psnr"] == pytest.approx(direct, rel=1e-9)
            psnrs[output] = rec["mean"]["psnr"]
        # each output was read from its own folder: less noise, higher PSNR
        assert sorted(psnrs, key=psnrs.get) == sorted(SIGMA, key=SIGMA.get, reverse=True)


def test_single_output_method_outside_the_outputs_tables_is_scored_on_test_only(run):
    root, plan = run
    out = root / "input.json"
    # the input row is a cell of the outputs tables here ...
    assert "val" in plan.evaluation_splits("input", TASK)
    assert _cli(root, "evaluate", "--method", "input", "--task", TASK, "--no-progress",
                "--out", str(out)) == 0
    assert set(json.loads(out.read_text())["splits"]) == {"test", "val"}
    # ... but without the multi-output method it has no val summary to feed
    sets = _sets(root)[:3] + ["table1.methods=[input]", f"table1.tasks=[{TASK}]"]
    alone = Plan.of(load_config(params=str(REPO / "params.yaml"), profile="tiny", sets=sets))
    assert alone.evaluation_splits("input", TASK) == {"test": ["x_hat"]}


@pytest.fixture
def no_metric(monkeypatch):
    """Fails the test if any metric is computed or the LPIPS network is loaded."""
    from ugpnet.metrics import evaluate as ev

    def refuse(*a, **k):
        raise AssertionError("a metric was computed before every folder was checked")

    for name in ("psnr", "ssim", "_lpips_metric"):
        monkeypatch.setattr(ev, name, refuse)


def test_a_missing_restored_folder_is_named_before_any_metric(run, capsys, no_metric):
    import shutil

    root, plan = run
    x_syn = Path(plan.restored_dir("ugpnet", TASK, "val", "x_syn"))
    shutil.rmtree(x_syn)
    out = root / "m.json"
    assert _cli(root, "evaluate", "--method", "ugpnet", "--task", TASK, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert str(x_syn) in err and "x_syn" in err and "ugpnet restore" in err
    assert "Traceback" not in err and not out.exists()
    # an unfinished restore (no manifest) names the split's folder
    Path(plan.restored_manifest("ugpnet", TASK, "test")).unlink()
    assert _cli(root, "evaluate", "--method", "ugpnet", "--task", TASK, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert str(Path(plan.restored_dir("ugpnet", TASK, "test"))) in err and "manifest.json" in err


def test_every_folder_is_checked_before_any_metric(run, capsys, no_metric):
    root, plan = run
    # the last folder scored holds an unpaired name and a broken file
    x_syn = Path(plan.restored_dir("ugpnet", TASK, "val", "x_syn"))
    (x_syn / "im0.png").rename(x_syn / "other.png")
    assert _cli(root, "evaluate", "--method", "ugpnet", "--task", TASK, "--out",
                str(root / "m.json")) == 2
    err = capsys.readouterr().err
    assert str(x_syn) in err and "other" in err
    (x_syn / "other.png").rename(x_syn / "im0.png")
    (x_syn / "im1.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    assert _cli(root, "evaluate", "--method", "ugpnet", "--task", TASK, "--out",
                str(root / "m.json")) == 2
    assert "im1.png" in capsys.readouterr().err


def test_a_restored_folder_unlike_its_manifest_is_refused_before_any_metric(run, capsys,
                                                                            no_metric):
    """Issue 24: only a folder holding exactly the files its restore manifest records (names and
    sha256, every output) is scored; a mixed or changed one is named with the restore to rerun."""
    root, plan = run
    x_reg = Path(plan.restored_dir("ugpnet", TASK, "test", "x_reg"))
    write_png(x_reg / "im0.png", np.zeros((SIZE, SIZE, 3), np.uint8))  # another run's image
    val = Path(plan.restored_manifest("ugpnet", TASK, "val"))
    record = json.loads(val.read_text())
    del record["intermediate_sha256"]  # a restore that recorded only its result's files
    val.write_text(json.dumps(record))
    out = root / "m.json"
    assert _cli(root, "evaluate", "--method", "ugpnet", "--task", TASK, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"{x_reg} (test split, output x_reg: not the files its restore manifest records" in err
    assert "differ from their recorded sha256: im0.png" in err
    assert f"{val} records no sha256 of the files of output 'x_syn'" in err
    assert err.count("ugpnet restore --method ugpnet") == 2 and not out.exists()


def test_method_mode_takes_metric_settings_from_the_configuration_only(run, capsys):
    root, plan = run
    assert _cli(root, "evaluate", "--method", "ugpnet", "--task", TASK, "--lpips-net", "vgg",
                "--out", str(root / "m.json")) == 2
    assert "metrics.lpips_net" in capsys.readouterr().err
    assert _cli(root, "evaluate", "--method", "ugpnet", "--task", TASK, "--pred", "x", "--gt",
                "y", "--out", str(root / "m.json")) == 2
    assert "not both" in capsys.readouterr().err
    assert _cli(root, "evaluate", "--pred", "x", "--out", str(root / "m.json")) == 2
    assert "--gt" in capsys.readouterr().err


def test_tables_read_the_evaluation_files(run, capsys):
    root, plan = run
    for m in CELLS:
        assert _cli(root, "evaluate", "--method", m, "--task", TASK, "--no-progress") == 0
    table = root / "out" / "table1.csv"
    assert _cli(root, "table", "--which", "table1", "--out", str(table)) == 0
    df = pd.read_csv(table, index_col="method")
    meta = json.loads(table.with_suffix(".json").read_text())
    for m in CELLS:
        path = plan.metrics_file(m, TASK)
        first = plan.outputs(m)[0]
        rec = read_bundle_record(path, "test", first)
        for metric in plan.cfg["metrics"]["names"]:
            assert df.loc[m, f"{TASK}_{metric}"] == pytest.approx(rec["mean"][metric], abs=1e-4)
        src = meta["sources"][f"{m}/{TASK}"]
        assert src["file"] == path and src["sha256"] == sha256_file(path)
        assert src["output"] == first
        assert src["checkpoint_sha256"] == sha256_file(root / "weights" / f"{m}.bin")
        assert src["input_manifest_sha256"] == f"{m}-test-lq"
        assert src["gt_manifest_sha256"] == sha256_file(plan.gt_manifest())
    # the outputs tables: one per split, the same rows, each split's own records
    for split in ("val", "test"):
        out = Path(plan.outputs_csv(split))
        assert _cli(root, "table", "--which", "outputs", "--split", split, "--out",
                    str(out)) == 0
        rows = pd.read_csv(out)
        assert list(rows["output"]) == ["input", *plan.outputs("ugpnet")]
        for _, row in rows.iterrows():
            output = plan.outputs(row["method"])[0] if row["output"] == "input" else row["output"]
            want = read_bundle_record(plan.metrics_file(row["method"], TASK), split, output)
            assert row["psnr"] == pytest.approx(want["mean"]["psnr"], abs=1e-4), (split, output)
    val, test = (pd.read_csv(plan.outputs_csv(s)) for s in ("val", "test"))
    assert not np.allclose(val["psnr"], test["psnr"])  # different images per split
    assert _cli(root, "table", "--which", "table1", "--split", "val", "--out", str(table)) == 2
    assert "--split" in capsys.readouterr().err


def test_a_metric_file_of_another_schema_is_refused(run, capsys):
    root, plan = run
    for m in CELLS:  # an ugpnet-evaluation/1 record where the (method, task) file belongs
        path = Path(plan.metrics_file(m, TASK))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"mean": {"psnr": 20.0}, "per_image": {}, "protocol": {}}))
    assert _cli(root, "table", "--out", str(root / "t.csv")) == 2
    err = capsys.readouterr().err
    assert plan.metrics_file("input", TASK) in err and BUNDLE_SCHEMA in err
    assert "ugpnet evaluate --method" in err


def test_tables_name_the_options_beyond_the_paper(run, capsys):
    """A row that ran with options beyond the paper says so in the CSV, its JSON and the plot's
    footnote; an official row says nothing (tests/test_options.py: what the options are)."""
    root, plan = run
    for m in CELLS:
        assert _cli(root, "evaluate", "--method", m, "--task", TASK, "--no-progress") == 0
    table = root / "out" / "table1.csv"
    on = ["--set", "methods.ugpnet.fusion.xreg_skip=true",
          "--set", f"methods.ugpnet.restoration_skip.{TASK}=input"]
    assert _cli(root, *on, "table", "--which", "table1", "--out", str(table)) == 0
    printed = capsys.readouterr().out
    df = pd.read_csv(table, index_col="method", keep_default_na=False)
    meta = json.loads(table.with_suffix(".json").read_text())
    want = ["restoration skip = input", "fusion x_reg skip"]
    assert sorted(meta["options_beyond_paper"]["ugpnet"]) == sorted(want)
    assert meta["options_beyond_paper"]["input"] == []
    assert sorted(df.loc["ugpnet", "options"].split("; ")) == sorted(want)
    assert df.loc["input", "options"] == ""
    assert "not the paper's networks or recipes" in printed and "fusion x_reg skip" in printed
    out = Path(plan.outputs_csv("test"))
    assert _cli(root, *on, "table", "--which", "outputs", "--split", "test", "--out",
                str(out)) == 0
    rows = pd.read_csv(out, keep_default_na=False)
    assert set(rows.loc[rows["method"] == "ugpnet", "options"]) == {"; ".join(
        meta["options_beyond_paper"]["ugpnet"])}  # Table 1 has this one task
    assert set(rows.loc[rows["method"] == "input", "options"]) == {""}
    # the official configuration: no options anywhere
    assert _cli(root, "table", "--which", "table1", "--out", str(table)) == 0
    meta = json.loads(table.with_suffix(".json").read_text())
    assert all(v == [] for v in meta["options_beyond_paper"].values())
    assert "not the paper's networks" not in capsys.readouterr().out


STATS_COLUMNS = ["method", "task", "metric", "mean", "ci_low", "ci_high", "n_images", "vs",
                 "wilcoxon_statistic", "wilcoxon_p", "median_diff", "note"]


def test_table1_schemas_intervals_and_the_vs_paper_view(run, monkeypatch):
    """table1_stats.csv's schema, an interval around every per-image mean and FID's from the
    bootstrap, the paired tests of table1.compare; with table1.vs_paper, ours beside the paper's
    numbers (a published value patched in: the file holds none for Table 1 yet)."""
    import ugpnet.published as published
    from ugpnet.tables import VS_PAPER_COLUMNS

    root, plan = run
    for m in CELLS:
        assert _cli(root, "evaluate", "--method", m, "--task", TASK, "--no-progress") == 0
    monkeypatch.setattr(published, "table1_value",
                        lambda task, method, metric, path=None:
                        30.0 if (method, metric) == ("ugpnet", "psnr") else None)
    table = root / "out" / "table1.csv"
    assert _cli(root, "--set", "table1.vs_paper=true", "table", "--which", "table1",
                "--out", str(table)) == 0
    stats = pd.read_csv(table.with_name("table1_stats.csv"), keep_default_na=False,
                        na_values=[""])
    assert list(stats.columns) == STATS_COLUMNS
    for _, r in stats.iterrows():
        if r["metric"] in ("psnr", "ssim", "lpips"):
            assert r["ci_low"] <= r["mean"] <= r["ci_high"], r.to_dict()
        elif r["metric"] == "fid" and r["n_images"] >= 3:
            assert r["ci_low"] < r["ci_high"] and "bootstrap" in r["note"]
    compared = stats[stats["vs"] == "ugpnet"]
    assert set(compared["method"]) == set(CELLS) - {"ugpnet"}
    vs = pd.read_csv(table.with_name("table1_vs_paper.csv"))
    assert list(vs.columns) == VS_PAPER_COLUMNS
    cell = vs[(vs["method"] == "ugpnet") & (vs["metric"] == "psnr")].iloc[0]
    assert cell["paper"] == 30.0 and cell["diff"] == pytest.approx(cell["ours"] - 30.0, abs=1e-4)
    md = table.with_name("table1_vs_paper.md").read_text()
    assert "not transcribed" in md and "30.00" in md
