"""Runs a researcher can trust: identity, supersede, exact resume after kill -9, the lock,
file modes, checkpoints that know what they are for. (DAG-level reruns: test_runs_dag.py.)"""
import json
import multiprocessing
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ugpnet.config import load_config
from ugpnet.errors import ConfigError, RunLockedError
from ugpnet.methods import kind_of
from ugpnet.plan import Plan
from ugpnet.training.common import seed_everything
from ugpnet.training.lock import RunLock
from workspace import REPO, env_with, make_tiny_data

FAST = {"methods.nafnet.train.total_iters": 24, "methods.nafnet.train.ckpt_every": 5,
        "methods.nafnet.train.val_every": 8, "methods.nafnet.train.log_every": 1,
        "methods.nafnet.train.batch_size": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    make_tiny_data(Plan.of(load_config(profile="tiny"), data=str(d)), tasks=("denoise", "deblur"))
    return d


def _sets(extra=None, data=None, runs=None):
    items = {**FAST, **(extra or {})}
    if data is not None:
        items["paths.data"] = str(data)
    if runs is not None:
        items["paths.runs"] = str(runs)
    return [f"{k}={v}" for k, v in items.items()]


def _train(data, runs, extra=None, restart=False, task="denoise"):
    cfg = load_config(profile="tiny", sets=_sets(extra))
    seed_everything(cfg["data"]["seed"])
    ctx = Plan.of(cfg, data=str(data), runs=str(runs)).context(
        "nafnet", task, "train", progress=False, restart=restart)
    kind_of(cfg, "nafnet").train_stage(ctx)
    return ctx.out


def _weights(path):
    return torch.load(path, weights_only=True)["weights"]


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ----------------------------------------------------------------------------- identity
def test_operational_options_keep_the_identity_and_resume(data, tmp_path, capsys,
                                                           interrupt_step):
    with interrupt_step(13):  # killed after 12 steps
        _train(data, tmp_path)
    capsys.readouterr()
    # logging, checkpoint interval and workers are operational: same identity, resume at 10
    out = _train(data, tmp_path, {"methods.nafnet.train.log_every": 5,
                                  "methods.nafnet.train.ckpt_every": 3,
                                  "methods.nafnet.train.num_workers": 1})
    said = capsys.readouterr().out
    assert "resuming from iteration 10" in said and "superseded" not in said
    assert not list(out.glob("superseded-*"))
    opts = json.loads((out / "options.json").read_text())
    assert opts["operational"]["method.train.log_every"] == 5
    assert opts["code"]["package"] and "identity" in opts


def test_a_changed_identity_moves_the_old_state_aside(data, tmp_path, capsys):
    out = _train(data, tmp_path)
    first = _weights(out / "model.pt")
    capsys.readouterr()
    _train(data, tmp_path, {"methods.nafnet.train.lr": 5e-4})
    said = capsys.readouterr().out
    assert "identity changed (config.method.train.lr: 0.001 -> 0.0005)" in said
    old = list(out.glob("superseded-*"))
    assert len(old) == 1 and {"last.pt", "best.pt", "log.jsonl", "model.pt"} <= {
        p.name for p in old[0].iterdir()}
    for k, v in _weights(old[0] / "model.pt").items():  # nothing of the old run was lost
        assert torch.equal(v, first[k])
    # --restart supersedes too, even with the same identity
    _train(data, tmp_path, {"methods.nafnet.train.lr": 5e-4}, restart=True)
    assert "--restart" in capsys.readouterr().out
    assert len(list(out.glob("superseded-*"))) == 2


def test_identity_follows_input_content_not_timestamps(data, tmp_path):
    cfg = load_config(profile="tiny", sets=_sets())
    plan = Plan.of(cfg, data=str(data), runs=str(tmp_path))
    before = plan.context("nafnet", "denoise", "train").identity
    manifest = Path(plan.gt_manifest())
    text = manifest.read_text()
    rec = json.loads(text)
    rec["created_unix"] += 1000  # a re-run of `prepare` with identical images
    manifest.write_text(json.dumps(rec))
    try:
        assert plan.context("nafnet", "denoise", "train").identity == before
        rec["splits"]["train"]["files"][0]["sha256"] = "0" * 64  # other content
        manifest.write_text(json.dumps(rec))
        assert plan.context("nafnet", "denoise", "train").identity != before
    finally:
        manifest.write_text(text)


# ----------------------------------------------------------------------------- kill -9
def _cli(args, data, runs, extra=None, env=None):
    cmd = [sys.executable, "-m", "ugpnet", "--profile", "tiny"]
    for item in _sets(extra, data, runs):
        cmd += ["--set", item]
    return cmd + list(args)


TRAIN = ["train", "--method", "nafnet", "--task", "deblur", "--stage", "train", "--threads", "1",
         "--no-progress"]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run (the CLI, as the workflow runs it)."""
    runs = tmp_path_factory.mktemp("ref")
    r = subprocess.run(_cli(TRAIN, data, runs), capture_output=True, text=True, timeout=600,
                       env=env_with())
    assert r.returncode == 0, r.stderr
    return runs / "nafnet" / "deblur" / "train" / "model.pt"


def _lines(path):
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


@pytest.mark.long
def test_kill_9_at_random_iterations_then_resume_gives_bit_identical_weights(data, reference,
                                                                           tmp_path):
    rng = random.Random(1234)
    for trial in range(3):
        runs = tmp_path / f"trial{trial}"
        log = runs / "nafnet" / "deblur" / "train" / "log.jsonl"
        target = rng.randint(3, 20)
        p = subprocess.Popen(_cli(TRAIN, data, runs), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env_with())
        while _lines(log) < target and p.poll() is None:
            time.sleep(0.002)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert not (log.parent / "model.pt").exists(), "a killed run must not look finished"
        r = subprocess.run(_cli(TRAIN, data, runs), capture_output=True, text=True, timeout=600,
                           env=env_with())
        assert r.returncode == 0, r.stderr
        _assert_same_weights(log.parent / "model.pt", reference)


KILL_ON_SAVE = """
import os, signal, torch
_n = {"calls": 0}
_save = torch.save
def save(obj, f, *a, **k):
    _n["calls"] += 1
    if _n["calls"] == int(os.environ["KILL_ON_SAVE"]):
        with open(f, "wb") as out:  # half a file, then the process dies mid-write
            out.write(b"PK\\x03\\x04" + b"\\0" * 4096)
        os.kill(os.getpid(), signal.SIGKILL)
    return _save(obj, f, *a, **k)
torch.save = save
"""


@pytest.mark.long
def test_kill_9_during_a_checkpoint_write_then_resume(data, reference, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_ON_SAVE)
    runs = tmp_path / "runs"
    run = runs / "nafnet" / "deblur" / "train"
    p = subprocess.run(_cli(TRAIN, data, runs), capture_output=True, text=True, timeout=600,
                       env=dict(env_with(hook), KILL_ON_SAVE="4"))
    assert p.returncode == -signal.SIGKILL
    assert not (run / "model.pt").exists()
    assert [f for f in os.listdir(run) if f.startswith(".last.pt.") or f.startswith(".best.pt.")]
    r = subprocess.run(_cli(TRAIN, data, runs), capture_output=True, text=True, timeout=600,
                       env=env_with())
    assert r.returncode == 0, r.stderr
    _assert_same_weights(run / "model.pt", reference)
    assert not [f for f in os.listdir(run) if f.startswith(".")
                and f != ".lock"], "temp files of the killed write must be cleaned up"


# ----------------------------------------------------------------------------- the lock
def _hold_lock(folder, ready):
    RunLock(folder).acquire()
    ready.set()
    time.sleep(60)


def test_lock_refuses_a_second_holder_and_is_freed_by_a_kill_9(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(tmp_path, ready))
    child.start()
    try:
        assert ready.wait(20)
        with pytest.raises(RunLockedError, match=rf"pid {child.pid} on host .*kill {child.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    with RunLock(tmp_path):  # the dead holder's lock is gone: taken at once
        pass


@pytest.mark.long
def test_a_second_trainer_in_the_same_run_folder_stops_with_a_message(data, tmp_path):
    runs = tmp_path / "runs"
    log = runs / "nafnet" / "deblur" / "train" / "log.jsonl"
    slow = {"methods.nafnet.train.total_iters": 100000}
    first = subprocess.Popen(_cli(TRAIN, data, runs, slow), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env_with())
    try:
        while _lines(log) < 2:
            assert first.poll() is None, "the first trainer died"
            time.sleep(0.05)
        second = subprocess.run(_cli(TRAIN, data, runs, slow), capture_output=True, text=True,
                                timeout=300, env=env_with())
        assert second.returncode == 2
        assert f"being trained by another process (pid {first.pid}" in second.stderr
        assert first.poll() is None  # the first one goes on undisturbed
    finally:
        first.kill()
        first.wait()


# ----------------------------------------------------------------------------- files and checkpoints
@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_outputs_respect_the_umask(tmp_path, monkeypatch, mask, file_mode, dir_mode):
    from ugpnet import io
    from ugpnet.data.prepare import prepare_bundled

    old = os.umask(mask)
    monkeypatch.setattr(io, "_UMASK", None)
    try:
        io.atomic_write_text(tmp_path / "a.txt", "x")
        prepare_bundled(tmp_path / "gt", resolution=32, counts={"train": 1, "val": 1, "test": 1},
                        progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "gt" / "manifest.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "gt" / "train").stat().st_mode) == dir_mode
    png = next((tmp_path / "gt" / "train").glob("*.png"))
    assert stat.S_IMODE(png.stat().st_mode) == file_mode


def test_a_checkpoint_restored_as_another_task_is_refused(data, tmp_path, capsys):
    from ugpnet.cli import main

    out = _train(data, tmp_path, task="deblur")
    model = torch.load(out / "model.pt", weights_only=True)
    assert model["label"] == {"method": "nafnet", "task": "deblur", "stage": "train",
                              "kind": "regression", "profile": "tiny", "experiment": "default"}
    cfg = load_config(profile="tiny")
    rc = main(["--profile", "tiny", "restore", "--method", "nafnet", "--task", "denoise",
               "--checkpoint", str(out / "model.pt"), "--in",
               Plan.of(cfg, data=str(data)).lq_dir("denoise", "val"), "--out",
               str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "trained for nafnet/deblur" in err and "not for nafnet/denoise" in err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_no_prior_at_paper_scale_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    from ugpnet.cli import main

    # torchvision's VGG19 in the torch hub folder (ESRGAN's perceptual term), so that the prior
    # is what this configuration lacks (each missing file is refused: tests/test_baseline_*.py)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth").write_bytes(b"stand-in")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = load_config(profile="paper")
    # (GFP-GAN's stylegan2_cm1 or UGPNet's stylegan2, whichever the plan meets first)
    with pytest.raises(ConfigError, match=r"priors\.stylegan2(_cm1)?\.checkpoint is null.*total_iters is 0"):
        Plan.of(cfg).check()
    rc = main(["--profile", "paper", "pretrain-prior", "--gt", str(tmp_path), "--out",
               str(tmp_path / "prior")])  # two priors now (GFP-GAN's too): which one?
    assert rc == 2 and "name one with --prior" in capsys.readouterr().err
    rc = main(["--profile", "paper", "pretrain-prior", "--prior", "stylegan2", "--gt",
               str(tmp_path), "--out", str(tmp_path / "prior")])
    assert rc == 2 and "never written" in capsys.readouterr().err
    assert not (tmp_path / "prior" / "model.pt").exists()
