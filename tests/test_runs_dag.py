"""Workflow reruns that follow content, not accidents (tiny profile, NAFNet + UGPNet deblur).

One workspace, in order: a first run; dry runs that must plan nothing (rerun, other python
path, moved clone, operational options) or only what changed (the fusion lr); a dry run must not
touch a file; then real reruns: a changed upstream (NAFNet lr) retrains UGPNet's restoration
(stale downstream), and a second experiment leaves the first one's files alone.
"""
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from workspace import copy_workflow, failure, plan_for, snakemake

pytestmark = pytest.mark.long

BASE = """
overrides:
  methods:
    ugpnet: {init_from: {deblur: nafnet}}
  table1: {methods: [nafnet, ugpnet], tasks: [deblur]}
"""
OPERATIONAL = """
overrides:
  methods:
    nafnet: {train: {num_workers: 2, log_every: 1, ckpt_every: 1}}
    ugpnet: {stages: {fusion: {train: {log_every: 1}}, restoration: {train: {num_workers: 1}}}}
"""
FUSION_LR = """
overrides:
  methods:
    ugpnet: {stages: {fusion: {train: {lr: 0.002}}}}
"""
NAFNET_LR = """
overrides:
  methods:
    nafnet: {train: {lr: 0.0005}}
"""
TARGET = ["--cores", "2", "results/table1.csv"]


def _run(work, *configfiles, config=("profile=tiny",), dry=False, cwd=None, python=None):
    args = TARGET + ["--configfile", "params.yaml", "base.yaml", *configfiles,
                     "--config", *config] + (["-n"] if dry else [])
    return snakemake(args, cwd or work, python=python)


def _planned(r) -> list[str]:
    """(rule, wildcards) lines of a dry run's job list."""
    out, rule = [], None
    for line in (r.stdout + r.stderr).splitlines():
        m = re.match(r"^(?:localrule|rule) (\w+):", line)
        if m:
            rule = m.group(1)
            out.append(rule)
        m = re.match(r"^\s+wildcards: (.*)", line)
        if m and rule:
            out[-1] = f"{rule} {m.group(1)}"
    return out


NOTHING = "Nothing to be done"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = copy_workflow(tmp_path_factory.mktemp("runs_dag"))
    for name, text in (("base.yaml", BASE), ("ops.yaml", OPERATIONAL), ("fusion.yaml", FUSION_LR),
                       ("nafnet.yaml", NAFNET_LR)):
        (w / name).write_text(text)
    r = _run(w)
    assert r.returncode == 0, failure(r, w)
    return w


def test_a_finished_workspace_plans_nothing(work):
    r = _run(work, dry=True)
    assert r.returncode == 0 and NOTHING in r.stdout + r.stderr, r.stdout[-3000:]


def test_another_python_path_or_a_moved_clone_plans_nothing(work, tmp_path):
    exe = Path(sys.executable)  # the venv's python -> its python3 (the same interpreter)
    other = exe.with_name("python3" if exe.name != "python3" else "python")
    assert other.exists()
    r = _run(work, dry=True, python=other)
    assert r.returncode == 0 and NOTHING in r.stdout + r.stderr, r.stdout[-3000:]
    moved = tmp_path / "moved"
    shutil.copytree(work, moved, symlinks=True, copy_function=shutil.copy2)
    r = _run(moved, dry=True)
    assert r.returncode == 0 and NOTHING in r.stdout + r.stderr, r.stdout[-3000:]


def test_operational_options_plan_nothing(work):
    r = _run(work, "ops.yaml", dry=True)
    assert r.returncode == 0 and NOTHING in r.stdout + r.stderr, r.stdout[-3000:]


def test_the_fusion_lr_reruns_fusion_only(work):
    r = _run(work, "fusion.yaml", dry=True)
    assert r.returncode == 0, r.stderr[-3000:]
    trains = sorted(j for j in _planned(r) if j.startswith("train "))
    assert trains == ["train method=ugpnet, task=deblur, stage=fusion"], _planned(r)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if p.is_file() and ".snakemake" not in p.parts}


