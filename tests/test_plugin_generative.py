"""The method contract's promise: a new method is one package and one params entry.

A toy *generative* method (tests/plugins/toy_generative/: two stages, the second adversarial
with its own discriminator, a frozen StyleGAN2 prior read from a file) is enabled by a
``--configfile`` override alone, then trained, restored and evaluated through the real DAG
into results/table1.csv. No file of the repository is touched.
"""
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

OVERRIDE = """
plugins: [toy_generative]
overrides:
  methods:
    toygan:
      kind: toy_generative
      tasks: [deblur]
      width: 8
      stages:
        warmup:
          train: {total_iters: 4, batch_size: 2, lr: 1.0e-3, val_every: 2, ckpt_every: 2,
                  log_every: 1, num_workers: 0}
        adversarial:
          d_lr: 1.0e-3
          adv_weight: 0.1
          train: {total_iters: 4, batch_size: 2, lr: 1.0e-3, val_every: 2, ckpt_every: 2,
                  log_every: 1, num_workers: 0}
  table1: {methods: [toygan], tasks: [deblur]}
"""


@pytest.fixture(scope="module")
def toy_run(repo_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("toygan")
    for name in ("Snakefile", "params.yaml"):
        shutil.copy(repo_root / name, work / name)
    shutil.copytree(repo_root / "workflow", work / "workflow")
    (work / "toygan.yaml").write_text(OVERRIDE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(repo_root / "tests" / "plugins"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "results/table1.csv",
                        "--configfile", "params.yaml", "toygan.yaml", "--config", "profile=tiny"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    logs = "\n".join(p.read_text()[-2000:] for p in (work / "logs").rglob("*.log"))
    assert r.returncode == 0, r.stderr[-4000:] + logs
    return work


def test_toy_generative_method_reaches_table1(toy_run):
    df = pd.read_csv(toy_run / "results" / "table1.csv", index_col="method")
    assert list(df.index) == ["toygan"] and df.loc["toygan", "family"] == "generative"
    mean = json.loads((toy_run / "results/tiny/metrics/toygan/deblur.json").read_text())["mean"]
    for metric in ("psnr", "ssim", "lpips", "fid"):
        assert df.loc["toygan", f"deblur_{metric}"] == pytest.approx(mean[metric], abs=1e-4)
    restored = sorted(p.name for p in (toy_run / "results/tiny/restored/toygan/deblur/test").glob("*.png"))
    gt = sorted(p.name for p in (toy_run / "data/tiny/gt/test").glob("*.png"))
    assert restored == gt and gt


def test_both_stages_ran_in_order_and_the_second_was_adversarial(toy_run):
    runs = toy_run / "runs/tiny/toygan/deblur"
    warm = json.loads((runs / "warmup/options.json").read_text())["options"]
    adv = json.loads((runs / "adversarial/options.json").read_text())["options"]
    assert warm["stage"] == "warmup" and adv["stage"] == "adversarial"
    assert adv["inputs"]["warmup"].endswith("runs/tiny/toygan/deblur/warmup/model.pt")
    log = [json.loads(line) for line in (runs / "adversarial/log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(r["d_loss"] > 0 and r["adversarial"] > 0 for r in log)
    summary = json.loads((runs / "adversarial/summary.json").read_text())
    assert summary["select_metric"] == "final" and summary["selected_iter"] == 4


def test_prior_stayed_frozen(toy_run):
    prior = torch.load(toy_run / "runs/tiny/prior/model.pt", weights_only=True)["g_ema"]
    final = torch.load(toy_run / "runs/tiny/toygan/deblur/adversarial/model.pt",
                       weights_only=True)["weights"]
    warm = torch.load(toy_run / "runs/tiny/toygan/deblur/warmup/model.pt",
                      weights_only=True)["weights"]
    for k, v in prior.items():
        assert torch.equal(final[f"prior.{k}"], v), k
    # while the rest of the network did train in the adversarial stage
    assert not torch.equal(final["tail.weight"], warm["tail.weight"])
