"""The paper's central promise: any regression network plugs into UGPNet.

A toy residual backbone defined in its own module (tests/plugins/toy_backbone.py) is registered,
named in a params override, and UGPNet is trained and evaluated with it end to end through the
real DAG, without touching any other file.
"""
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from ugpnet.metrics.evaluate import read_bundle_record
from workspace import copy_workflow, env_with, failure, plan_for, snakemake

OVERRIDE = """
plugins: [toy_backbone]
overrides:
  backbones:
    toy: {deblur: {width: 8}}
  methods:
    ugpnet:
      tasks: [deblur]
      backbone: {deblur: toy}
      init_from: {deblur: null}   # no regression method of the toy backbone to start from
  table1: {methods: [ugpnet], tasks: [deblur]}
"""


def test_toy_backbone_trains_and_runs_in_ugpnet(repo_root, tmp_path):
    copy_workflow(tmp_path)
    (tmp_path / "toy.yaml").write_text(OVERRIDE)
    r = snakemake(["--cores", "2", "results/table1.csv", "--configfile", "params.yaml", "toy.yaml",
                   "--config", "profile=tiny"], tmp_path,
                  env=env_with(repo_root / "tests" / "plugins"), timeout=1200)
    assert r.returncode == 0, failure(r, tmp_path)
    plan = plan_for(tmp_path, configfiles=["toy.yaml"], plugins=False)  # paths only
    run = Path(plan.stage_dir("ugpnet", "deblur", "restoration"))
    opts = json.loads((run / "options.json").read_text())
    assert opts["options"]["backbone"] == "toy"
    # the trained restoration module holds the toy network (width 8) as its backbone
    weights = torch.load(run / "model.pt", weights_only=True)["weights"]
    backbone = {k[len("backbone."):]: v.shape for k, v in weights.items() if k.startswith("backbone.")}
    # ToyNet(width=8) of tests/plugins/toy_backbone.py
    w = 8
    assert backbone == {"head.weight": (w, 3, 3, 3), "head.bias": (w,), "body.1.weight": (w, w, 3, 3),
                        "body.1.bias": (w,), "tail.weight": (3, w, 3, 3), "tail.bias": (3,)}
    df = pd.read_csv(tmp_path / "results" / "table1.csv", index_col="method")
    mean = read_bundle_record(plan.metrics_file("ugpnet", "deblur"), "test",
                              plan.outputs("ugpnet")[0])["mean"]
    assert list(df.index) == ["ugpnet"]
    assert df.loc["ugpnet", "deblur_psnr"] == pytest.approx(mean["psnr"], abs=1e-4)
    # the restored test images exist, one per test GT image, with the same names
    restored = sorted(p.name for p in Path(plan.restored_dir("ugpnet", "deblur", "test")).glob("*.png"))
    gt = sorted(p.name for p in Path(plan.gt_dir("test")).glob("*.png"))
    assert restored == gt and gt
