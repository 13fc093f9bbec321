"""Benchmarks: parameters, inference time and peak memory of every method at paper scale, and
training iterations per second of every stage.

Each measurement runs in its own fresh process (``spawn``), so the peak memory is that of one
model alone (CPU: peak resident set size of the process; CUDA: peak allocated memory) and one
measurement does not warm up the next. Weights are random (timing does not depend on their
values). Inference: batch 1, eval mode, ``torch.inference_mode``, one warm-up then the median of
``runs``. Training: the kind's stage object on random batches of the paper's size, one warm-up
step then the median step time.
"""
from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import statistics
import time
from typing import Mapping, Sequence

import torch

from .errors import ConfigError


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _peak_mb(device) -> float:
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _input(cfg, kind, mcfg, task, size, device) -> torch.Tensor:
    mode = kind.input_mode(mcfg, task)
    side = size // cfg["degradations"]["sr"]["scale"] if mode == "lr" else size
    return torch.rand(1, 3, side, side, device=device)


def _setup(cfg, threads) -> None:
    from .config import import_plugins

    import_plugins(cfg.get("plugins", []))
    torch.set_num_threads(threads)


def _infer(cfg, method, task, size, device, runs, threads) -> dict:
    from .methods import kind_of

    _setup(cfg, threads)
    kind = kind_of(cfg, method)
    mcfg = cfg["methods"][method]
    model = kind.build(cfg, method, task).to(device).eval()
    x = _input(cfg, kind, mcfg, task, size, device)
    times = []
    with torch.inference_mode():
        kind.predict(model, x)  # warm-up
        for _ in range(runs):
            _sync(device)
            t = time.perf_counter()
            kind.predict(model, x)
            _sync(device)
            times.append(time.perf_counter() - t)
    return {"method": method, "task": task, "family": kind.family,
            "params": sum(p.numel() for p in model.parameters()),
            "input": list(x.shape), "median_s": statistics.median(times), "min_s": min(times),
            "runs": runs, "peak_mem_mb": round(_peak_mb(device), 1)}


def _train(cfg, method, task, stage, size, device, runs, threads) -> dict:
    from .methods import kind_of

    _setup(cfg, threads)
    kind = kind_of(cfg, method)
    out = {"method": method, "task": task, "stage": stage}
    try:
        built = kind.benchmark_stage(cfg, method, task, stage, device)
    except NotImplementedError:
        return {**out, "note": "this kind has no training benchmark"}
    if built is None:
        return {**out, "note": "nothing is trained in this stage"}
    stage_obj, batch, note = built
    out["precision"] = getattr(stage_obj, "precision", "fp32")
    times = []
    for it in range(runs + 1):
        _sync(device)
        t = time.perf_counter()
        stage_obj.step(batch, it)
        _sync(device)
        times.append(time.perf_counter() - t)
    sec = statistics.median(times[1:])
    return {**out, "batch": int(batch["lq"].shape[0]), "input": list(batch["lq"].shape),
            "sec_per_iter": sec, "it_per_s": 1.0 / sec, "runs": runs,
            "peak_mem_mb": round(_peak_mb(device), 1), **({"note": note} if note else {})}


def _worker(fn, args, queue) -> None:
    try:
        queue.put(("ok", fn(*args)))
    except Exception as e:  # noqa: BLE001 - reported in the result, the others go on
        queue.put(("error", f"{type(e).__name__}: {e}"))


def _isolated(fn, *args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_worker, args=(fn, args, queue))
    p.start()
    status, value = queue.get()
    p.join()
    if status == "error":
        return {"error": value}
    return value


def run_bench(cfg: Mapping, methods: Sequence[str] | None = None,
              tasks: Sequence[str] | None = None, size: int = 512, device: str = "cpu",
              runs: int = 3, threads: int | None = None, train: bool = False,
              progress=print) -> dict:
    threads = threads or torch.get_num_threads()
    names = list(methods or [m for m in cfg["methods"]])
    for m in names:
        if m not in cfg["methods"]:
            raise ConfigError(f"--methods: unknown method '{m}'; defined: {sorted(cfg['methods'])}")
    cells = [(m, t) for m in names for t in cfg["methods"][m]["tasks"] if not tasks or t in tasks]
    out: dict = {"device": device, "threads": threads, "size": size, "runs": runs,
                 "torch": torch.__version__, "machine": {
                     "platform": platform.platform(), "processor": platform.processor(),
                     "cpus": os.cpu_count()},
                 "inference": [], "train": []}
    if str(device).startswith("cuda"):
        out["machine"]["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    from .provenance import code_version

    out["code"] = code_version()
    for m, t in cells:
        progress(f"inference {m}/{t} at {size} px ...")
        out["inference"].append({"method": m, "task": t,
                                 **_isolated(_infer, dict(cfg), m, t, size, device, runs, threads)})
    ref = {r["task"]: r["median_s"] for r in out["inference"]
           if r["method"] == "nafnet" and "median_s" in r}
    fallback = ref.get("deblur") or next(iter(ref.values()), None)
    for r in out["inference"]:
        base = ref.get(r["task"], fallback)
        if "median_s" in r and base:
            r["ratio_to_nafnet"] = r["median_s"] / base
    if train:
        from .methods import kind_of

        for m, t in cells:
            for st in kind_of(cfg, m).stages(cfg["methods"][m], t):
                progress(f"training {m}/{t}/{st.name} at {size} px ...")
                out["train"].append({"method": m, "task": t, "stage": st.name, **_isolated(
                    _train, dict(cfg), m, t, st.name, size, device, runs, threads)})
    return out
