"""A model trained outside the DAG is not taken as the DAG's (tiny profile, NAFNet denoise).

The check itself on a labelled model.pt (fast); then one workspace, in order (long): the DAG
runs; a copy of its model restores from another folder; then NAFNet is trained again outside
the DAG, into the workflow's run folder, with a learning rate the configuration does not have.
From then on `ugpnet restore` and `ugpnet evaluate` refuse it (naming the file, the difference
and the fix), a dry run plans its train job and everything after it (writing no file), and a
real run retrains it to the configuration's identity, after which nothing is left to do.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ugpnet.checkpoints import save_checkpoint
from ugpnet.config import load_config
from ugpnet.errors import CheckpointError
from ugpnet.plan import Plan
from ugpnet.provenance import digest_of
from workspace import REPO, copy_workflow, env_with, failure, make_tiny_data, plan_for, snakemake

BASE = """
overrides:
  table1: {methods: [nafnet], tasks: [denoise]}
"""
OUTSIDE_LR = "5e-4"  # params.yaml (tiny): methods.nafnet.train.lr = 1e-3
NOTHING = "Nothing to be done"
TRAIN = "train method=nafnet, task=denoise, stage=train"


def _dag(work, dry=False):
    args = ["--cores", "2", "results/table1.csv", "--configfile", "params.yaml", "base.yaml",
            "--config", "profile=tiny"] + (["-n"] if dry else [])
    return snakemake(args, work)


def _cli(work, *args, cwd=None):
    cmd = [sys.executable, "-m", "ugpnet", "--profile", "tiny", *args]
    return subprocess.run(cmd, cwd=cwd or work, capture_output=True, text=True, timeout=600,
                          env=env_with(REPO))


def _planned(r) -> list[str]:
    """``rule`` or ``rule wildcards`` of every job a dry run lists."""
    out = []
    for line in (r.stdout + r.stderr).splitlines():
        m = re.match(r"^(?:localrule|rule) (\w+):", line)
        if m:
            out.append(m.group(1))
        m = re.match(r"^\s+wildcards: (.*)", line)
        if m and out:
            out[-1] = f"{out[-1]} {m.group(1)}"
    return out


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if p.is_file() and ".snakemake" not in p.parts}


def _identity_hash(model) -> str:
    return torch.load(model, map_location="cpu", weights_only=True)["identity_hash"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = copy_workflow(tmp_path_factory.mktemp("stale_models"))
    (w / "base.yaml").write_text(BASE)
    r = _dag(w)
    assert r.returncode == 0, failure(r, w)
    return w


@pytest.fixture(scope="module")
def plan(work):
    return plan_for(work, configfiles=["base.yaml"])


@pytest.fixture(scope="module")
def outside(work, plan):
    """NAFNet/denoise trained again outside the DAG with another lr, into the DAG's folder."""
    model = Path(plan.final_model("nafnet", "denoise"))
    before = _identity_hash(model)
    r = _cli(work, "--configfile", "base.yaml", "--set", f"methods.nafnet.train.lr={OUTSIDE_LR}",
             "train", "--method", "nafnet", "--task", "denoise", "--no-progress")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    options = json.loads((model.parent / "options.json").read_text())
    assert options["identity"]["config"]["method"]["train"]["lr"] == 5e-4
    assert _identity_hash(model) != before
    return model


@pytest.mark.long
def test_a_finished_workspace_plans_nothing(work):
    r = _dag(work, dry=True)
    assert r.returncode == 0 and NOTHING in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]


