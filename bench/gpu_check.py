"""The GPU check (issue 23): every paper-scale method built, one training step of every stage of
every method run and checked on the GPU, Table 2's inference timed, one JSON summary.

Run it through ``bench/gpu_check.sh`` (which picks the Python of ``make setup``); this file does
the work:

1. ``ugpnet bench --check`` of Table 2's networks (``table2:`` of params.yaml: methods, task,
   size, runs): inference time, peak memory, outputs finite.
2. ``ugpnet bench --train --check --no-inference`` of every method of the profile, every task it
   has, every stage (``MethodKind.benchmark_stage``: the stage object ``ugpnet train`` drives,
   random weights, a random batch of the profile's size, batch 1 unless the kind's benchmark
   takes its authors' batch): per stage the loss terms of the first step are finite, every
   optimiser of the stage has parameters with non-zero finite gradients (counts recorded), the
   peak GPU memory (reset per stage), the build time, the first step's time and the time of
   the next step(s).
3. One JSON summary: device, torch / CUDA / cuDNN versions, the GPU policy the training path
   applied (``configure_backends`` of ``cuda:`` in params.yaml) and the flags read back, per stage and per network results, what the paper's tables and the
   baselines under ``baselines/`` asked for and whether it was covered, wall times, pass/fail.

Both bench runs use ``--one-process`` (one worker, replaced after an error: a fresh process per
stage would cost seconds of start-up each, 80 times) and a time budget, so the whole check ends
within ``--time-limit`` seconds; stages that did not start in time are recorded as skipped and
fail the check. Weights are random (no pretrained file is read: StyleGAN2, ArcFace, VGG...
are the user's; kinds that need one leave the term out or use random weights, as their
``benchmark_stage`` notes say), so the losses' values mean nothing; only that they are finite
and that gradients flow.

Modes: ``gpu`` (the paper profile at 512 px on ``cuda``) and ``cpu`` (the same code path with
the tiny profile's networks and size on the CPU, for CI: tests/test_gpu_check.py).

    .venv/bin/python bench/gpu_check.py [--mode gpu|cpu] [--out FILE.json]

Exit status: 0 when every check passed, 1 when one failed or was skipped, 2 when it could not
run (no CUDA in gpu mode).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository's ugpnet and baselines
    sys.path.insert(0, str(ROOT))

MODES = {
    # profile, device, train timed steps after the checked one, total limit (s), per-stage limit
    "gpu": {"profile": "paper", "device": "cuda", "runs": 1, "time_limit": 450,
            "cell_timeout": 60, "inference_limit": 120},
    "cpu": {"profile": "tiny", "device": "cpu", "runs": 0, "time_limit": 900,
            "cell_timeout": 120, "inference_limit": 300},
}
WEIGHTS = ("random: no pretrained file is read (StyleGAN2 prior, ArcFace, VGG19, official "
           "releases are the user's); where a kind's loss needs such a network its training "
           "benchmark leaves the term out or uses random weights (each stage's note says which)")
BATCH = ("each stage's training benchmark batch (its row's batch and input): one image, except "
         "where a kind's benchmark_stage takes its authors' batch (Uformer: 8 crops of 256 px for "
         "deblurring, 32 of 128 px for denoising)")
NOT_COVERED = [
    "prior pretraining (pretrain-prior): the paper profile uses the user's FFHQ StyleGAN2 "
    "(priors.*.pretrain.total_iters 0), so no stage of it runs at paper scale",
    "data loading, validation and checkpointing of the training loop (random batches on the "
    "device; the DAG's tests cover those on CPU)",
    "the recipes' batch sizes: one image per step for most stages (see batch)",
]


def _say(line: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def _device_info(mode: str) -> dict:
    import torch

    info = {"type": MODES[mode]["device"], "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": None, "cuda_available": torch.cuda.is_available(),
            "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count()}
    if torch.backends.cudnn.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
    if mode == "gpu" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update({"name": p.name, "count": torch.cuda.device_count(),
                     "capability": f"{p.major}.{p.minor}",
                     "total_memory_gib": round(p.total_memory / 2**30, 1),
                     "driver_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")})
    else:
        info["name"] = platform.processor() or platform.machine() or "cpu"
    return info


def plan(cfg) -> dict:
    """What the check must cover: every method of the profile (in the order the paper's tables
    name them, so the tables' rows come first should time run out), every (task, stage) of each,
    Table 2's networks, and what each table and baseline asks for."""
    from ugpnet.methods import kind_of
    from ugpnet.plan import table1_methods

    table3 = list(cfg.get("table3", {}).get("rows", {}))
    figure4 = [m for pair in cfg.get("figure4", {}).get("pairs", {}).items() for m in pair]
    t2 = cfg["table2"]
    order = list(dict.fromkeys(table1_methods(cfg) + table3 + figure4 + list(t2["methods"])
                               + list(cfg["methods"])))
    stages = [{"method": m, "task": t, "stage": st.name, "kind": cfg["methods"][m]["kind"]}
              for m in order for t in cfg["methods"][m]["tasks"]
              for st in kind_of(cfg, m).stages(cfg["methods"][m], t)]
    kinds = {m: type(kind_of(cfg, m)).__module__ for m in order}
    baselines = sorted(p.name for p in (ROOT / "baselines").iterdir()
                       if (p / "__init__.py").is_file())
    asked = {"table1": table1_methods(cfg), "table2": list(t2["methods"]), "table3": table3,
             "figure4": figure4,
             "baselines": {b: [m for m, mod in kinds.items()
                               if mod == f"baselines.{b}" or mod.startswith(f"baselines.{b}.")]
                           for b in baselines}}
    return {"methods": order, "stages": stages, "asked": asked,
            "table2": {k: t2[k] for k in ("methods", "task", "size", "runs")}}


def _stop(proc) -> int:
    """TERM to the bench's process group (it stops its worker), KILL after 15 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()
    except ProcessLookupError:
        return proc.wait()


def _run_bench(python: str, argv: list[str], out: Path, limit: float) -> dict:
    """``ugpnet bench ... --out out`` in its own process group, killed (TERM, then KILL) after
    ``limit`` seconds; its JSON (possibly partial: ``complete`` false) or ``{}``."""
    cmd = [python, "-m", "ugpnet", *argv, "--out", str(out)]
    _say(" ".join(cmd))
    t = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    try:
        rc = proc.wait(timeout=max(limit, 1))
    except subprocess.TimeoutExpired:
        _say(f"time limit of {limit:.0f} s reached: stopping it")
        rc = _stop(proc)
    finally:  # (also when this process is terminated: no worker keeps the GPU)
        if proc.poll() is None:
            _stop(proc)
    result = json.loads(out.read_text()) if out.exists() else {}
    result["_rc"], result["_wall_s"] = rc, round(time.monotonic() - t, 1)
    return result


def _stage_row(r: dict | None) -> dict:
    if r is None:
        return {"status": "missing", "ok": False,
                "failures": ["no result (the bench run was stopped before it)"]}
    keep = ("precision", "batch", "input", "build_s", "first_step_s", "sec_per_iter",
            "peak_mem_mb", "process_peak_rss_mb", "mem_start_mb", "loss", "losses", "optimizers",
            "params_with_grad", "params_nonzero_grad", "note", "failures", "error", "skipped",
            "wall_s")
    row = {k: r[k] for k in keep if k in r}
    row["status"] = ("skipped" if "skipped" in r else "error" if "error" in r
                     else "not trained" if r.get("trained") is False
                     else "ok" if r.get("ok") else "failed")
    row["ok"] = bool(r.get("ok"))
    row["loss_finite"] = "losses" in r and not any(isinstance(v, str)
                                                   for v in r["losses"].values())
    row["grads_nonzero"] = bool(r.get("optimizers")) and all(o["nonzero_grad"] > 0
                                                            for o in r["optimizers"])
    return row


def summarize(mode: str, cfg, want: dict, inference: dict, train: dict, device: dict,
              wall: dict) -> dict:
    got = {(r["method"], r["task"], r["stage"]): r for r in train.get("train", [])}
    stages = [{**s, **_stage_row(got.get((s["method"], s["task"], s["stage"])))}
              for s in want["stages"]]
    extra = sorted(set(got) - {(s["method"], s["task"], s["stage"]) for s in want["stages"]})
    inf_rows = inference.get("inference", [])
    t2 = want["table2"]
    infer = []
    for m in t2["methods"]:
        r = next((x for x in inf_rows if x["method"] == m), None)
        row = {"method": m, "task": t2["task"]}
        if r is None:
            row.update({"status": "missing", "ok": False})
        else:
            row.update({k: r[k] for k in ("params", "input", "median_s", "min_s", "runs",
                                          "peak_mem_mb", "process_peak_rss_mb", "mem_start_mb",
                                          "ratio_to_nafnet", "outputs", "failures", "error",
                                          "skipped", "wall_s") if k in r})
            row["ok"] = bool(r.get("ok"))
            row["status"] = ("skipped" if "skipped" in r else "error" if "error" in r
                             else "ok" if row["ok"] else "failed")
        infer.append(row)
    covered = {m for (m, _, _) in got} | {r["method"] for r in inf_rows}
    trained_methods = {s["method"] for s in want["stages"]}
    no_stage = [m for m in want["methods"] if m not in trained_methods]
    asked = want["asked"]
    coverage = {k: {m: (m in covered or m in no_stage) for m in v}
                for k, v in asked.items() if k != "baselines"}
    coverage["baselines"] = {b: ms for b, ms in asked["baselines"].items()}
    failures = [f"train {s['method']}/{s['task']}/{s['stage']}: {s['status']}"
                + (f" ({'; '.join(s.get('failures', []))})" if s.get("failures") else "")
                + (f" ({s['error'][:300]})" if s.get("error") else "")
                for s in stages if not s["ok"]]
    failures += [f"inference {r['method']}/{r['task']}: {r['status']}"
                 + (f" ({r['error'][:300]})" if r.get("error") else "") for r in infer
                 if not r["ok"]]
    failures += [f"{what}: '{m}' not covered" for what, v in coverage.items()
                 if what != "baselines" for m, ok in v.items() if not ok]
    failures += [f"baselines/{b}: no method of the profile uses it" for b, ms in
                 coverage["baselines"].items() if not ms]
    for name, res in (("inference", inference), ("train", train)):
        if not res.get("complete"):
            failures.append(f"the {name} bench did not complete (exit {res.get('_rc')})")
        elif res.get("_rc", 0) not in (0, 1):  # 1: a check failed (named above); else a crash
            failures.append(f"the {name} bench exited with status {res['_rc']}")
    backends = next((s["backends"] for s in got.values() if "backends" in s), None)
    policy = next((s["cuda_policy"] for s in got.values() if "cuda_policy" in s), None)
    counts = {k: sum(s["status"] == k for s in stages)
              for k in ("ok", "not trained", "failed", "error", "skipped", "missing")}
    peak = max((s.get("peak_mem_mb") or 0 for s in stages), default=0)
    return {
        "check": "bench/gpu_check.sh (issue 23)", "mode": mode, "passed": not failures,
        "failures": failures, "profile": cfg["profile"], "size": cfg["data"]["resolution"],
        "device": device, "weights": WEIGHTS, "batch": BATCH,
        "backends_in_effect": backends, "cuda_policy": policy,
        "code": train.get("code") or inference.get("code"),
        "wall_s": wall,
        "train": {"methods": len(trained_methods), "stages": len(stages), "counts": counts,
                  "max_peak_mem_mb": peak or None, "timed_steps_after_check": MODES[mode]["runs"],
                  "rows": stages, **({"unexpected": [list(k) for k in extra]} if extra else {})},
        "inference": {"table": "Table 2", "task": t2["task"], "size": inference.get("size"),
                      "runs": inference.get("runs"), "rows": infer},
        "methods_without_stages": no_stage,
        "coverage": coverage,
        "not_covered": NOT_COVERED,
        "commands": {"inference": inference.get("_cmd"), "train": train.get("_cmd")},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=sorted(MODES),
                    default=os.environ.get("UGPNET_GPU_CHECK_MODE", "gpu"))
    ap.add_argument("--out", default=None,
                    help="summary JSON (default: bench/gpu-check-<device>.json)")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds for the whole check (default: gpu 450, cpu 900)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()

    def terminated(signum, frame):  # the shell's `timeout`: stop the bench runs on the way out
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    mode = MODES[args.mode]
    limit = args.time_limit or mode["time_limit"]
    from ugpnet.config import load_config

    cfg = load_config(profile=mode["profile"])
    want = plan(cfg)
    device = _device_info(args.mode)
    out = Path(args.out or ROOT / "bench" / f"gpu-check-{_slug(device['name'])}.json")
    _say(f"mode {args.mode}: profile {cfg['profile']}, {len(want['methods'])} methods, "
         f"{len(want['stages'])} stages, Table 2: {', '.join(want['table2']['methods'])}; "
         f"device {device['name']}; limit {limit:.0f} s; summary -> {out}")
    if args.mode == "gpu" and not device["cuda_available"]:
        _say("CUDA is not available: nothing run (use --mode cpu for the reduced check)")
        from ugpnet.io import atomic_write_json

        if args.out:  # (no default file for a check that did not run)
            atomic_write_json(out, {"check": "bench/gpu_check.sh (issue 23)", "mode": "gpu",
                                    "passed": False, "device": device,
                                    "failures": ["CUDA is not available"]})
        return 2
    common = ["--device", mode["device"], "--check", "--one-process",
              "--cell-timeout", str(mode["cell_timeout"])]
    if args.threads:
        common += ["--threads", str(args.threads)]
    t2 = want["table2"]
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        # Table 2's networks first (minutes of training stages must not crowd them out)
        inf_limit = min(mode["inference_limit"], limit - (time.monotonic() - t0))
        size = t2["size"] if args.mode == "gpu" else cfg["data"]["resolution"]
        inf_argv = (["--profile", mode["profile"], "bench", "--methods", ",".join(t2["methods"]),
                     "--tasks", t2["task"], "--size", str(size),
                     "--runs", str(t2["runs"] if args.mode == "gpu" else 1), *common,
                     "--budget", str(round(max(inf_limit - mode["cell_timeout"] - 10,
                                               inf_limit / 2)))])
        inference = _run_bench(sys.executable, inf_argv, Path(tmp) / "inference.json",
                               inf_limit)
        inference["_cmd"] = "ugpnet " + " ".join(inf_argv)
        left = limit - (time.monotonic() - t0)
        train_argv = ["--profile", mode["profile"], "bench", "--train", "--no-inference",
                      "--methods", ",".join(want["methods"]), "--runs", str(mode["runs"]),
                      *common, "--budget", str(round(max(left - mode["cell_timeout"] - 20,
                                                        left / 2)))]
        train = _run_bench(sys.executable, train_argv, Path(tmp) / "train.json", left - 5)
        train["_cmd"] = "ugpnet " + " ".join(train_argv)
    wall = {"total": round(time.monotonic() - t0, 1), "inference": inference["_wall_s"],
            "train": train["_wall_s"], "limit": limit}
    summary = summarize(args.mode, cfg, want, inference, train, device, wall)
    from ugpnet.io import atomic_write_json

    atomic_write_json(out, summary)
    c = summary["train"]["counts"]
    _say(f"train: {summary['train']['stages']} stages of {summary['train']['methods']} methods: "
         + ", ".join(f"{v} {k}" for k, v in c.items() if v))
    for r in summary["inference"]["rows"]:
        _say(f"inference {r['method']}/{r['task']}: {r['status']}"
             + (f" {r['median_s'] * 1000:.1f} ms, peak "
                + (f"{r['peak_mem_mb']:.0f} MB" if "peak_mem_mb" in r else
                   f"RSS of the process so far {r.get('process_peak_rss_mb', 0):.0f} MB")
                if "median_s" in r else ""))
    for f in summary["failures"]:
        _say(f"FAILED {f}")
    _say(f"{'PASSED' if summary['passed'] else 'FAILED'} in {wall['total']:.0f} s; wrote {out}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
