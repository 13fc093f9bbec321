"""One training loop for every stage: iterate, log, validate, checkpoint, resume.

A stage supplies a :class:`Stage` object: ``step(batch, it) -> dict of floats`` (does its own
backward/optimiser work), ``predict(lq)`` for validation, ``weights()`` (what is selected and
exported), and ``state()``/``load_state()`` for resuming.
"""
from __future__ import annotations

import time
from typing import Mapping, Protocol

import torch
from tqdm.auto import tqdm

from .common import Run, infinite
from .validate import validate


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


def run_stage(stage: Stage, *, run: Run, train: Mapping, train_loader, val_loader, device,
              progress: bool = True, extra_summary: Mapping | None = None) -> dict:
    resume = run.start()
    start = 0
    if resume is not None:
        stage.load_state(resume["stage"])
        torch.set_rng_state(resume["rng"])
        start = resume["iter"]
    total = int(train["total_iters"])
    log_every = train.get("log_every", 50)

    def do_validate(it: int) -> None:
        _train_mode(stage, False)
        metrics = validate(stage.predict, val_loader, device, train.get("val_max_images", 100))
        _train_mode(stage, True)
        run.validated(it, metrics, stage.weights())

    if total == 0 or (start >= total and not (run.dir / "best.pt").exists()):
        do_validate(start)
    batches = infinite(train_loader)
    _train_mode(stage, True)
    t_last, sums, count = time.time(), {}, 0
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"train {run.dir}",
               disable=not progress, dynamic_ncols=True)
    for it in bar:
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in next(batches).items()}
        parts = stage.step(batch, it)
        for k, v in parts.items():
            if k != "lr":  # losses are averaged over the logging window, lr is its last value
                sums[k] = sums.get(k, 0.0) + float(v)
        count += 1
        done = it + 1
        if done % log_every == 0 or done == total:
            now = time.time()
            means = {k: v / count for k, v in sums.items()}
            if "lr" in parts:
                means["lr"] = float(parts["lr"])
            run.log.write({"iter": done, **means, "sec_per_iter": (now - t_last) / count})
            bar.set_postfix({k: f"{v:.4f}" for k, v in list(means.items())[:3]})
            t_last, sums, count = now, {}, 0
        if done % train["val_every"] == 0 or done == total:
            do_validate(done)
        if done % train["ckpt_every"] == 0 or done == total:
            run.save_last(done, {"stage": stage.state(), "rng": torch.get_rng_state()})
    return run.finish({"total_iters": total, **(extra_summary or {})})
