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

Data-parallel training (``torchrun``; :mod:`.distributed`): every process runs this loop on its
share of each global batch, optimiser steps average the gradients over the processes, and rank 0
alone validates and writes the run folder (its checkpoints keep every rank's RNG state).
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
from . import distributed
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


def checkpoint_rng() -> dict:
    """What ``last.pt`` keeps of the RNGs: this process's state (``rng``) and, in data-parallel
    training, every rank's (``rng_ranks``; a collective: every rank calls it)."""
    state = rng_state()
    if not distributed.active():
        return {"rng": state}
    return {"rng": state, "rng_ranks": distributed.gather_objects(state)}


def restore_rng(resume: Mapping, run: Run) -> None:
    """This rank's RNG state from ``resume`` (see :func:`checkpoint_rng`)."""
    ranks = resume.get("rng_ranks")
    world, r = distributed.world_size(), distributed.rank()
    if world == 1 and not ranks:
        set_rng_state(resume["rng"])
    elif ranks and len(ranks) == world:
        set_rng_state(ranks[r])
    else:  # another number of processes than the run was checkpointed with
        set_rng_state(resume["rng"])
        if r > 0:
            torch.manual_seed(distributed.rank_seed(torch.initial_seed(), r))
        if distributed.is_main():
            say(f"note: {run.dir} was checkpointed by {len(ranks or [0])} training process(es) "
                f"and resumes on {world}: the data continue exactly, the random streams of the "
                f"extra ranks start afresh")


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


class _NoVisuals:
    """What a rank other than 0 draws: nothing."""

    def begin(self, resume_iter):
        pass

    def grid_rows(self):
        return None

    def curves(self, force=False):
        pass

    def logged(self, it, values):
        pass

    def validated(self, it, metrics, rows):
        pass

    def close(self, final=True):
        pass


def run_stage(stage: Stage, *, run: Run, train: Mapping, train_loader, val_loader, device,
              progress: bool = True, extra_summary: Mapping | None = None) -> dict:
    if not distributed.is_main():
        return _follow(stage, run, train, train_loader, val_loader, device, extra_summary)
    label = run.label
    title = "/".join(str(label[k]) for k in ("method", "task", "stage") if label.get(k))
    if distributed.active():  # how it ran, not what it makes: recorded, never hashed
        run.operational["training_processes"] = distributed.world_size()
    with distributed.main_first(f"starting {run.dir}"):
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
        return distributed.broadcast_object(out)
    finally:
        visuals.close(final=not ended)  # a failed stage: its curves up to the failure
        run.close()


def _follow(stage, run, train, train_loader, val_loader, device, extra_summary) -> dict:
    """A rank other than 0: the same loop on its share of the data, writing nothing; the
    resume state is rank 0's ``last.pt`` once rank 0 has settled the run folder."""
    with distributed.main_first(f"starting {run.dir}"):
        last = run.dir / "last.pt"
        resume = read_checkpoint(last, "resume state (last.pt)") if last.exists() else None
    out = _loop(stage, run, train, train_loader, val_loader, device, False, resume,
                extra_summary, _NoVisuals())
    return distributed.broadcast_object(out)


def _loop(stage, run, train, train_loader, val_loader, device, progress, resume, extra_summary,
          visuals):
    batches = DataStream(train_loader)
    main = distributed.is_main()
    start = 0
    if resume is not None:
        stage.load_state(resume["stage"])
        restore_rng(resume, run)
        batches.load_state(resume["data"])
        start = resume["iter"]
    elif distributed.active():  # every rank its own random stream (the weights: rank 0's)
        seed = distributed.rank_seed(torch.initial_seed(), distributed.rank())
        torch.manual_seed(seed)
        random.seed(seed)
    distributed.broadcast_modules(list(stage.modules) + [m for m in (getattr(stage, "ema", None),)
                                                          if isinstance(m, torch.nn.Module)])
    total = int(train["total_iters"])
    log_every = train.get("log_every", 50)
    v = run.validation
    tag = run.label.get("stage", run.dir.name)

    def do_validate(it: int) -> None:
        if not main:  # rank 0 validates and selects; the others wait for it
            distributed.barrier()
            return
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
        distributed.barrier()

    if total == 0 or (start >= total and not (run.dir / "best.pt").exists()):
        do_validate(start)
    _train_mode(stage, True)
    t_start = t_last = time.time()
    sums, count = {}, 0
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"train {run.dir}",
               disable=not progress, dynamic_ncols=True)
    with distributed.averaged_steps():  # data-parallel: gradients averaged at every step
        for it in bar:
            batch = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
                     for k, v in next(batches).items()}
            parts = distributed.mean_values(stage.step(batch, it))  # the global batch's values
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
                if main:
                    run.log.write({"iter": done, **means, "sec_per_iter": sec})
                    visuals.logged(done, {**means, "sec_per_iter": sec})
                    bar.set_postfix({k: f"{val:.4f}" for k, val in list(means.items())[:3]})
                if main and not progress:  # one line per window in the job's log, not a bar
                    rate = (done - start) / max(now - t_start, 1e-9)
                    losses = " ".join(f"{k}={val:.4g}" for k, val in means.items())
                    print(f"[{tag}] iter {done}/{total} {losses} "
                          f"{rate:.2f} it/s ETA {_fmt_seconds((total - done) / max(rate, 1e-9))}",
                          file=sys.stdout, flush=True)
                t_last, sums, count = now, {}, 0
            if done % train["val_every"] == 0 or done == total:
                do_validate(done)
            if done % train["ckpt_every"] == 0 or done == total:
                rng = checkpoint_rng()  # a collective in data-parallel training: every rank
                if main:
                    run.save_last(done, {"stage": stage.state(), **rng, "data": batches.state()})
    if not main:
        return {}
    visuals.curves(force=True)  # the final curves, before summary.json marks the stage done
    return run.finish({"total_iters": total, **(extra_summary or {})})
