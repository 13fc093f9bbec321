"""Uformer's training step (ZhendongWang6/Uformer train/train_denoise.py, train_motiondeblur.py).

One iteration, as the official loop (train_denoise.py:170-190)::

    each training pair gets one of the 8 dihedral transforms (dataset_denoise.py:68-71,
        dataset_motiondeblur.py: Augment_RGB_torch transform0..7, random.getrandbits(3))
    denoise only, from epoch 6 on: MixUp within the batch, lam ~ Beta(1.2, 1.2) per sample
        (train_denoise.py:178-179 ``if epoch > 5``, utils/dataset_utils.py MixUp_AUG)
    loss = CharbonnierLoss(eps=1e-3) = mean(sqrt((x - y)^2 + eps^2))   (losses.py:41-51)
    AdamW(lr 2e-4, betas (0.9, 0.999), eps 1e-8, weight_decay 0.02) over all parameters
    learning rate per epoch: GradualWarmupScheduler(multiplier 1, total_epoch 3) then
        CosineAnnealingLR(nepoch - 3, eta_min 1e-6) (train_denoise.py:92-97,
        warmup_scheduler/scheduler.py), stepped once per epoch

Epochs are iterations here (``lr_step_iters`` = one epoch of the authors' dataset, see
params.yaml): :func:`warmup_cosine_factor`. The official loop runs under fp16 autocast
(``torch.cuda.amp``); ours follows ``train_precision`` (fp32 / bf16).
"""
from __future__ import annotations

import math
from typing import Mapping

import torch

from ugpnet.training import SupervisedStage

__all__ = ["warmup_cosine_factor", "warmup_cosine", "dihedral", "mixup", "UformerStage"]


def warmup_cosine_factor(it: int, *, total_iters: int, warmup_iters: int, step_iters: int,
                         lr: float, eta_min: float) -> float:
    """The learning rate of iteration ``it`` (0-based) over ``lr``.

    With ``e = it // step_iters`` (0-based epoch), ``W = warmup_iters / step_iters`` and
    ``T = total_iters / step_iters - W``, as the official per-epoch schedule:
    ``(e + 1) / W`` during the warm-up (GradualWarmupScheduler, multiplier 1: epoch 1 trains at
    lr/3), then ``eta_min + (lr - eta_min) (1 + cos(pi (e - W) / T)) / 2`` (CosineAnnealingLR;
    its first epoch repeats lr)."""
    e = it // step_iters
    W = warmup_iters // step_iters
    if e < W:
        return (e + 1) / W
    T = max(total_iters / step_iters - W, 1e-12)
    t = min(e - W, T)
    return (eta_min + (lr - eta_min) * 0.5 * (1 + math.cos(math.pi * t / T))) / lr


def warmup_cosine(opt: torch.optim.Optimizer, train: Mapping, schedule: Mapping):
    """A LambdaLR of :func:`warmup_cosine_factor` (stepped after every optimiser step)."""
    W, step = int(schedule["warmup_iters"]), int(schedule["lr_step_iters"])
    if W % step:
        raise ValueError(f"warmup_iters {W} must be a whole number of lr_step_iters {step} "
                         f"(the official warm-up is 3 epochs)")
    kw = dict(total_iters=max(1, int(train["total_iters"])), warmup_iters=W, step_iters=step,
              lr=float(train["lr"]), eta_min=float(schedule["eta_min"]))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda it: warmup_cosine_factor(it, **kw))


def dihedral(img: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Augment_RGB_torch ``transform{k}`` per sample: ``rot90(k % 4, dims [-1, -2])`` then, for
    k >= 4, ``flip(-2)`` (utils/dataset_utils.py:8-30). ``img`` [N,C,H,W] square, ``k`` [N]."""
    out = []
    for x, kk in zip(img, k.tolist()):
        x = torch.rot90(x, kk % 4, dims=[-1, -2])
        out.append(x.flip(-2) if kk >= 4 else x)
    return torch.stack(out)


def mixup(gt: torch.Tensor, lq: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor):
    """MixUp_AUG.aug: ``lam * a + (1 - lam) * a[perm]`` for both images (lam [N])."""
    lam = lam.view(-1, 1, 1, 1).to(gt)
    return lam * gt + (1 - lam) * gt[perm], lam * lq + (1 - lam) * lq[perm]


class UformerStage(SupervisedStage):
    """Charbonnier on ``model(lq)`` with AdamW and the warm-up + cosine schedule; the raw model is
    validated and exported (no EMA). ``augment``: ``dihedral`` (the authors') or ``none``;
    ``mixup_from_iter``: first iteration with MixUp (None: never; the authors' denoising only)."""

    def __init__(self, model: torch.nn.Module, train: Mapping, schedule: Mapping, device, *,
                 eps: float = 1e-3, augment: str = "dihedral", mixup_from_iter: int | None = None,
                 mixup_alpha: float = 1.2, precision: str = "fp32"):
        super().__init__(model, model, model.parameters(), {"charbonnier": 1.0}, train, device,
                         loss_kwargs={"charbonnier": {"eps": eps}}, precision=precision)
        self.sched = warmup_cosine(self.opt, train, schedule)
        if augment not in ("dihedral", "none"):
            raise ValueError(f"augment must be 'dihedral' or 'none', got {augment!r}")
        self.augment, self.mixup_from_iter = augment, mixup_from_iter
        self.beta = torch.distributions.Beta(torch.tensor([mixup_alpha]),
                                             torch.tensor([mixup_alpha]))

    def step(self, batch: Mapping, it: int) -> dict:
        lq, gt = batch["lq"], batch["gt"]
        if self.augment == "dihedral":
            if lq.shape[-1] != lq.shape[-2]:
                raise ValueError(f"dihedral augmentation needs square crops, got "
                                 f"{tuple(lq.shape[-2:])}")
            k = torch.randint(0, 8, (lq.shape[0],))
            lq, gt = dihedral(lq, k), dihedral(gt, k)
        parts = {}
        if self.mixup_from_iter is not None and it >= self.mixup_from_iter:
            n = gt.shape[0]
            gt, lq = mixup(gt, lq, self.beta.sample((n,)).view(-1), torch.randperm(n))
            parts["mixup"] = 1.0
        out = super().step({"lq": lq, "gt": gt}, it)
        return {**out, **parts}
