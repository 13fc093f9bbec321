"""One training loop for every stage: iterate, log, validate, checkpoint, resume exactly.

A stage supplies a :class:`Stage` object: ``step(batch, it) -> dict of floats`` (does its own
backward/optimiser work), ``predict(lq)`` for validation, ``weights()`` (what is selected and
exported), and ``state()``/``load_state()`` for resuming. ``last.pt`` also holds the data
position (:class:`~ugpnet.training.stream.DataStream`) and the torch / Python RNG states, so a
resumed run continues exactly where the killed one was.

While it trains, a run draws its loss curves and, at each validation, an image grid of fixed val
images (optionally TensorBoard events too): :mod:`.visuals`, switched by ``logging:`` of
params.yaml (never part of a stage's identity). A stage object may name its single output for
the grid (``output_label``, e.g. ``"x_reg"``; default ``"output"``); a dict prediction names its
own.
"""
from __future__ import annotations

import math
import random
import sys
import time
from typing import Mapping, Protocol

import torch
from tqdm.auto import tqdm

from ..checkpoints import read_checkpoint
from ..errors import TrainingDiverged
from .run import Run
from .stream import DataStream
from .validate import validate
from .visuals import Visuals


class Stage(Protocol):
    modules: list[torch.nn.Module]

    def step(self, batch: Mapping, it: int) -> dict: ...

    def predict(self, lq: torch.Tensor): ...

    def weights(self) -> dict: ...

    def state(self) -> dict: ...

    def load_state(self, state: Mapping) -> None: ...


def _train_mode(stage: Stage, flag: bool) -> None:
    for m in stage.modules:
        m.train(flag)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fmt_seconds(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def check_finite(parts: Mapping, it: int, run: Run) -> None:
    """TrainingDiverged (a user error, exit 2) if a loss term of iteration ``it`` is NaN or
    infinite. Raised before anything of that iteration is logged or saved, so ``last.pt`` and
    ``best.pt`` stay the last good ones and no ``model.pt`` is written."""
    values = {}
    for k, v in parts.items():
        try:
            values[k] = float(v)
        except (TypeError, ValueError):
            continue
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if not bad:
        return
    terms = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
    last = run.dir / "last.pt"
    if last.exists():
        try:
            kept_iter = read_checkpoint(last, "resume state (last.pt)")["iter"]
            kept = f"the last good checkpoint {last} (iteration {kept_iter}) is kept"
        except Exception:  # noqa: BLE001 - only for the message
            kept = f"the last good checkpoint {last} is kept"
    else:
        kept = "no checkpoint had been written yet (nothing to keep)"
    raise TrainingDiverged(
        f"training in {run.dir} diverged at iteration {it + 1}: {', '.join(bad)} "
        f"{'is' if len(bad) == 1 else 'are'} not finite ({terms}). Stopped before logging or "
        f"saving this iteration; {kept} and no model.pt was written. Lower the learning rate "
        f"(train.lr) or check the data and rerun; a changed configuration starts afresh and "
        f"moves the old state to superseded-<hash>/.")


def say(line: str) -> None:
    """One line in the job's log, above the progress bar when there is one."""
    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def validation_line(tag: str, it: int, total: int, metrics: Mapping, selected: bool,
                    run: Run) -> str:
    """``[stage] val iter 4/10 psnr=.. ssim=.. lpips=.. selected`` (or the selection kept)."""
    values = " ".join(f"{k}={float(v):.4g}" for k, v in metrics.items())
    verdict = "selected" if selected else (
        f"not selected (best: iter {run.best_iter}, {run.select_metric}={run.best_value:.4g})")
    return f"[{tag}] val iter {it}/{total} {values} {verdict}"


def run_stage(stage: Stage, *, run: Run, train: Mapping, train_loader, val_loader, device,
              progress: bool = True, extra_summary: Mapping | None = None) -> dict:
    label = run.label
    title = "/".join(str(label[k]) for k in ("method", "task", "stage") if label.get(k))
    # before the folder is touched: TensorBoard switched on without the package stops here
    visuals = Visuals(run.dir, run.logging, title=title or str(run.dir),
                      output_label=getattr(stage, "output_label", None) or "output", say=say)
    resume = run.start()
    ended = False
    try:
        visuals.begin(None if resume is None else int(resume["iter"]))
        out = _loop(stage, run, train, train_loader, val_loader, device, progress, resume,
                    extra_summary, visuals)
        ended = True
        return out
    finally:
        visuals.close(final=not ended)  # a failed stage: its curves up to the failure
        run.close()


def _loop(stage, run, train, train_loader, val_loader, device, progress, resume, extra_summary,
          visuals):
    batches = DataStream(train_loader)
    start = 0
    if resume is not None:
        stage.load_state(resume["stage"])
        set_rng_state(resume["rng"])
        batches.load_state(resume["data"])
        start = resume["iter"]
    total = int(train["total_iters"])
    log_every = train.get("log_every", 50)
    v = run.validation
    tag = run.label.get("stage", run.dir.name)

    def do_validate(it: int) -> None:
        _train_mode(stage, False)
        rows = visuals.grid_rows()  # the first val images, as validation predicts them
        metrics = validate(stage.predict, val_loader, device, train.get("val_max_images", 100),
                           lpips_net=v["lpips_net"], psnr_cap_db=v["psnr_cap_db"],
                           lpips=v["lpips"] == "always" or run.select_metric == "lpips",
                           on_image=rows)
        _train_mode(stage, True)
        selected = run.validated(it, metrics, stage.weights())
        say(validation_line(tag, it, total, metrics, selected, run))
        visuals.validated(it, metrics, rows)

    if total == 0 or (start >= total and not (run.dir / "best.pt").exists()):
        do_validate(start)
    _train_mode(stage, True)
    t_start = t_last = time.time()
    sums, count = {}, 0
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"train {run.dir}",
               disable=not progress, dynamic_ncols=True)
    for it in bar:
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in next(batches).items()}
        parts = stage.step(batch, it)
        check_finite(parts, it, run)
        for k, value in parts.items():
            if k != "lr":  # losses are averaged over the logging window, lr is its last value
                sums[k] = sums.get(k, 0.0) + float(value)
        count += 1
        done = it + 1
        if done % log_every == 0 or done == total:
            now = time.time()
            means = {k: val / count for k, val in sums.items()}
            if "lr" in parts:
                means["lr"] = float(parts["lr"])
            sec = (now - t_last) / count
            run.log.write({"iter": done, **means, "sec_per_iter": sec})
            visuals.logged(done, {**means, "sec_per_iter": sec})
            bar.set_postfix({k: f"{val:.4f}" for k, val in list(means.items())[:3]})
            if not progress:  # one line per window in the job's log instead of a bar
                rate = (done - start) / max(now - t_start, 1e-9)
                losses = " ".join(f"{k}={val:.4g}" for k, val in means.items())
                print(f"[{tag}] iter {done}/{total} {losses} "
                      f"{rate:.2f} it/s ETA {_fmt_seconds((total - done) / max(rate, 1e-9))}",
                      file=sys.stdout, flush=True)
            t_last, sums, count = now, {}, 0
        if done % train["val_every"] == 0 or done == total:
            do_validate(done)
        if done % train["ckpt_every"] == 0 or done == total:
            run.save_last(done, {"stage": stage.state(), "rng": rng_state(),
                                 "data": batches.state()})
    visuals.curves(force=True)  # the final curves, before summary.json marks the stage done
    return run.finish({"total_iters": total, **(extra_summary or {})})
