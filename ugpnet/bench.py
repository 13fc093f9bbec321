"""Benchmarks: parameters, inference time and peak memory of every method at paper scale, and
training iterations per second of every stage.

Each measurement runs in its own fresh process (``spawn``), so the peak memory is that of one
model alone (CPU: peak resident set size of the process; CUDA: peak allocated memory) and one
measurement does not warm up the next. Weights are random (timing does not depend on their
values). Inference: batch 1, eval mode, ``torch.inference_mode``, one warm-up then the median of
``runs``. Training: the kind's stage object on random batches of the paper's size, one warm-up
step then the median step time.

Options for the GPU check (``bench/gpu_check.sh``):

- ``check``: the first training step of each stage is also checked: every loss term it returns
  is finite, and every optimiser of the stage object holds at least one parameter with a
  non-zero, finite gradient after it (counts per optimiser); inference checks its outputs are
  finite. A row then carries ``ok`` and, when not ok, ``failures``.
- ``one_process``: every measurement in one worker process, one after the other (a fresh
  process costs seconds of imports and CUDA start-up each). On CUDA the peak memory is still per
  measurement (``torch.cuda.reset_peak_memory_stats`` before each, ``mem_start_mb`` says what
  was left allocated); on CPU only the process's peak RSS so far exists
  (``process_peak_rss_mb``). After an error, a timeout or a crash the worker is replaced, so a
  broken CUDA context cannot spoil the next measurement.
- ``budget_s`` / ``cell_timeout_s``: no measurement starts after ``budget_s`` (the rest are
  recorded ``skipped``), and one that gives no result within ``cell_timeout_s`` is killed and
  recorded as an error, so a run takes at most about ``budget_s + cell_timeout_s``.
"""
from __future__ import annotations

import gc
import math
import multiprocessing
import os
import platform
import queue
import resource
import statistics
import time
from typing import Callable, Mapping, Sequence

import torch

from .errors import ConfigError

_ERROR_CHARS = 2000  # an error's message as recorded (CUDA's out-of-memory text is long)


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _is_cuda(device) -> bool:
    return str(device).startswith("cuda")


def _peak_mb(device) -> float:
    if _is_cuda(device):
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _memory(device, shared: bool) -> dict:
    """The peak memory of the measurement just made: CUDA's peak allocated memory (reset before
    each measurement), or on CPU the peak RSS of the process (per measurement only when the
    process made no other: ``shared`` says it did)."""
    if shared and not _is_cuda(device):
        return {"process_peak_rss_mb": round(_peak_mb(device), 1)}
    return {"peak_mem_mb": round(_peak_mb(device), 1)}


def _reset_memory(device) -> dict:
    """Free what the previous measurement left and restart CUDA's peak counter."""
    gc.collect()
    if not _is_cuda(device):
        return {}
    dev = torch.device(device)
    if dev.index is not None:
        torch.cuda.set_device(dev)
    torch.cuda.init()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)
    return {"mem_start_mb": round(torch.cuda.memory_allocated(dev) / 2**20, 1)}


