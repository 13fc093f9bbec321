"""The GPU check (bench/gpu_check.sh, issue 23): its CPU mode end to end (the same code path as on
a GPU, the tiny profile's networks; its loop part trains one tiny stage through Snakemake), and the
parts that decide pass or fail."""
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ugpnet.bench import _check_step, _Runner
from ugpnet.config import load_config
from ugpnet.methods import kind_of
from ugpnet.methods.ugpnet import frozen_direct
from ugpnet.plan import table1_methods

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _expected_stages(cfg):
    return {(m, t, st.name) for m, mc in cfg["methods"].items() for t in mc["tasks"]
            for st in kind_of(cfg, m).stages(mc, t)}


@pytest.mark.long
def test_cpu_mode_checks_every_stage_of_every_method(tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "UGPNET_PYTHON": sys.executable}
    t = time.monotonic()
    p = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu", "--out", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    wall = time.monotonic() - t
    assert p.returncode == 0, p.stderr[-6000:]
    res = json.loads(out.read_text())
    assert res["passed"] is True and res["failures"] == [], res["failures"]
    assert res["mode"] == "cpu" and res["profile"] == "tiny"
    assert res["device"]["torch"] == torch.__version__ and "random" in res["weights"]
    assert res["wall_s"]["total"] <= wall and res["wall_s"]["total"] <= res["wall_s"]["limit"]

    cfg = load_config(profile="tiny")
    rows = {(r["method"], r["task"], r["stage"]): r for r in res["train"]["rows"]}
    assert len(rows) == len(res["train"]["rows"])  # one row per stage
    assert set(rows) == _expected_stages(cfg)  # every method of the profile, every task, stage
    assert res["train"]["stages"] == len(rows) and "unexpected" not in res["train"]
    # the stages that train nothing: UGPNet's restoration over a frozen direct backbone
    not_trained = {k for k, r in rows.items() if r["status"] == "not trained"}
    assert not_trained == {(m, t, "restoration") for m, t, s in rows if s == "restoration"
                           and frozen_direct(cfg["methods"][m], t)}
    assert not_trained  # (the tiny profile has some: the check above is not vacuous)
    for key, r in rows.items():
        if key in not_trained:
            continue
        assert r["status"] == "ok" and r["ok"], (key, r)
        assert r["loss_finite"] and r["grads_nonzero"], (key, r)
        assert r["losses"] and all(isinstance(v, float) and math.isfinite(v)
                                   for v in r["losses"].values()), (key, r["losses"])
        assert r["optimizers"] and all(o["nonzero_grad"] > 0 and o["grads_finite"]
                                       and o["nonzero_grad"] <= o["with_grad"] <= o["params"]
                                       for o in r["optimizers"]), (key, r["optimizers"])
        assert r["params_nonzero_grad"] == sum(o["nonzero_grad"] for o in r["optimizers"])
        assert r["first_step_s"] > 0 and r["build_s"] >= 0 and r["process_peak_rss_mb"] > 0
    # adversarial stages step a generator and a discriminator: both got gradients
    assert len(rows[("ugpnet", "deblur", "synthesis")]["optimizers"]) == 2
    assert res["backends_in_effect"]["cudnn_benchmark"] in (True, False)

    # Table 2's networks, timed and their outputs finite
    t2 = cfg["table2"]
    inf = {r["method"]: r for r in res["inference"]["rows"]}
    assert list(inf) == list(t2["methods"])
    for m, r in inf.items():
        assert r["ok"] and r["status"] == "ok" and r["task"] == t2["task"], r
        assert r["median_s"] > 0 and r["params"] > 0 and r["outputs"]
    assert inf["nafnet"]["ratio_to_nafnet"] == 1.0

    # what the paper's tables and baselines/ ask for is covered
    cov = res["coverage"]
    assert set(cov["table1"]) == set(table1_methods(cfg)) and all(cov["table1"].values())
    assert set(cov["table3"]) == set(cfg["table3"]["rows"]) and all(cov["table3"].values())
    assert all(cov["figure4"].values()) and set(cov["table2"]) == set(t2["methods"])
    dirs = {d.name for d in (ROOT / "baselines").iterdir() if (d / "__init__.py").is_file()}
    assert set(cov["baselines"]) == dirs and all(cov["baselines"].values())
    trained = {m for m, _, _ in rows}
    assert all(set(ms) <= trained for ms in cov["baselines"].values())
    assert "[gpu_check" in p.stderr and "PASSED" in p.stderr

    # part 3: the training loop through the workflow (Snakemake, the tiny profile), one stage
    loop = res["loop"]
    assert loop["status"] == "ok" and loop["ok"] and loop["failures"] == [], loop
    assert (loop["method"], loop["task"], loop["stage"]) == ("nafnet", "denoise", "train")
    assert loop["device"] == "cpu" and loop["rc"] == 0 and loop["ran_on"] == "cpu"
    assert loop["target"].endswith("nafnet/denoise/train/model.pt")
    # only what that one model needs ran: the data it reads and the stage
    assert sorted(loop["jobs_finished"]) == ["degrade", "prepare", "train"]
    assert loop["operational"]["method.train.num_workers"] == 2  # the override reached the run
    assert loop["operational_cuda"] is None and not loop["pin_memory"]  # (a CPU run)
    assert {"model.pt", "best.pt", "last.pt"} <= set(loop["checkpoints"])
    assert loop["val"] and all(math.isfinite(r[k]) for r in loop["val"]
                               for k in ("psnr", "ssim", "lpips"))
    assert loop["total_iters"] == cfg["methods"]["nafnet"]["train"]["total_iters"]
    assert 0 < loop["wall_s"] == res["wall_s"]["loop"] and loop["train_job_s"] > 0
    assert loop["command"] == res["commands"]["loop"] and "snakemake" in loop["command"]
    assert not any("data loading" in n for n in res["not_covered"])
    assert any("training loop of the other methods" in n for n in res["not_covered"])


