"""The method contract's promise: a new method is one package and one params entry.

A toy *generative* method (tests/plugins/toy_generative/: a shared stage trained once for the
three tasks, then two per-task stages, the last adversarial with its own discriminator on the
shared adversarial stage, around a frozen named StyleGAN2 prior) is enabled by a ``--configfile``
override alone, then trained, restored and evaluated through the real DAG into
results/table1.csv. A second method of the kind reads a second named prior of another
architecture; the one wildcard rule pretrains both. No file of the repository is touched.
"""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ugpnet.metrics.evaluate import read_bundle_record
from workspace import copy_workflow, env_with, failure, plan_for, snakemake

TRAIN = ("{total_iters: 4, batch_size: 2, lr: 1.0e-3, val_every: 2, ckpt_every: 2, log_every: 1, "
         "num_workers: 0}")
# the README's toy method (one methods entry) reads the tiny profile's prior `stylegan2`; a second
# method of the same kind reads a second named prior of another architecture
OVERRIDE = f"""
plugins: [toy_generative]
overrides:
  priors:
    toy_prior:
      size: 32
      style_dim: 16
      n_mlp: 1
      channel_multiplier: 2
      d_channel_multiplier: 1
      channel_max: 8
      encoder_channel_max: 8
      basecode_size: 8
      checkpoint: null
      pretrain: {{total_iters: 2, batch_size: 2, lr: 0.002, r1_gamma: 10.0, r1_every: 16,
                 ema_half_life_images: 20, log_every: 1, ckpt_every: 2}}
  methods:
    toygan: &toy
      kind: toy_generative
      tasks: [denoise, deblur, sr]
      sr_input: bicubic_up
      prior: stylegan2
      width: 8
      stages:
        clean: {{train: {TRAIN}}}
        warmup: {{train: {TRAIN}}}
        adversarial: {{d_lr: 1.0e-3, adv_weight: 0.1, train: {TRAIN}}}
    toy_b:
      <<: *toy
      tasks: [deblur]
      prior: toy_prior
  table1: {{methods: [toygan, toy_b], tasks: [denoise, deblur, sr]}}
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
    assert list(df.index) == plan.table1_methods()
    assert set(df["family"]) == {"generative"}
    for method, task in plan.table_cells():
        mean = read_bundle_record(plan.metrics_file(method, task), "test",
                                  plan.outputs(method)[0])["mean"]
        for metric in ("psnr", "ssim", "lpips", "fid"):
            assert df.loc[method, f"{task}_{metric}"] == pytest.approx(mean[metric], abs=1e-4)
        restored = sorted(p.name for p in
                          Path(plan.restored_dir(method, task, "test")).glob("*.png"))
        gt = sorted(p.name for p in Path(plan.gt_dir("test")).glob("*.png"))
        assert restored == gt and gt


def test_the_stages_ran_in_order_and_the_last_was_adversarial(toy_run, plan):
    clean = Path(plan.stage_dir("toygan", "shared", "clean"))
    for task in ("denoise", "deblur", "sr"):
        warm_dir = Path(plan.stage_dir("toygan", task, "warmup"))
        adv_dir = Path(plan.stage_dir("toygan", task, "adversarial"))
        warm = json.loads((warm_dir / "options.json").read_text())["options"]
        adv = json.loads((adv_dir / "options.json").read_text())["options"]
        assert warm["stage"] == "warmup" and adv["stage"] == "adversarial"
        assert (toy_run / warm["inputs"]["clean"]).resolve() == (clean / "model.pt").resolve()
        assert (toy_run / adv["inputs"]["warmup"]).resolve() == (warm_dir / "model.pt").resolve()
        log = [json.loads(line) for line in (adv_dir / "log.jsonl").read_text().splitlines()]
        assert len(log) == 4 and all(r["d_loss"] > 0 and r["adversarial"] > 0 for r in log)
        summary = json.loads((adv_dir / "summary.json").read_text())
        assert summary["select_metric"] == "final" and summary["selected_iter"] == 4


def test_the_shared_stage_trained_once_for_three_tasks(toy_run, plan):
    """One ``clean`` run for toygan (its three tasks read it), on clean faces (no degradation)."""
    runs = sorted(p.parent.relative_to(Path(plan.runs)).as_posix()
                  for p in Path(plan.runs).glob("toygan/*/clean/model.pt"))
    assert runs == ["toygan/shared/clean"]
    options = json.loads((Path(plan.runs) / runs[0] / "options.json").read_text())
    assert options["label"]["task"] == "shared" and "degradations" not in options["identity"][
        "config"]
    assert sorted(options["identity"]["inputs"]) == ["gt", "prior"]
    bench = sorted(p.name for p in (toy_run / plan.logs / "benchmarks" / "train").glob("toygan_*"))
    assert [b for b in bench if "clean" in b] == ["toygan_shared_clean.tsv"]


def test_two_named_priors_of_different_architectures_were_pretrained_by_one_rule(toy_run, plan):
    a, b = plan.pretrained_prior("stylegan2"), plan.pretrained_prior("toy_prior")
    assert a != b and Path(a).is_file() and Path(b).is_file()
    ga = torch.load(a, weights_only=True)["g_ema"]
    gb = torch.load(b, weights_only=True)["g_ema"]
    assert {k: v.shape for k, v in ga.items()} != {k: v.shape for k, v in gb.items()}
    logs = sorted(p.name for p in (toy_run / plan.logs).glob("pretrain_prior_*.log"))
    assert logs == sorted(f"pretrain_prior_{plan.prior_id(n)}.log"
                          for n in ("stylegan2", "toy_prior"))
    # each toy method reads its own prior
    for method, name in (("toygan", "stylegan2"), ("toy_b", "toy_prior")):
        opts = json.loads((Path(plan.stage_dir(method, "deblur", "warmup")) /
                           "options.json").read_text())["options"]
        assert (toy_run / opts["inputs"]["prior"]).resolve() == \
            Path(plan.pretrained_prior(name)).resolve()


@pytest.mark.parametrize("method,name", [("toygan", "stylegan2"), ("toy_b", "toy_prior")])
def test_prior_stayed_frozen(plan, method, name):
    prior = torch.load(plan.pretrained_prior(name), weights_only=True)["g_ema"]
    final = torch.load(plan.final_model(method, "deblur"), weights_only=True)["weights"]
    warm = torch.load(plan.stage_model(method, "deblur", "warmup"), weights_only=True)["weights"]
    for k, v in prior.items():
        assert torch.equal(final[f"prior.{k}"], v), k
    # while the rest of the network did train in the adversarial stage
    assert not torch.equal(final["tail.weight"], warm["tail.weight"])
