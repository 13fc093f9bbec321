"""Train a regression network (or UGPNet's restoration module) with its own pixel loss."""
from __future__ import annotations

import time
from typing import Callable, Mapping

import torch
from tqdm.auto import tqdm

from .common import Run, infinite, lr_of, make_optimizer, make_scheduler
from .validate import validate


def weighted_loss(weights: Mapping[str, float], device, **kwargs) -> Callable:
    """Sum of registered losses ``{name: weight}`` (weights from params.yaml)."""
    from ..losses import LOSSES

    terms = []
    for name, weight in weights.items():
        if weight == 0:
            continue
        terms.append((name, float(weight), LOSSES.get(name)(**kwargs.get(name, {})).to(device)))

    def fn(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        total, parts = 0.0, {}
        for name, weight, loss in terms:
            value = loss(pred, target)
            parts[name] = float(value.detach())
            total = total + weight * value
        return total, parts

    return fn


def train_supervised(*, model: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                     params, loss_weights: Mapping[str, float], train_loader, val_loader,
                     train: Mapping, run: Run, device, predict=None, progress: bool = True,
                     loss_kwargs: Mapping | None = None) -> dict:
    """Generic loop: ``loss(forward(lq), gt)``; validate every ``val_every``; resume; select on val.

    ``model`` is what gets checkpointed (its full state_dict); ``params`` what gets optimised.
    """
    params = [p for p in params if p.requires_grad]
    opt = make_optimizer(params, train)
    sched = make_scheduler(opt, train)
    loss_fn = weighted_loss(loss_weights, device, **(loss_kwargs or {}))
    start = 0
    resume = run.start()
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["opt"])
        sched.load_state_dict(resume["sched"])
        torch.set_rng_state(resume["rng"])
        start = resume["iter"]
    total = int(train["total_iters"])
    predict = predict or forward

    def do_validate(it: int) -> None:
        model.eval()
        metrics = validate(predict, val_loader, device, train.get("val_max_images", 100))
        model.train()
        run.validated(it, metrics, model.state_dict())

    batches = infinite(train_loader)
    model.train()
    t_last = time.time()
    if total == 0 and not (run.dir / "best.pt").exists():
        do_validate(0)
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"train {run.dir}",
               disable=not progress, dynamic_ncols=True)
    for it in bar:
        batch = next(batches)
        lq, gt = batch["lq"].to(device), batch["gt"].to(device)
        pred = forward(lq)
        loss, parts = loss_fn(pred, gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        done = it + 1
        if done % train.get("log_every", 50) == 0 or done == total:
            now = time.time()
            run.log.write({"iter": done, "loss": float(loss.detach()), **parts, "lr": lr_of(opt),
                           "sec_per_iter": (now - t_last) / train.get("log_every", 50)})
            t_last = now
            bar.set_postfix(loss=f"{float(loss):.4f}")
        if done % train["val_every"] == 0 or done == total:
            do_validate(done)
        if done % train["ckpt_every"] == 0 or done == total:
            run.save_last(done, {"model": model.state_dict(), "opt": opt.state_dict(),
                                 "sched": sched.state_dict(), "rng": torch.get_rng_state()})
    return run.finish({"total_iters": total})