def backend_flags() -> dict:
    """The numerics settings in effect (cuDNN autotuning and determinism, TF32), as read."""
    import warnings

    b = torch.backends
    out = {"cudnn_benchmark": b.cudnn.benchmark, "cudnn_deterministic": b.cudnn.deterministic,
           "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
           "float32_matmul_precision": torch.get_float32_matmul_precision()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, path in (("cuda_matmul_allow_tf32", "cuda.matmul.allow_tf32"),
                          ("cudnn_allow_tf32", "cudnn.allow_tf32"),
                          ("cuda_matmul_fp32_precision", "cuda.matmul.fp32_precision"),
                          ("cudnn_conv_fp32_precision", "cudnn.conv.fp32_precision")):
            obj = b
            try:
                for name in path.split("."):
                    obj = getattr(obj, name)
            except AttributeError:
                continue
            out[key] = obj if isinstance(obj, (bool, str)) else str(obj)
    return out


def _input(cfg, kind, mcfg, task, size, device) -> torch.Tensor:
    mode = kind.input_mode(mcfg, task)
    side = size // cfg["degradations"]["sr"]["scale"] if mode == "lr" else size
    return torch.rand(1, 3, side, side, device=device)


def _setup(cfg, threads, device) -> dict:
    """What ``ugpnet train`` does before a stage (plugins, threads, the device as the training
    code resolves it, the GPU policy of ``cuda:`` in params.yaml, the seed), so the measured step
    runs under the training path's settings; returns the GPU policy in force ({} on the CPU)."""
    from .config import import_plugins
    from .training.common import configure_backends, resolve_device, seed_everything

    import_plugins(cfg.get("plugins", []))
    torch.set_num_threads(threads)
    policy = configure_backends(cfg.get("cuda"), resolve_device(str(device)))
    seed_everything(cfg["data"]["seed"])
    return policy


def _number(v):
    """A JSON-safe float: non-finite values as their name (strict JSON has no NaN)."""
    v = float(v)
    return v if math.isfinite(v) else str(v)


def _losses(parts: Mapping) -> tuple[dict, list[str]]:
    """(the step's loss terms, the names of those that are not finite); ``lr`` is no loss."""
    values, bad = {}, []
    for k, v in parts.items():
        if k == "lr":
            continue
        try:
            f = float(v)
        except (TypeError, ValueError, RuntimeError):
            continue
        values[k] = _number(f)
        if not math.isfinite(f):
            bad.append(k)
    return values, bad


def stage_optimizers(obj, depth: int = 0, seen: set | None = None) -> list:
    """The optimisers a stage object steps: found among its attributes (and their attributes,
    lists and dicts, three levels deep, e.g. a critic's), not inside modules."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 3:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.optim.Optimizer):
        return [obj]
    if isinstance(obj, (torch.nn.Module, torch.Tensor, type, str, bytes)):
        return []
    if isinstance(obj, (list, tuple, set)):
        items = list(obj)
    elif isinstance(obj, dict):
        items = list(obj.values())
    elif hasattr(obj, "__dict__"):
        items = list(vars(obj).values())
    else:
        return []
    return [o for item in items for o in stage_optimizers(item, depth + 1, seen)]


def grad_report(optimizers: Sequence) -> list[dict]:
    """Per optimiser: its parameters, those holding a gradient, those whose gradient has a
    non-zero entry, and whether every gradient is finite (after a step, the gradients of the
    last backward pass that reached each parameter)."""
    rows = []
    for opt in optimizers:
        params = list({id(p): p for g in opt.param_groups for p in g["params"]}.values())
        grads = [p.grad for p in params if p.grad is not None]
        nonzero, finite = 0, True
        if grads:
            nonzero = int(torch.stack([g.ne(0).any() for g in grads]).sum())
            finite = bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
        rows.append({"optimizer": type(opt).__name__, "params": len(params),
                     "with_grad": len(grads), "nonzero_grad": nonzero, "grads_finite": finite})
    return rows


def _check_step(stage_obj, parts: Mapping) -> dict:
    """The first step's verdict: loss terms finite, every optimiser reached by a non-zero,
    finite gradient."""
    losses, bad = _losses(parts)
    opts = grad_report(stage_optimizers(stage_obj))
    failures = []
    if not losses:
        failures.append("the step returned no loss value")
    if bad:
        failures.append(f"not finite: {', '.join(bad)}")
    if not opts:
        failures.append("no optimiser found on the stage object")
    for i, o in enumerate(opts):
        if o["nonzero_grad"] == 0:
            failures.append(f"optimiser {i} ({o['optimizer']}, {o['params']} params): "
                            f"no non-zero gradient")
        if not o["grads_finite"]:
            failures.append(f"optimiser {i} ({o['optimizer']}): a gradient is not finite")
    return {"loss": losses.get("loss", next(iter(losses.values()), None)), "losses": losses,
            "optimizers": opts, "params_with_grad": sum(o["with_grad"] for o in opts),
            "params_nonzero_grad": sum(o["nonzero_grad"] for o in opts), "failures": failures}


def _infer(cfg, method, task, size, device, runs, threads, check=False, shared=False) -> dict:
    from .methods import kind_of

    _setup(cfg, threads, device)
    mem = _reset_memory(device)
    kind = kind_of(cfg, method)
    mcfg = cfg["methods"][method]
    model = kind.build(cfg, method, task).to(device).eval()
    x = _input(cfg, kind, mcfg, task, size, device)
    times = []
    with torch.inference_mode():
        first = kind.predict(model, x)  # warm-up
        for _ in range(runs):
            _sync(device)
            t = time.perf_counter()
            kind.predict(model, x)
            _sync(device)
            times.append(time.perf_counter() - t)
    out = {"method": method, "task": task, "family": kind.family,
           "params": sum(p.numel() for p in model.parameters()),
           "input": list(x.shape), "median_s": statistics.median(times), "min_s": min(times),
           "runs": runs, **_memory(device, shared), **mem}
    if check:
        bad = [k for k, v in first.items() if not bool(torch.isfinite(v).all())]
        out["outputs"] = {k: list(v.shape) for k, v in first.items()}
        out["ok"] = not bad
        if bad:
            out["failures"] = [f"output not finite: {', '.join(bad)}"]
    return out


def _train(cfg, method, task, stage, size, device, runs, threads, check=False,
           shared=False) -> dict:
    from .methods import kind_of

    policy = _setup(cfg, threads, device)
    mem = _reset_memory(device)
    kind = kind_of(cfg, method)
    out = {"method": method, "task": task, "stage": stage}
    t = time.perf_counter()
    try:
        built = kind.benchmark_stage(cfg, method, task, stage, device)
    except NotImplementedError:
        return {**out, "note": "this kind has no training benchmark",
                **({"ok": False, "failures": ["no training benchmark: not checked"]}
                   if check else {})}
    if built is None:
        return {**out, "note": "nothing is trained in this stage",
                **({"ok": True, "trained": False} if check else {})}
    build_s = time.perf_counter() - t
    stage_obj, batch, note = built
    out["precision"] = getattr(stage_obj, "precision", "fp32")
    times, verdict, later_bad = [], None, []
    for it in range(runs + 1):
        _sync(device)
        t = time.perf_counter()
        parts = stage_obj.step(batch, it)
        _sync(device)
        times.append(time.perf_counter() - t)
        if check and it == 0:
            verdict = _check_step(stage_obj, parts)
        elif check:
            later_bad += [f"step {it + 1}: {k}" for k in _losses(parts)[1]]
    sec = statistics.median(times[1:]) if runs else None  # runs 0: the first step only
    out = {**out, "batch": int(batch["lq"].shape[0]), "input": list(batch["lq"].shape),
           **({"sec_per_iter": sec, "it_per_s": 1.0 / sec} if sec else {}), "runs": runs,
           "first_step_s": times[0], **_memory(device, shared), **mem,
           **({"note": note} if note else {})}
    if check:
        failures = verdict.pop("failures") + [f"not finite at {b}" for b in later_bad]
        out.update({"trained": True, "build_s": round(build_s, 3), **verdict,
                    "backends": backend_flags(), "cuda_policy": policy,
                    "ok": not failures, **({"failures": failures} if failures else {})})
    return out


def _serve(tasks, results, parent: int) -> None:
    """A worker process: run ``(fn, args)`` items until ``None`` (or its parent is gone)."""
    while True:
        try:
            item = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if item is None:
            return
        fn, args = item
        try:
            results.put(("ok", fn(*args)))
        except Exception as e:  # noqa: BLE001 - reported in the result, the others go on
            results.put(("error", f"{type(e).__name__}: {e}"[:_ERROR_CHARS]))
        finally:
            gc.collect()
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.empty_cache()


class _Worker:
    """A spawned process that runs measurements one after the other; :meth:`call` returns a
    result dict, or ``{"error": ...}`` when the function raised, the process died, or no result
    came within ``timeout`` seconds (the process is then killed)."""

    def __init__(self):
        ctx = multiprocessing.get_context("spawn")
        self.tasks, self.results = ctx.Queue(), ctx.Queue()
        self.proc = ctx.Process(target=_serve, args=(self.tasks, self.results, os.getpid()))
        self.proc.start()

    def call(self, fn, args, timeout: float | None = None) -> dict:
        self.tasks.put((fn, args))
        start = time.monotonic()
        while True:
            try:
                status, value = self.results.get(timeout=0.5)
                break
            except queue.Empty:
                pass
            if not self.proc.is_alive():
                try:  # a result sent just before the process ended
                    status, value = self.results.get(timeout=1.0)
                    break
                except queue.Empty:
                    return {"error": f"the worker process died (exit code {self.proc.exitcode})"}
            if timeout is not None and time.monotonic() - start > timeout:
                self.kill()
                return {"error": f"timeout: no result after {timeout:.0f} s (process killed)",
                        "timeout": True}
        return {"error": value} if status == "error" else value

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()

    def close(self) -> None:
        if self.proc.is_alive():
            self.tasks.put(None)
            self.proc.join(30)
        self.kill()


def _isolated(fn, *args, timeout: float | None = None) -> dict:
    worker = _Worker()
    try:
        return worker.call(fn, args, timeout)
    finally:
        worker.close()


class _Runner:
    """Runs measurements in a fresh process each, or (``one_process``) in one reused worker
    replaced after any error; enforces the budget and the per-measurement timeout."""

    def __init__(self, one_process: bool, budget_s: float | None, cell_timeout_s: float | None):
        self.one_process, self.cell_timeout_s = one_process, cell_timeout_s
        self.deadline = None if budget_s is None else time.monotonic() + budget_s
        self.budget_s = budget_s
        self.worker: _Worker | None = None

    def __call__(self, fn, *args) -> dict:
        if self.deadline is not None and time.monotonic() > self.deadline:
            return {"skipped": f"time budget of {self.budget_s:.0f} s spent before it started"}
        t = time.monotonic()
        if not self.one_process:
            res = _isolated(fn, *args, timeout=self.cell_timeout_s)
        else:
            if self.worker is None or not self.worker.alive:
                self.worker = _Worker()
            res = self.worker.call(fn, args, self.cell_timeout_s)
            if "error" in res:  # a fresh process (and CUDA context) for the next one
                self.worker.close()
                self.worker = None
        return {**res, "wall_s": round(time.monotonic() - t, 3)}

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None


def _verdict(row: dict, check: bool) -> dict:
    if check and ("error" in row or "skipped" in row):
        row["ok"] = False
    return row


def _say_result(row: dict) -> str:
    if "skipped" in row:
        return "skipped"
    if "error" in row:
        return f"ERROR {row['error'][:300]}"
    state = "" if "ok" not in row else ("ok " if row["ok"] else
                                        f"FAILED ({'; '.join(row.get('failures', []))}) ")
    if "first_step_s" not in row and "median_s" not in row:  # e.g. nothing trained
        return f"{state}{row.get('note', 'nothing measured')}"
    return f"{state}{row.get('wall_s', 0):.1f} s"


def run_bench(cfg: Mapping, methods: Sequence[str] | None = None,
              tasks: Sequence[str] | None = None, size: int = 512, device: str = "cpu",
              runs: int = 3, threads: int | None = None, train: bool = False,
              progress=print, inference: bool = True, check: bool = False,
              one_process: bool = False, budget_s: float | None = None,
              cell_timeout_s: float | None = None,
              on_result: Callable[[dict], None] | None = None) -> dict:
    """Time (and with ``check`` verify) every method's inference and, with ``train``, one step
    of every training stage. ``on_result(partial result)`` is called after each measurement
    (e.g. to save what is done so far)."""
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
    if _is_cuda(device):
        out["machine"]["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if check or one_process or budget_s is not None:
        out["options"] = {"check": check, "one_process": one_process, "budget_s": budget_s,
                          "cell_timeout_s": cell_timeout_s}
    from .provenance import code_version

    out["code"] = code_version()
    t0 = time.monotonic()
    shared = one_process
    runner = _Runner(one_process, budget_s, cell_timeout_s)
    try:
        for m, t in cells if inference else ():
            progress(f"inference {m}/{t} at {size} px ...")
            row = _verdict({"method": m, "task": t, **runner(
                _infer, dict(cfg), m, t, size, device, runs, threads, check, shared)}, check)
            out["inference"].append(row)
            progress(f"inference {m}/{t}: {_say_result(row)}")
            if on_result:
                on_result(out)
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
                    row = _verdict({"method": m, "task": t, "stage": st.name, **runner(
                        _train, dict(cfg), m, t, st.name, size, device, runs, threads, check,
                        shared)}, check)
                    out["train"].append(row)
                    progress(f"training {m}/{t}/{st.name}: {_say_result(row)}")
                    if on_result:
                        on_result(out)
    finally:
        runner.close()
    out["wall_s"] = round(time.monotonic() - t0, 3)
    return out
