"""End-to-end: the real Snakemake DAG on the `tiny` profile (bundled photographs, 32 px)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _copy_workflow(repo: Path, dst: Path) -> None:
    for name in ("Snakefile", "params.yaml"):
        shutil.copy(repo / name, dst / name)
    shutil.copytree(repo / "workflow", dst / "workflow")


def _run(args, cwd):
    return subprocess.run(SNAKEMAKE + args, cwd=cwd, capture_output=True, text=True, timeout=1500)


def test_snakemake_lint_is_clean(repo_root, tmp_path):
    _copy_workflow(repo_root, tmp_path)
    r = _run(["--lint"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Lints for rule" not in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.fixture(scope="module")
def tiny_run(repo_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("dag")
    _copy_workflow(repo_root, work)
    r = _run(["--cores", "2", "results/table1.csv", "--config", "profile=tiny"], work)
    if r.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (work / "logs").rglob("*.log"))
        pytest.fail(f"snakemake failed:\n{r.stderr[-5000:]}\n{logs}")
    return work


def test_table1_has_real_numbers_for_every_method_and_task(tiny_run):
    df = pd.read_csv(tiny_run / "results" / "table1.csv", index_col="method")
    assert set(df.index) == {"nafnet", "rrdbnet", "ugpnet"}
    assert df["family"].to_dict() == {"nafnet": "regression", "rrdbnet": "regression",
                                      "ugpnet": "generative"}
    cells = {"nafnet": ("denoise", "deblur"), "rrdbnet": ("sr",), "ugpnet": ("denoise", "deblur", "sr")}
    for method, tasks in cells.items():
        for task in tasks:
            mean = json.loads((tiny_run / f"results/tiny/metrics/{method}/{task}.json").read_text())["mean"]
            for metric in ("psnr", "ssim", "lpips", "fid"):
                value = df.loc[method, f"{task}_{metric}"]
                assert np.isfinite(value), (method, task, metric)
                # the table reproduces what `ugpnet evaluate` measured on the restored test images
                assert value == pytest.approx(mean[metric], abs=1e-4), (method, task, metric)
            # and PSNR recomputed here from the PNGs on disk (PIL + scikit-image directly)
            restored = sorted((tiny_run / f"results/tiny/restored/{method}/{task}/test").glob("*.png"))
            gts = [tiny_run / "data/tiny/gt/test" / p.name for p in restored]
            assert len(restored) == 2 and all(g.exists() for g in gts)
            direct = np.mean([peak_signal_noise_ratio(np.asarray(Image.open(g).convert("RGB")),
                                                      np.asarray(Image.open(p).convert("RGB")),
                                                      data_range=255)
                              for g, p in zip(gts, restored)])
            assert df.loc[method, f"{task}_psnr"] == pytest.approx(direct, abs=1e-4)
    assert pd.isna(df.loc["nafnet", "sr_psnr"])  # NAFNet does not run SR, as in the paper
    meta = json.loads((tiny_run / "results" / "table1.json").read_text())
    assert meta["profile"] == "tiny" and "not the paper" in meta["note"]
    assert (tiny_run / "results" / "table1.png").stat().st_size > 1000


STAGES = {("nafnet", "denoise"): ["train"], ("nafnet", "deblur"): ["train"],
          ("rrdbnet", "sr"): ["train"],
          **{("ugpnet", t): ["restoration", "synthesis", "fusion"] for t in ("denoise", "deblur", "sr")}}


def test_runs_select_on_validation_and_record_options(tiny_run):
    runs = tiny_run / "runs" / "tiny"
    found = sorted(str(p.relative_to(runs).parent) for p in runs.glob("*/*/*/summary.json"))
    assert found == sorted(f"{m}/{t}/{s}" for (m, t), ss in STAGES.items() for s in ss)
    for (method, task), stages in STAGES.items():
        for stage in stages:
            run = runs / method / task / stage
            s = json.loads((run / "summary.json").read_text())
            val = {r["iter"]: r for r in map(json.loads, (run / "val.jsonl").read_text().splitlines())}
            assert s["selected_iter"] in val and val[s["selected_iter"]]["selected"]
            metric = s["select_metric"]
            assert s["val"][metric] == pytest.approx(val[s["selected_iter"]][metric])
    for task in ("denoise", "deblur", "sr"):
        # the selection's val numbers are what `ugpnet evaluate` measures on the VAL split with
        # the exported model, and not the test split's numbers
        sel = json.loads((runs / "ugpnet" / task / "fusion" / "summary.json").read_text())["val"]
        for output, prefix in (("x_hat", ""), ("x_reg", "x_reg/"), ("x_syn", "x_syn/")):
            ev = json.loads((tiny_run / f"results/tiny/metrics_val/ugpnet/{task}/{output}.json").read_text())
            assert sel[prefix + "psnr"] == pytest.approx(ev["mean"]["psnr"], abs=1e-3), (task, output)
        test = json.loads((tiny_run / f"results/tiny/metrics/ugpnet/{task}.json").read_text())
        assert abs(test["mean"]["psnr"] - sel["psnr"]) > 1e-3
    opts = json.loads((runs / "ugpnet/deblur/fusion/options.json").read_text())
    assert opts["options"]["stage"] == "fusion"
    assert opts["options"]["contextual_features"]


def test_val_outputs_summary_written(tiny_run):
    summary = pd.read_csv(tiny_run / "results" / "tiny" / "val_outputs.csv")
    assert sorted(zip(summary["task"], summary["output"])) == sorted(
        (t, o) for t in ("denoise", "deblur", "sr") for o in ("x_reg", "x_syn", "x_hat"))
    ev = json.loads((tiny_run / "results/tiny/metrics_val/ugpnet/sr/x_syn.json").read_text())
    row = summary[(summary["task"] == "sr") & (summary["output"] == "x_syn")].iloc[0]
    assert row["psnr"] == pytest.approx(ev["mean"]["psnr"], abs=1e-4)


def test_second_run_has_nothing_to_do(tiny_run):
    r = _run(["--cores", "2", "results/table1.csv", "--config", "profile=tiny", "-n"], tiny_run)
    assert r.returncode == 0
    assert "Nothing to be done" in r.stdout + r.stderr, r.stdout[-2000:]
