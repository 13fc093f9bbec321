"""End-to-end: the real Snakemake DAG on the `tiny` profile (bundled photographs, 32 px)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
    cells = {"nafnet": ("denoise", "deblur"), "rrdbnet": ("sr",), "ugpnet": ("denoise", "deblur", "sr")}
    for method, tasks in cells.items():
        for task in tasks:
            mean = json.loads((tiny_run / f"results/tiny/metrics/{method}/{task}.json").read_text())["mean"]
            for metric in ("psnr", "ssim", "lpips", "fid"):
                value = df.loc[method, f"{task}_{metric}"]
                assert np.isfinite(value), (method, task, metric)
                # the table reproduces what `ugpnet evaluate` measured on the restored test images
                assert value == pytest.approx(mean[metric], abs=1e-4), (method, task, metric)
            assert df.loc[method, f"{task}_psnr"] > 0 and -1 <= df.loc[method, f"{task}_ssim"] <= 1
            assert 0 < df.loc[method, f"{task}_lpips"] < 1.5 and df.loc[method, f"{task}_fid"] >= 0
    assert pd.isna(df.loc["nafnet", "sr_psnr"])  # NAFNet does not run SR, as in the paper
    meta = json.loads((tiny_run / "results" / "table1.json").read_text())
    assert meta["profile"] == "tiny" and "not the paper" in meta["note"]
    assert (tiny_run / "results" / "table1.png").stat().st_size > 1000


def test_runs_select_on_validation_and_record_options(tiny_run):
    for path in (tiny_run / "runs" / "tiny").rglob("summary.json"):
        s = json.loads(path.read_text())
        if "select_metric" in s:
            assert s["val"], path
    opts = json.loads((tiny_run / "runs/tiny/ugpnet/deblur/fusion/options.json").read_text())
    assert opts["options"]["stage"] == "fusion"
    assert opts["options"]["contextual_features"]


def test_ugpnet_val_summary_written(tiny_run):
    summary = pd.read_csv(tiny_run / "results" / "tiny" / "ugpnet_val_summary.csv")
    assert set(summary["output"]) == {"x_reg", "x_syn", "x_hat"}


def test_second_run_has_nothing_to_do(tiny_run):
    r = _run(["--cores", "2", "results/table1.csv", "--config", "profile=tiny", "-n"], tiny_run)
    assert r.returncode == 0
    assert "Nothing to be done" in r.stdout + r.stderr, r.stdout[-2000:]
