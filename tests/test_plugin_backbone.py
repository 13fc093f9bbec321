"""The paper's central promise: any regression network plugs into UGPNet.

A toy residual backbone defined in its own module (tests/plugins/toy_backbone.py) is registered,
named in a params override, and UGPNet is trained and evaluated with it end to end through the
real DAG, without touching any other file.
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
plugins: [toy_backbone]
overrides:
  backbones:
    toy: {deblur: {width: 8}}
  methods:
    ugpnet:
      tasks: [deblur]
      backbone: {deblur: toy}
  table1: {methods: [ugpnet], tasks: [deblur]}
"""


def test_toy_backbone_trains_and_runs_in_ugpnet(repo_root, tmp_path):
    for name in ("Snakefile", "params.yaml"):
        shutil.copy(repo_root / name, tmp_path / name)
    shutil.copytree(repo_root / "workflow", tmp_path / "workflow")
    (tmp_path / "toy.yaml").write_text(OVERRIDE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(repo_root / "tests" / "plugins"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "results/table1.csv",
                        "--configfile", "params.yaml", "toy.yaml", "--config", "profile=tiny"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    logs = "\n".join(p.read_text()[-2000:] for p in (tmp_path / "logs").rglob("*.log"))
    assert r.returncode == 0, r.stderr[-4000:] + logs
    opts = json.loads((tmp_path / "runs/tiny/ugpnet/deblur/restoration/options.json").read_text())
    assert opts["options"]["backbone"] == "toy"
    # the trained restoration module holds the toy network (width 8) as its backbone
    weights = torch.load(tmp_path / "runs/tiny/ugpnet/deblur/restoration/model.pt",
                         weights_only=True)["weights"]
    backbone = {k[len("backbone."):]: v.shape for k, v in weights.items() if k.startswith("backbone.")}
    # ToyNet(width=8) of tests/plugins/toy_backbone.py (not imported here: it would register the
    # toy backbone in this process for every other test)
    w = 8
    assert backbone == {"head.weight": (w, 3, 3, 3), "head.bias": (w,), "body.1.weight": (w, w, 3, 3),
                        "body.1.bias": (w,), "tail.weight": (3, w, 3, 3), "tail.bias": (3,)}
    df = pd.read_csv(tmp_path / "results" / "table1.csv", index_col="method")
    mean = json.loads((tmp_path / "results/tiny/metrics/ugpnet/deblur.json").read_text())["mean"]
    assert list(df.index) == ["ugpnet"]
    assert df.loc["ugpnet", "deblur_psnr"] == pytest.approx(mean["psnr"], abs=1e-4)
    # the restored test images exist, one per test GT image, with the same names
    restored = sorted(p.name for p in (tmp_path / "results/tiny/restored/ugpnet/deblur/test").glob("*.png"))
    gt = sorted(p.name for p in (tmp_path / "data/tiny/gt/test").glob("*.png"))
    assert restored == gt and gt
