"""Adversarial training pieces: one discriminator (a :class:`Critic`) with its own optimiser, input
range, view and lazy R1, and the EMA update; :class:`~ugpnet.training.adversarial.AdversarialStage`
puts generator and critics together.

A critic sees ``to_range(view(images, batch), input_range)`` of images in [0, 1]. Its D step is
one backward pass and one optimiser step: the D loss of the pair (``nonsaturating``: StyleGAN2's
logistic loss; ``relativistic``: ESRGAN's relativistic average loss) plus, every ``r1_every``
steps, the lazy R1 penalty ``r1_weight(r1_gamma, r1_every) * R1`` on the real images it sees (as
the official UGPNet code does: plain Adam, the penalty in the same step).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from ..errors import ConfigError
from ..losses.adversarial import (GAN_LOSSES, d_logistic_loss, d_r1_penalty, d_relativistic_loss,
                                  g_nonsaturating_loss, g_relativistic_loss, r1_weight)

GAN_RANGE = (-1.0, 1.0)  # StyleGAN's convention (prior pretraining)


def to_range(x01: torch.Tensor, input_range=GAN_RANGE) -> torch.Tensor:
    """Images in [0, 1] → ``input_range`` (``(0, 1)``: unchanged; ``(-1, 1)``: ``2x - 1``)."""
    lo, hi = float(input_range[0]), float(input_range[1])
    return x01 if (lo, hi) == (0.0, 1.0) else x01 * (hi - lo) + lo


def check_gan_loss(loss: str) -> str:
    if loss not in GAN_LOSSES:
        raise ConfigError(f"adversarial loss must be one of {', '.join(GAN_LOSSES)}, got {loss!r}")
    return loss


@dataclass(eq=False)
class Critic:
    """One discriminator C and what belongs to it.

    - ``net``, ``opt``: the network and its own optimiser;
    - ``weight``: its share of the generator's adversarial loss (times the stage's adv_weight);
    - ``input_range``: the range C expects (``(0, 1)`` or ``(-1, 1)``) of images given in [0, 1];
    - ``view``: ``view(images, batch) -> images`` it judges (e.g. a facial-component crop), or
      None for the whole image;
    - ``r1_gamma``, ``r1_every``: lazy R1 (0: none);
    - ``name``: its keys in the resume state (``name``, ``opt_<name>``) and, beside other
      critics, in the logged values (``d_loss_<name>``).
    """
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    weight: float = 1.0
    input_range: tuple = GAN_RANGE
    view: Callable[[torch.Tensor, Mapping | None], torch.Tensor] | None = None
    r1_gamma: float = 0.0
    r1_every: int = 1
    name: str = "d"

    def sees(self, images01: torch.Tensor, batch: Mapping | None = None) -> torch.Tensor:
        """What C is given for images in [0, 1]: the view, mapped to its input range."""
        x = images01 if self.view is None else self.view(images01, batch)
        return to_range(x, self.input_range)

    def r1_due(self, it: int) -> bool:
        return self.r1_gamma > 0 and it % self.r1_every == 0

    def d_step(self, real01: torch.Tensor, fake01: torch.Tensor, it: int,
               loss: str = "nonsaturating", batch: Mapping | None = None) -> dict:
        """One D step on detached images (fp32: call it outside autocast); returns
        ``{"d_loss", "r1" (when due)}``."""
        real = self.sees(real01.detach(), batch).detach()
        fake = self.sees(fake01.detach(), batch).detach()
        r1_due = self.r1_due(it)
        if r1_due:
            real.requires_grad_(True)
        real_logits = self.net(real)
        fake_logits = self.net(fake)
        if check_gan_loss(loss) == "nonsaturating":
            d_loss = d_logistic_loss(real_logits, fake_logits)
        else:
            d_loss = d_relativistic_loss(real_logits, fake_logits)
        total = d_loss
        parts = {"d_loss": float(d_loss.detach())}
        if r1_due:
            r1 = d_r1_penalty(real_logits, real)
            total = total + r1_weight(self.r1_gamma, self.r1_every) * r1
            parts["r1"] = float(r1.detach())
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        return parts

    def g_loss(self, fake01: torch.Tensor, real01: torch.Tensor | None = None,
               loss: str = "nonsaturating", batch: Mapping | None = None) -> torch.Tensor:
        """The generator's adversarial loss against this critic (unweighted); the relativistic
        loss also needs the real images (their logits are detached)."""
        if check_gan_loss(loss) == "nonsaturating":
            return g_nonsaturating_loss(self.net(self.sees(fake01, batch)))
        real_logits = self.net(self.sees(real01.detach(), batch))
        return g_relativistic_loss(real_logits, self.net(self.sees(fake01, batch)))


def d_step(D, opt_d, real01: torch.Tensor, fake01: torch.Tensor, it: int, r1_gamma: float,
           r1_every: int, input_range=GAN_RANGE) -> dict:
    """StyleGAN2's D step (logistic loss + lazy R1) of one discriminator: :meth:`Critic.d_step`."""
    return Critic(D, opt_d, input_range=input_range, r1_gamma=r1_gamma,
                  r1_every=r1_every).d_step(real01, fake01, it)


def g_adv_loss(D, fake01: torch.Tensor, input_range=GAN_RANGE) -> torch.Tensor:
    """The non-saturating G loss against ``D``: :meth:`Critic.g_loss`."""
    return Critic(D, None, input_range=input_range).g_loss(fake01)


@torch.no_grad()
def ema_update(target: torch.nn.Module, source: torch.nn.Module, beta: float) -> None:
    """``target <- beta * target + (1 - beta) * source`` (a lerp) for the parameters; buffers
    are copied."""
    for pt, ps in zip(target.parameters(), source.parameters()):
        pt.lerp_(ps.detach(), 1.0 - beta)
    for bt, bs in zip(target.buffers(), source.buffers()):
        bt.copy_(bs)