@pytest.mark.long
def test_a_model_from_another_run_folder_of_the_same_configuration_restores(work, plan,
                                                                             tmp_path):
    copy = tmp_path / "elsewhere" / "model.pt"
    copy.parent.mkdir()
    copy.write_bytes(Path(plan.final_model("nafnet", "denoise")).read_bytes())
    r = _cli(work, "--configfile", "base.yaml", "restore", "--method", "nafnet", "--task",
             "denoise", "--checkpoint", str(copy), "--in", plan.lq_dir("denoise", "test"),
             "--out", str(tmp_path / "out"), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "warning" not in r.stderr, r.stderr


@pytest.mark.long
def test_without_the_stage_inputs_the_check_says_it_was_not_done(work, plan, tmp_path):
    # from another folder the configuration's data paths do not exist: the identity (which
    # hashes the training data) cannot be computed, and the restore says so
    r = _cli(work, "restore", "--method", "nafnet", "--task", "denoise", "--checkpoint",
             plan.final_model("nafnet", "denoise"), "--in", plan.lq_dir("denoise", "test"),
             "--out", str(tmp_path / "out"), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "is not checked against this configuration" in r.stderr, r.stderr
    assert "do not exist here (gt: " in r.stderr, r.stderr


@pytest.mark.long
def test_restore_refuses_a_model_trained_outside_the_dag(work, plan, outside, tmp_path):
    out = tmp_path / "out"
    r = _cli(work, "--configfile", "base.yaml", "restore", "--method", "nafnet", "--task",
             "denoise", "--checkpoint", str(Path(plan.runs) / "nafnet" / "denoise"),
             "--in", plan.lq_dir("denoise", "test"), "--out", str(out), "--no-progress")
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
    err = r.stderr
    assert f"'{outside}' was trained with another identity" in err, err
    assert "config.method.train.lr: 0.0005 -> 0.001" in err, err
    assert "ugpnet train --method nafnet --task denoise --restart" in err, err
    assert "snakemake --cores all results/table1.csv" in err and "Traceback" not in err, err
    assert not (out / "manifest.json").exists()


@pytest.mark.long
def test_evaluate_refuses_a_folder_restored_with_a_model_changed_since(work, plan, outside,
                                                                       tmp_path):
    r = _cli(work, "--configfile", "base.yaml", "evaluate", "--method", "nafnet", "--task",
             "denoise", "--out", str(tmp_path / "m.json"), "--no-progress")
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
    err = r.stderr
    restored = Path(plan.restored_dir("nafnet", "denoise", "test")).relative_to(work)
    model = outside.relative_to(work)  # as the restore manifest names it (the DAG's paths)
    assert f"{restored} was restored with '{model}', which has changed since" in err, err
    assert not (tmp_path / "m.json").exists()


@pytest.mark.long
def test_a_dry_run_plans_the_stale_stage_and_its_dependents_and_writes_nothing(work, outside):
    before = _snapshot(work)
    r = _dag(work, dry=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    jobs = _planned(r)
    assert TRAIN in jobs, jobs
    assert {"restore", "evaluate", "table1", "active_table1"} <= {j.split()[0] for j in jobs}
    assert f"{Path(outside).relative_to(work)} was trained with another identity" in r.stderr
    assert "config.method.train.lr: 0.0005 -> 0.001" in r.stderr, r.stderr
    assert _snapshot(work) == before


@pytest.mark.long
def test_the_dag_retrains_it_to_the_configurations_identity(work, plan, outside):
    r = _dag(work)
    assert r.returncode == 0, failure(r, work)
    _, want = plan.expected_identity("nafnet", "denoise", "train")
    assert _identity_hash(outside) in want
    options = json.loads((outside.parent / "options.json").read_text())
    assert options["identity"]["config"]["method"]["train"]["lr"] == 1e-3
    # the outside run is moved aside, not deleted (Snakemake deletes a job's model.pt before
    # the job; the same selected weights are in its best.pt)
    kept = [json.loads((d / "options.json").read_text())["identity"]["config"]["method"]
            ["train"]["lr"] for d in outside.parent.glob("superseded-*")
            if (d / "best.pt").is_file()]
    assert 5e-4 in kept, kept
    r = _dag(work, dry=True)
    assert r.returncode == 0 and NOTHING in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]


def _tiny_plan(tmp_path, *sets, data=True) -> Plan:
    plan = Plan.of(load_config(profile="tiny", sets=list(sets)), data=str(tmp_path / "data"),
                   runs=str(tmp_path / "runs"))
    if data:
        make_tiny_data(plan, counts={"train": 2, "val": 1, "test": 1}, tasks=("denoise",))
    return plan


def _model_with(plan, tmp_path, identity) -> Path:
    model = tmp_path / "elsewhere" / "model.pt"
    save_checkpoint(model, {"weights": {}, "label": plan.label("nafnet", "denoise", "train"),
                            "identity_hash": digest_of(identity)})
    (model.parent / "options.json").write_text(json.dumps(
        {"identity_hash": digest_of(identity), "identity": identity}))
    return model


def test_a_model_of_another_identity_is_refused_with_the_difference(tmp_path):
    plan = _tiny_plan(tmp_path)
    identity = plan.context("nafnet", "denoise", "train").identity
    plan.check_model_identity("nafnet", "denoise", _model_with(plan, tmp_path, identity))
    other = json.loads(json.dumps(identity))
    other["config"]["method"]["train"]["lr"] = 5e-4
    model = _model_with(plan, tmp_path, other)
    with pytest.raises(CheckpointError, match=re.escape(
            f"'{model}' was trained with another identity than this configuration gives stage "
            f"'train' of nafnet/denoise: config.method.train.lr: 0.0005 -> 0.001.")):
        plan.check_model_identity("nafnet", "denoise", model)
    (model.parent / "options.json").unlink()  # the differences cannot be listed, the hash can
    with pytest.raises(CheckpointError, match=f"identity {digest_of(other)} instead of "
                                              f"{digest_of(identity)}"):
        plan.check_model_identity("nafnet", "denoise", model)
    # not ours to check: another task's label (the restore refuses it), a file without identity
    plan.check_model_identity("nafnet", "deblur", model)
    save_checkpoint(model, {"weights": {}})
    plan.check_model_identity("nafnet", "denoise", model)


def test_with_auto_precision_either_resolution_is_the_configurations(tmp_path):
    # a model trained where `auto` meant bf16 (a GPU) restores where it means fp32, and back
    plan = _tiny_plan(tmp_path, "train_precision=auto")
    identity = plan.context("nafnet", "denoise", "train").identity
    for precision in ("bf16", "fp32"):
        plan.check_model_identity("nafnet", "denoise", _model_with(
            plan, tmp_path, {**identity, "precision": precision}))
    fp32 = _tiny_plan(tmp_path, data=False)  # fp32: one identity, without precision keys
    model = _model_with(fp32, tmp_path, {**identity, "precision": "fp32"})
    with pytest.raises(CheckpointError, match="config.train_precision: removed"):
        fp32.check_model_identity("nafnet", "denoise", model)
