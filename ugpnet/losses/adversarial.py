"""Adversarial losses: StyleGAN2's (non-saturating logistic GAN + lazy R1), as in rosinality's
``train.py`` and the official UGPNet synthesis training (``loss/gan_loss.py``), and ESRGAN's
relativistic average GAN (Wang et al. 2018, Eq. 1-2; BasicSR's ``ESRGANModel``).

Logits are the raw discriminator outputs (any shape, usually ``[N,1]``).

- generator:      ``g_nonsaturating_loss(fake) = mean softplus(-fake)``  (= -log sigmoid(fake))
- discriminator:  ``d_logistic_loss(real, fake) = mean softplus(-real) + mean softplus(fake)``
- relativistic:   ``g_relativistic_loss(real, fake)``, ``d_relativistic_loss(real, fake)`` (below)
- R1 penalty:     ``d_r1_penalty(real_logits, real_images) = mean_n || d sum(real_logits) / d x_n ||^2``
  (the real images must have ``requires_grad=True`` before the discriminator sees them).

**Lazy regularisation convention (StyleGAN2, Karras et al. 2020, Sec. 3.1 / App. B):** R1 is
evaluated only every ``interval`` discriminator steps and the trainer adds
``r1_weight(gamma, interval) * d_r1_penalty(...)`` with ``r1_weight = gamma / 2 * interval``, so on
average the penalty weight is ``gamma / 2`` per step as in the R1 definition
``gamma/2 * E||grad D(x)||^2``. StyleGAN2 (and rosinality) also scale the optimiser's lr and
betas by ``c = interval / (interval + 1)``; the official UGPNet synthesis training does not (plain
Adam, R1 gradients added to the D step of every 10th iteration) — that choice belongs to the trainer.
Official UGPNet: ``gamma = 10``, ``interval = 10``, G adversarial weight 0.3, D lr 2.5e-5.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from . import LOSSES


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss ``mean softplus(-D(G(z)))``."""
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss ``mean softplus(-D(x)) + mean softplus(D(G(z)))``."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy with logits against a constant label (1: real, 0: fake)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def d_relativistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic average D loss (ESRGAN), real and fake halves each weighted 0.5::

        0.5 * BCE(C(x_r) - mean C(x_f), 1) + 0.5 * BCE(C(x_f) - mean C(x_r), 0)

    The other half's mean is a constant (detached), so each half trains D through its own
    logits only, as BasicSR's two backward passes do."""
    real_half = _bce(real_logits - fake_logits.detach().mean(), 1.0)
    fake_half = _bce(fake_logits - real_logits.detach().mean(), 0.0)
    return 0.5 * real_half + 0.5 * fake_half


def g_relativistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic average G loss (ESRGAN), the real logits detached::

        (BCE(C(x_r) - mean C(x_f), 0) + BCE(C(x_f) - mean C(x_r), 1)) / 2"""
    real = real_logits.detach()
    return (_bce(real - fake_logits.mean(), 0.0) + _bce(fake_logits - real.mean(), 1.0)) / 2


GAN_LOSSES = ("nonsaturating", "relativistic")  # names of the adversarial loss pairs


def d_r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 gradient penalty ``mean_n sum_{c,h,w} (d sum(D(x)) / d x)^2`` (graph kept for backward).

    Unweighted: multiply by :func:`r1_weight`."""
    if not real_images.requires_grad:
        raise ValueError("d_r1_penalty: real_images must have requires_grad=True before the "
                         "discriminator forward pass (call real.requires_grad_(True) first)")
    (grad,) = torch.autograd.grad(outputs=real_logits.sum(), inputs=real_images, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(dim=1).mean()


def r1_weight(gamma: float, interval: int) -> float:
    """Weight of the lazily evaluated R1 penalty: ``gamma / 2 * interval`` (see module docstring)."""
    if gamma < 0 or int(interval) < 1:
        raise ConfigError(f"R1: gamma must be >= 0 and interval >= 1, got {gamma}, {interval}")
    return float(gamma) / 2.0 * int(interval)


@LOSSES.register("adversarial")
class StyleGAN2AdversarialLoss(nn.Module):
    """Bundle of the three StyleGAN2 terms with the R1 schedule (not a ``(pred, target)`` loss).

    ``g_loss(fake_logits)`` (times ``loss_weight``), ``d_loss(real_logits, fake_logits)``,
    ``r1_due(d_step)`` (True every ``r1_interval`` discriminator steps, starting at step 0) and
    ``r1_loss(real_logits, real_images)`` = ``r1_weight(r1_gamma, r1_interval) * d_r1_penalty``."""

    def __init__(self, loss_weight: float = 1.0, r1_gamma: float = 10.0, r1_interval: int = 10):
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.r1_gamma = float(r1_gamma)
        self.r1_interval = int(r1_interval)
        self.r1_scale = r1_weight(self.r1_gamma, self.r1_interval)

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * g_nonsaturating_loss(fake_logits)

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return d_logistic_loss(real_logits, fake_logits)

    def r1_due(self, d_step: int) -> bool:
        return self.r1_gamma > 0 and d_step % self.r1_interval == 0

    def r1_loss(self, real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
        return self.r1_scale * d_r1_penalty(real_logits, real_images)

    def forward(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Generator loss (so the module can sit in a list of generator-side losses)."""
        return self.g_loss(fake_logits)
