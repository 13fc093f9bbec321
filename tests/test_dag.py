"""End-to-end: the real Snakemake DAG on the `tiny` profile (bundled photographs, 32 px)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from ugpnet.metrics.evaluate import BUNDLE_SCHEMA, read_bundle_record
from workspace import ALL_METHODS, REPO, copy_workflow, env_with, plan_for, snakemake


# what the built-in kinds are (the methods of the default table are read from the configuration)
KIND_FAMILIES = {"input": "reference", "regression": "regression", "ugpnet": "generative"}
KIND_STAGES = {"regression": ["train"], "ugpnet": ["restoration", "synthesis", "fusion"]}


def test_snakemake_lint_is_clean(tmp_path):
    copy_workflow(tmp_path)
    r = snakemake(["--lint"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Lints for rule" not in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.fixture(scope="module")
def tiny_run(tiny_end_to_end):
    # the end-to-end run with every method of the default table (tests/conftest.py: made once
    # per session, tests/test_slurm.py compares its SLURM run with it)
    return tiny_end_to_end


@pytest.fixture(scope="module")
def plan(tiny_run):
    return plan_for(tiny_run, configfiles=[ALL_METHODS])


def test_table1_has_real_numbers_for_every_method_and_task(tiny_run, plan):
    df = pd.read_csv(tiny_run / "results" / "table1.csv", index_col="method")
    methods = plan.table1_methods()
    assert list(df.index) == methods  # one row per configured method, in the configured order
    # each row's family is its kind's: the reference input row, regression baselines, UGPNet
    families = {m: plan.family(m) for m in methods}
    assert df["family"].to_dict() == families
    for method, family in families.items():
        kind = plan.cfg["methods"][method]["kind"]
        assert family == KIND_FAMILIES.get(kind, family), (method, kind)
    cells: dict = {}
    for method, task in plan.table_cells():  # every method x each of its Table 1 tasks
        cells.setdefault(method, []).append(task)
    assert list(cells) == methods
    for method, tasks in cells.items():
        for task in tasks:
            mean = read_bundle_record(plan.metrics_file(method, task), "test",
                                      plan.outputs(method)[0])["mean"]
            for metric in ("psnr", "ssim", "lpips", "fid"):
                value = df.loc[method, f"{task}_{metric}"]
                assert np.isfinite(value), (method, task, metric)
                # the table reproduces what `ugpnet evaluate` measured on the restored test images
                assert value == pytest.approx(mean[metric], abs=1e-4), (method, task, metric)
            # and PSNR recomputed here from the PNGs on disk (PIL + scikit-image directly)
            restored = sorted(Path(plan.restored_dir(method, task, "test")).glob("*.png"))
            gts = [Path(plan.gt_dir("test")) / p.name for p in restored]
            assert len(restored) == 2 and all(g.exists() for g in gts)
            direct = np.mean([peak_signal_noise_ratio(np.asarray(Image.open(g).convert("RGB")),
                                                      np.asarray(Image.open(p).convert("RGB")),
                                                      data_range=255)
                              for g, p in zip(gts, restored)])
            assert df.loc[method, f"{task}_psnr"] == pytest.approx(direct, abs=1e-4)
    assert pd.isna(df.loc["nafnet", "sr_psnr"])  # NAFNet does not run SR, as in the paper
    # the input row is the degraded test images themselves (SR: upsampled back by bicubic)
    from ugpnet.degradations import sr_input
    from ugpnet.io import read_image

    for task in ("denoise", "deblur", "sr"):
        lq_dir, gt_dir = Path(plan.lq_dir(task, "test")), Path(plan.gt_dir("test"))
        vals = []
        for lq in sorted(lq_dir.glob("*.png")):
            x = read_image(lq)
            if task == "sr":
                x = sr_input(x, "bicubic_up", 8)
            vals.append(peak_signal_noise_ratio(read_image(gt_dir / lq.name), x, data_range=255))
        assert df.loc["input", f"{task}_psnr"] == pytest.approx(np.mean(vals), abs=1e-4), task
    meta = json.loads((tiny_run / "results" / "table1.json").read_text())
    assert meta["profile"] == "tiny" and meta["experiment"] == "default"
    assert "not the paper" in meta["note"]
    # every cell records the checkpoint, GT and degraded-input hashes and the code version
    for cell in meta["sources"].values():
        assert {"checkpoint_sha256", "gt_manifest_sha256", "input_manifest_sha256",
                "code"} <= set(cell)
    for method, task in plan.table_cells():
        cell = meta["sources"][f"{method}/{task}"]
        assert tiny_run / cell["file"] == Path(plan.metrics_file(method, task))
        assert cell["output"] == plan.outputs(method)[0]
    assert (tiny_run / "results" / "table1.png").stat().st_size > 1000


def trained_stages(plan) -> dict:
    """(method, task) -> its stages, for every Table 1 cell that trains (the input row trains
    nothing, so it has no run)."""
    out = {(m, t): [st.name for st in plan.stages(m, t)] for m, t in plan.table_cells()}
    return {cell: stages for cell, stages in out.items() if stages}


def test_runs_select_on_validation_and_record_options(tiny_run, plan):
    runs = Path(plan.runs)
    stages_of = trained_stages(plan)
    # the official recipe of the two method families (the table's methods come from the config)
    for (method, task), stages in stages_of.items():
        if plan.cfg["methods"][method]["kind"] in KIND_STAGES:
            assert stages == KIND_STAGES[plan.cfg["methods"][method]["kind"]], (method, task)
    found = sorted(str(p.relative_to(runs).parent) for p in runs.glob("*/*/*/summary.json"))
    # a shared stage (VQFR's codebook) has one folder for all its method's tasks
    assert found == sorted({str(Path(plan.stage_dir(m, t, s)).relative_to(runs))
                            for (m, t), ss in stages_of.items() for s in ss})
    assert any("/shared/" in f for f in found) == any(
        plan.is_shared(m, s) for (m, _), ss in stages_of.items() for s in ss)
    for (method, task), stages in stages_of.items():
        for stage in stages:
            run = Path(plan.stage_dir(method, task, stage))
            s = json.loads((run / "summary.json").read_text())
            val = {r["iter"]: r for r in map(json.loads, (run / "val.jsonl").read_text().splitlines())}
            assert s["selected_iter"] in val and val[s["selected_iter"]]["selected"]
            metric = s["select_metric"]
            if metric == "final":  # the last validated iteration (synthesis, frozen RRDBNet)
                assert s["selected_iter"] == max(val)
            else:
                assert s["val"][metric] == pytest.approx(val[s["selected_iter"]][metric])
                best = (max if metric in ("psnr", "ssim") else min)(v[metric] for v in val.values())
                assert s["val"][metric] == pytest.approx(best)
    for task in ("denoise", "deblur", "sr"):
        # the selection's val numbers are what `ugpnet evaluate` measures on the VAL split with
        # the exported model, and not the test split's numbers
        sel = json.loads((runs / "ugpnet" / task / "fusion" / "summary.json").read_text())["val"]
        for output, prefix in (("x_hat", ""), ("x_reg", "x_reg/"), ("x_syn", "x_syn/")):
            ev = read_bundle_record(plan.metrics_file("ugpnet", task), "val", output)
            assert sel[prefix + "psnr"] == pytest.approx(ev["mean"]["psnr"], abs=1e-3), (task, output)
        test = read_bundle_record(plan.metrics_file("ugpnet", task), "test", "x_hat")
        assert abs(test["mean"]["psnr"] - sel["psnr"]) > 1e-3
    opts = json.loads((runs / "ugpnet/deblur/fusion/options.json").read_text())
    assert opts["options"]["stage"] == "fusion"
    assert opts["options"]["contextual_features"]


def test_one_evaluation_file_per_cell_holds_what_the_plan_says(tiny_run, plan):
    for method, task in plan.table_cells():
        bundle = json.loads(Path(plan.metrics_file(method, task)).read_text())
        assert bundle["schema"] == BUNDLE_SCHEMA
        assert (bundle["method"], bundle["task"]) == (method, task)
        splits = plan.evaluation_splits(method, task)
        assert {s: list(r) for s, r in bundle["splits"].items()} == splits
        for split, records in bundle["splits"].items():
            for output, rec in records.items():
                proto = rec["protocol"]
                assert tiny_run / proto["pred_dir"] == Path(plan.restored_dir(method, task,
                                                                              split, output))
                assert tiny_run / proto["gt_dir"] == Path(plan.gt_dir(split))
    assert not (Path(plan.results) / "metrics_val").exists()


@pytest.mark.parametrize("split", ["val", "test"])
def test_outputs_summaries_written(plan, split):
    summary = pd.read_csv(plan.outputs_csv(split))
    assert sorted(zip(summary["task"], summary["output"])) == sorted(
        (t, o) for t in ("denoise", "deblur", "sr") for o in ("input", "x_reg", "x_syn", "x_hat"))
    assert list(summary["task"]) == ["denoise"] * 4 + ["deblur"] * 4 + ["sr"] * 4
    ev = read_bundle_record(plan.metrics_file("ugpnet", "sr"), split, "x_syn")
    row = summary[(summary["task"] == "sr") & (summary["output"] == "x_syn")].iloc[0]
    assert row["psnr"] == pytest.approx(ev["mean"]["psnr"], abs=1e-4)
    # the input row is the degraded images of the split (SR: bicubic-upsampled), PSNR by hand
    from ugpnet.degradations import sr_input
    from ugpnet.io import read_image

    lq_dir, gt_dir = Path(plan.lq_dir("sr", split)), Path(plan.gt_dir(split))
    direct = np.mean([peak_signal_noise_ratio(read_image(gt_dir / p.name),
                                              sr_input(read_image(p), "bicubic_up", 8),
                                              data_range=255)
                      for p in sorted(lq_dir.glob("*.png"))])
    row = summary[(summary["task"] == "sr") & (summary["output"] == "input")].iloc[0]
    assert row["method"] == "input" and row["psnr"] == pytest.approx(direct, abs=1e-4)


def test_second_run_has_nothing_to_do(tiny_run):
    r = snakemake(["--cores", "2", "results/table1.csv", "--config", "profile=tiny",
                   "--configfile", "params.yaml", ALL_METHODS, "-n"], tiny_run)
    assert r.returncode == 0
    assert "Nothing to be done" in r.stdout + r.stderr, r.stdout[-2000:]


def test_timing_table_sums_one_benchmark_file_per_job(tiny_run, plan, tmp_path):
    out = tmp_path / "timing.csv"
    r = subprocess.run([sys.executable, "-m", "ugpnet", "--profile", "tiny", "table", "--which",
                        "timing", "--out", str(out)], cwd=tiny_run, capture_output=True,
                       text=True, env=env_with(REPO))
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out)
    files = sorted((Path(plan.logs) / "benchmarks").glob("*/*.tsv"))
    assert len(df) == len(files)
    counts = df.groupby("rule").size().to_dict()
    # one train job per stage run, one evaluate job per task (evaluate_per: task, as the default
    # run: all its cells, outputs and splits in one process); a shared stage (VQFR's codebook)
    # is one job for all its method's tasks
    assert counts["train"] == len({plan.stage_dir(m, t, s) for (m, t), ss in
                                   trained_stages(plan).items() for s in ss})
    assert plan.cfg["evaluate_per"] == "task"
    assert counts["evaluate"] == len({t for _, t in plan.table_cells()})
    assert {"prepare", "degrade", "restore", "table1", "pretrain_prior", "val_outputs",
            "test_outputs"} <= set(counts)
    assert "evaluate_val_output" not in counts
    total = sum(float(pd.read_csv(f, sep="\t").iloc[-1]["s"]) for f in files)
    assert df["seconds"].sum() == pytest.approx(total, abs=0.1 * len(files))
