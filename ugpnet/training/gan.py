"""Adversarial training pieces shared by prior pretraining and the synthesis stage."""
from __future__ import annotations

import torch

from ..losses.adversarial import d_logistic_loss, d_r1_penalty, g_nonsaturating_loss


def to_gan(x: torch.Tensor) -> torch.Tensor:
    """[0,1] → StyleGAN's [-1,1]."""
    return x * 2.0 - 1.0


def d_step(D, opt_d, real01: torch.Tensor, fake01: torch.Tensor, it: int, r1_gamma: float,
           r1_every: int) -> dict:
    """Logistic D loss; lazy R1 every ``r1_every`` steps, scaled by gamma/2 * interval."""
    real, fake = to_gan(real01), to_gan(fake01.detach())
    d_loss = d_logistic_loss(D(real), D(fake))
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    parts = {"d_loss": float(d_loss.detach())}
    if r1_gamma > 0 and it % r1_every == 0:
        real = real.detach().requires_grad_(True)
        r1 = d_r1_penalty(D(real), real)
        opt_d.zero_grad(set_to_none=True)
        (r1_gamma / 2 * r1 * r1_every).backward()
        opt_d.step()
        parts["r1"] = float(r1.detach())
    return parts


def g_adv_loss(D, fake01: torch.Tensor) -> torch.Tensor:
    return g_nonsaturating_loss(D(to_gan(fake01)))


@torch.no_grad()
def ema_update(target: torch.nn.Module, source: torch.nn.Module, beta: float) -> None:
    for pt, ps in zip(target.parameters(), source.parameters()):
        pt.lerp_(ps.detach(), 1.0 - beta)
    for bt, bs in zip(target.buffers(), source.buffers()):
        bt.copy_(bs)
