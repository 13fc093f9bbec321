"""The method contract's promise: a new method is one package and one params entry.

A toy *generative* method (tests/plugins/toy_generative/: two stages, the second adversarial
with its own discriminator, a frozen StyleGAN2 prior read from a file) is enabled by a
``--configfile`` override alone, then trained, restored and evaluated through the real DAG
into results/table1.csv. No file of the repository is touched.
"""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ugpnet.metrics.evaluate import read_bundle_record
from workspace import copy_workflow, env_with, failure, plan_for, snakemake

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
    work = copy_workflow(tmp_path_factory.mktemp("toygan"))
    (work / "toygan.yaml").write_text(OVERRIDE)
    r = snakemake(["--cores", "2", "results/table1.csv", "--configfile", "params.yaml",
                   "toygan.yaml", "--config", "profile=tiny"], work,
                  env=env_with(repo_root / "tests" / "plugins"), timeout=1200)
    assert r.returncode == 0, failure(r, work)
    return work


@pytest.fixture(scope="module")
def plan(toy_run, repo_root):
    sys.path.insert(0, str(repo_root / "tests" / "plugins"))  # the plugin registers its kind
    try:
        return plan_for(toy_run, configfiles=["toygan.yaml"])
    finally:
        sys.path.pop(0)


def test_toy_generative_method_reaches_table1(toy_run, plan):
    df = pd.read_csv(toy_run / "results" / "table1.csv", index_col="method")
    assert list(df.index) == ["toygan"] and df.loc["toygan", "family"] == "generative"
    mean = read_bundle_record(plan.metrics_file("toygan", "deblur"), "test",
                              plan.outputs("toygan")[0])["mean"]
    for metric in ("psnr", "ssim", "lpips", "fid"):
        assert df.loc["toygan", f"deblur_{metric}"] == pytest.approx(mean[metric], abs=1e-4)
    restored = sorted(p.name for p in Path(plan.restored_dir("toygan", "deblur", "test")).glob("*.png"))
    gt = sorted(p.name for p in Path(plan.gt_dir("test")).glob("*.png"))
    assert restored == gt and gt


def test_both_stages_ran_in_order_and_the_second_was_adversarial(toy_run, plan):
    warm_dir = Path(plan.stage_dir("toygan", "deblur", "warmup"))
    adv_dir = Path(plan.stage_dir("toygan", "deblur", "adversarial"))
    warm = json.loads((warm_dir / "options.json").read_text())["options"]
    adv = json.loads((adv_dir / "options.json").read_text())["options"]
    assert warm["stage"] == "warmup" and adv["stage"] == "adversarial"
    assert (toy_run / adv["inputs"]["warmup"]).resolve() == (warm_dir / "model.pt").resolve()
    log = [json.loads(line) for line in (adv_dir / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(r["d_loss"] > 0 and r["adversarial"] > 0 for r in log)
    summary = json.loads((adv_dir / "summary.json").read_text())
    assert summary["select_metric"] == "final" and summary["selected_iter"] == 4


def test_prior_stayed_frozen(plan):
    prior = torch.load(plan.pretrained_prior(), weights_only=True)["g_ema"]
    final = torch.load(plan.final_model("toygan", "deblur"), weights_only=True)["weights"]
    warm = torch.load(plan.stage_model("toygan", "deblur", "warmup"), weights_only=True)["weights"]
    for k, v in prior.items():
        assert torch.equal(final[f"prior.{k}"], v), k
    # while the rest of the network did train in the adversarial stage
    assert not torch.equal(final["tail.weight"], warm["tail.weight"])