def test_a_dry_run_with_another_configuration_changes_no_file(work):
    before = _snapshot(work)
    r = _run(work, "fusion.yaml", "nafnet.yaml", dry=True)
    assert r.returncode == 0, r.stderr[-3000:]
    after = _snapshot(work)
    changed = [f for f in before if after.get(f) != before[f]]
    assert not changed, changed
    new = [f for f in after if f not in before]
    # only the new configuration's own content-addressed file may appear
    assert all(re.fullmatch(r"runs/tiny/default/configs/[0-9a-f]{16}\.yaml", f) for f in new), new


def test_the_paper_profile_without_a_prior_fails_before_any_job(work):
    r = _run(work, config=("profile=paper",), dry=True)
    assert r.returncode != 0
    assert "priors.stylegan2.checkpoint is null" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]


def test_training_logs_have_a_line_per_logging_window(work):
    plan = plan_for(work, configfiles=["base.yaml"])
    log = (Path(plan.logs) / "train_nafnet_deblur_train.log").read_text()
    lines = [line for line in log.splitlines() if line.startswith("[train] iter ")]
    total = plan.cfg["methods"]["nafnet"]["train"]["total_iters"]
    assert len(lines) == total // plan.cfg["methods"]["nafnet"]["train"]["log_every"]
    assert re.fullmatch(r"\[train\] iter 4/4 loss=\S+ psnr=\S+ lr=\S+ \S+ it/s ETA \d+:\d\d:\d\d",
                        lines[-1]), lines[-1]


def test_a_changed_upstream_retrains_the_downstream_stage(work):
    plan = plan_for(work, configfiles=["base.yaml"])
    restoration = Path(plan.stage_dir("ugpnet", "deblur", "restoration"))
    old = torch.load(restoration / "model.pt", weights_only=True)["weights"]
    r = _run(work, "nafnet.yaml")
    assert r.returncode == 0, failure(r, work)
    log = (Path(plan.logs) / "train_ugpnet_deblur_restoration.log").read_text()
    assert "identity changed (inputs.init_from: content changed)" in log, log
    assert "resuming" not in log
    assert len(list(restoration.glob("superseded-*"))) == 1
    new = torch.load(restoration / "model.pt", weights_only=True)["weights"]
    assert any(not torch.equal(old[k], new[k]) for k in new if k.startswith("backbone."))
    # and the new restoration starts from the retrained NAFNet
    nafnet = torch.load(plan.final_model("nafnet", "deblur"), weights_only=True)["weights"]
    opts = json.loads((restoration / "options.json").read_text())
    assert opts["options"]["initialised_from"].endswith("nafnet/deblur/train/model.pt")
    assert set(nafnet) == {k[len("backbone."):] for k in new if k.startswith("backbone.")}


def test_a_second_experiment_leaves_the_first_alone(work):
    first = plan_for(work, configfiles=["base.yaml", "nafnet.yaml"])
    before = _snapshot(Path(first.runs)) | {f"results/{k}": v for k, v in
                                             _snapshot(Path(first.results)).items()}
    r = _run(work, config=("profile=tiny", "experiment=second"))
    assert r.returncode == 0, failure(r, work)
    second = plan_for(work, configfiles=["base.yaml"], experiment="second")
    assert Path(second.final_model("ugpnet", "deblur")).exists()
    assert second.runs != first.runs and second.gt_root() == first.gt_root()  # data is shared
    after = _snapshot(Path(first.runs)) | {f"results/{k}": v for k, v in
                                            _snapshot(Path(first.results)).items()}
    assert after == before
    assert "rule prepare" not in r.stdout + r.stderr and "rule degrade" not in r.stdout + r.stderr
    meta = json.loads((work / "results" / "table1.json").read_text())
    assert meta["experiment"] == "second"
    # switching back recopies the first experiment's table, nothing else
    r = _run(work, "nafnet.yaml", dry=True)
    assert _planned(r) == ["active_table1"], _planned(r)