class _Stage:
    """A one-layer stage object as the check sees one: ``step`` returns its loss terms, the
    optimiser is an attribute (here inside a list, as a critic would hold it)."""

    def __init__(self, loss_scale: float, dead: bool = False):
        self.net = torch.nn.Linear(4, 2)
        self.other = torch.nn.Linear(4, 2)
        self.opts = [torch.optim.SGD(self.net.parameters(), lr=0.1),
                     torch.optim.SGD(self.other.parameters(), lr=0.1)]
        self.loss_scale, self.dead = loss_scale, dead

    def step(self, batch, it):
        for o in self.opts:
            o.zero_grad(set_to_none=True)
        loss = self.net(batch).sum() * self.loss_scale
        if not self.dead:
            loss = loss + self.other(batch).sum()
        loss.backward()
        return {"loss": float(loss.detach()), "lr": 0.1}


def test_the_step_check_passes_a_healthy_step_and_names_what_is_wrong():
    x = torch.ones(3, 4)
    good = _Stage(1.0)
    v = _check_step(good, good.step(x, 0))
    assert v["failures"] == [] and [o["nonzero_grad"] for o in v["optimizers"]] == [2, 2]
    assert v["params_with_grad"] == 4 and math.isfinite(v["loss"])

    nan = _Stage(float("nan"))
    v = _check_step(nan, nan.step(x, 0))
    assert "not finite: loss" in v["failures"] and v["losses"]["loss"] == "nan"
    assert any("gradient is not finite" in f for f in v["failures"])

    dead = _Stage(1.0, dead=True)  # the second optimiser's parameters get no gradient
    v = _check_step(dead, dead.step(x, 0))
    assert v["failures"] == ["optimiser 1 (SGD, 2 params): no non-zero gradient"]

    zero = _Stage(0.0, dead=True)  # gradients exist but are all zero
    v = _check_step(zero, zero.step(x, 0))
    assert v["optimizers"][0]["with_grad"] == 2 and v["optimizers"][0]["nonzero_grad"] == 0
    assert len(v["failures"]) == 2


# measurements for the worker tests (module level: the spawned worker imports them)
def _ok(x):
    return {"value": x, "pid": os.getpid()}


def _raises():
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def _hangs():
    time.sleep(60)


def _dies():
    os._exit(3)


