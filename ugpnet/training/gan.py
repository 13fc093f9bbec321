"""Adversarial training pieces shared by prior pretraining and the synthesis stage."""
from __future__ import annotations

import torch

from ..losses.adversarial import d_logistic_loss, d_r1_penalty, g_nonsaturating_loss, r1_weight


GAN_RANGE = (-1.0, 1.0)  # StyleGAN's convention (prior pretraining)


def to_range(x01: torch.Tensor, input_range=GAN_RANGE) -> torch.Tensor:
    """Images in [0, 1] → ``input_range`` (``(0, 1)``: unchanged; ``(-1, 1)``: ``2x - 1``)."""
    lo, hi = float(input_range[0]), float(input_range[1])
    return x01 if (lo, hi) == (0.0, 1.0) else x01 * (hi - lo) + lo


def d_step(D, opt_d, real01: torch.Tensor, fake01: torch.Tensor, it: int, r1_gamma: float,
           r1_every: int, input_range=GAN_RANGE) -> dict:
    """Logistic D loss; every ``r1_every`` steps the lazy R1 penalty (weight gamma/2 * interval)
    is added to the same backward pass and optimiser step (as the official UGPNet code does).
    D sees the images mapped to ``input_range`` (official UGPNet synthesis: ``(0, 1)``)."""
    real, fake = to_range(real01.detach(), input_range), to_range(fake01.detach(), input_range)
    r1_due = r1_gamma > 0 and it % r1_every == 0
    if r1_due:
        real.requires_grad_(True)
    real_logits = D(real)
    d_loss = d_logistic_loss(real_logits, D(fake))
    total = d_loss
    parts = {"d_loss": float(d_loss.detach())}
    if r1_due:
        r1 = d_r1_penalty(real_logits, real)
        total = total + r1_weight(r1_gamma, r1_every) * r1
        parts["r1"] = float(r1.detach())
    opt_d.zero_grad(set_to_none=True)
    total.backward()
    opt_d.step()
    return parts


def g_adv_loss(D, fake01: torch.Tensor, input_range=GAN_RANGE) -> torch.Tensor:
    return g_nonsaturating_loss(D(to_range(fake01, input_range)))


@torch.no_grad()
def ema_update(target: torch.nn.Module, source: torch.nn.Module, beta: float) -> None:
    for pt, ps in zip(target.parameters(), source.parameters()):
        pt.lerp_(ps.detach(), 1.0 - beta)
    for bt, bs in zip(target.buffers(), source.buffers()):
        bt.copy_(bs)
