"""Faults and bad input at run time: a diverging loss, kill -9 of each command, a full disk, a
read-only output folder. For each: one clear message (exit 2) or a plain kill, no output that looks
finished, and a rerun that completes without losing what was already computed.
(kill -9 of ``train`` at a random iteration and during a checkpoint write: tests/test_runs.py.)
The table of faults and the tests that show them: docs/RELIABILITY.md."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ugpnet.config import load_config
from ugpnet.plan import Plan
from workspace import REPO, env_with, make_tiny_data

FAST = {"methods.nafnet.train.total_iters": 20, "methods.nafnet.train.ckpt_every": 5,
        "methods.nafnet.train.val_every": 5, "methods.nafnet.train.log_every": 1,
        "methods.nafnet.train.batch_size": 2}
TRAIN = ["train", "--method", "nafnet", "--task", "denoise", "--stage", "train", "--threads", "1",
         "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    make_tiny_data(Plan.of(load_config(profile="tiny"), data=str(d)), tasks=("denoise",))
    return d


def _cli(args, sets=None, profile="tiny"):
    cmd = [sys.executable, "-m", "ugpnet", "--profile", profile]
    for k, v in (sets or {}).items():
        cmd += ["--set", f"{k}={v}"]
    return cmd + list(args)


def _run(cmd, env=None, timeout=600, cwd=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env or env_with(REPO), cwd=cwd)


def _train_sets(data, runs, extra=None):
    return {**FAST, "paths.data": str(data), "paths.runs": str(runs), **(extra or {})}


def _hook(tmp_path, code):
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(code)
    return env_with(hook, REPO)


# ------------------------------------------------------------------ a diverging training loss
NAN_AFTER = """
import os
from ugpnet.training import regression
_step = regression.SupervisedStage.step
def step(self, batch, it):
    out = _step(self, batch, it)
    if it + 1 >= int(os.environ["NAN_AT"]):
        out["loss"] = float("nan")
    return out
regression.SupervisedStage.step = step
"""


@pytest.mark.long
def test_a_nan_loss_stops_with_the_iteration_and_keeps_the_last_good_checkpoint(data, tmp_path):
    runs = tmp_path / "runs"
    run = runs / "nafnet" / "denoise" / "train"
    env = dict(_hook(tmp_path, NAN_AFTER), NAN_AT="13")
    r = _run(_cli(TRAIN, _train_sets(data, runs)), env=env)
    assert r.returncode == 2, r.stderr
    assert "diverged at iteration 13: loss is not finite (loss=nan" in r.stderr, r.stderr
    assert f"{run / 'last.pt'} (iteration 10) is kept" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (run / "model.pt").exists() and not (run / "summary.json").exists()
    assert torch.load(run / "last.pt", weights_only=True)["iter"] == 10
    logged = [json.loads(line)["iter"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert max(logged) == 12  # the bad iteration is neither logged nor saved
    # the fault gone (e.g. a fixed loss), the rerun resumes from the kept checkpoint
    r = _run(_cli(TRAIN, _train_sets(data, runs)))
    assert r.returncode == 0, r.stderr
    assert "resuming from iteration 10" in r.stdout
    assert (run / "model.pt").exists()


def test_an_infinite_loss_before_any_checkpoint_says_nothing_was_kept(tmp_path):
    from ugpnet.errors import TrainingDiverged
    from ugpnet.training.loop import check_finite
    from ugpnet.training.run import Run

    run = Run(tmp_path, {})
    check_finite({"loss": 0.5, "lr": 1e-3, "tag": "x"}, 0, run)  # finite: nothing happens
    with pytest.raises(TrainingDiverged, match=r"iteration 4: l1, adv are not finite "
                                               r"\(loss=1, l1=inf, adv=nan, lr=0\.001\).*no "
                                               r"checkpoint had been written yet"):
        check_finite({"loss": 1.0, "l1": torch.tensor(float("inf")), "adv": float("nan"),
                      "lr": 1e-3}, 3, run)