def test_one_process_runner_survives_errors_hangs_and_crashes():
    runner = _Runner(one_process=True, budget_s=None, cell_timeout_s=4)
    try:
        a, b = runner(_ok, 1), runner(_ok, 2)
        assert a["value"] == 1 and b["value"] == 2 and a["pid"] == b["pid"] != os.getpid()
        err = runner(_raises)
        assert err["error"].startswith("RuntimeError: CUDA error")
        c = runner(_ok, 3)  # a fresh worker after an error (a CUDA context may be broken)
        assert c["value"] == 3 and c["pid"] != a["pid"]
        hang = runner(_hangs)
        assert hang.get("timeout") and "no result after 4 s" in hang["error"]
        assert hang["wall_s"] < 20
        died = runner(_dies)
        assert "died (exit code 3)" in died["error"]
        assert runner(_ok, 4)["value"] == 4
    finally:
        runner.close()
    late = _Runner(one_process=True, budget_s=0, cell_timeout_s=None)
    time.sleep(0.01)
    assert "time budget" in late(_ok, 5)["skipped"] and late.worker is None


def test_summary_fails_on_a_missing_or_failed_stage():
    gc = _gpu_check_module()
    cfg = load_config(profile="tiny")
    want = gc.plan(cfg)
    assert {(s["method"], s["task"], s["stage"]) for s in want["stages"]} == \
        _expected_stages(cfg)
    assert want["methods"][:len(table1_methods(cfg))] == table1_methods(cfg)  # tables first
    ok_row = {"ok": True, "trained": True, "losses": {"loss": 1.0},
              "optimizers": [{"nonzero_grad": 1}]}
    rows = [{"method": s["method"], "task": s["task"], "stage": s["stage"], **ok_row}
            for s in want["stages"]]
    inference = {"complete": True, "inference": [
        {"method": m, "task": want["table2"]["task"], "ok": True, "median_s": 0.1}
        for m in want["table2"]["methods"]]}
    device = {"name": "test"}
    loop = {"method": "nafnet", "task": "denoise", "status": "ok", "ok": True, "failures": []}
    full = gc.summarize("cpu", cfg, want, inference, {"complete": True, "train": rows}, device, {},
                        loop)
    assert full["passed"] and full["train"]["counts"]["ok"] == len(rows)
    assert full["loop"] == loop and gc.LOOP_UNCOVERED not in full["not_covered"]
    # the loop part failed, was skipped or did not run: the check fails, and says so
    for bad, said in [({**loop, "status": "failed", "ok": False,
                        "failures": ["val.jsonl: metrics not finite: iter 2 psnr=nan"]},
                       "loop nafnet/denoise: failed (val.jsonl: metrics not finite"),
                      ({**loop, "status": "skipped", "ok": False,
                        "skipped": "time budget: 3 s left"}, "loop nafnet/denoise: skipped"),
                      (None, "loop nafnet/denoise: missing (the loop part did not run)")]:
        res = gc.summarize("cpu", cfg, want, inference, {"complete": True, "train": rows},
                           device, {}, bad)
        assert not res["passed"] and len(res["failures"]) == 1, res["failures"]
        assert res["failures"][0].startswith(said), res["failures"]
        assert gc.LOOP_UNCOVERED in res["not_covered"]
    dropped, failed = rows[0], {**rows[1], "ok": False, "failures": ["not finite: loss"]}
    part = gc.summarize("cpu", cfg, want, inference,
                        {"complete": False, "train": [failed] + rows[2:]}, device, {}, loop)
    assert not part["passed"] and part["train"]["counts"]["missing"] == 1
    name = f"{dropped['method']}/{dropped['task']}/{dropped['stage']}"
    assert any(f.startswith(f"train {name}: missing") for f in part["failures"])
    assert any("not finite: loss" in f for f in part["failures"])
    assert any("did not complete" in f for f in part["failures"])
    crashed = gc.summarize("cpu", cfg, want, {**inference, "_rc": 1},  # (1: a check failed)
                           {"complete": True, "train": rows, "_rc": 2}, device, {}, loop)
    assert crashed["failures"] == ["the train bench exited with status 2"]


def test_the_loop_part_is_skipped_when_the_budget_is_spent():
    gc = _gpu_check_module()
    t = time.monotonic()
    row = gc.run_loop("cpu", gc.MODES["cpu"]["loop_min"] - 1)
    assert time.monotonic() - t < 5  # nothing was started
    assert row["status"] == "skipped" and not row["ok"] and "time budget" in row["skipped"]
    assert row["device"] == "cpu" and row["num_workers"] == 2
