"""GPEN's training step (official ``train_simple.py``) on the shared adversarial stage.

One iteration, as ``train()`` there (i counts from 0)::

    D step:  logistic loss on (gt, G(lq)), one Adam step; every 16th iteration a second D step
             with the R1 penalty 10/2 * 16 * R1 (GPENCritic)
    G step:  softplus(-D(G(lq))) + 1 * SmoothL1(G(lq), gt) + 1 * (1 - cos ArcFace)   (recon)
    every 4th iteration a second G step: path-length penalty 2 * 4 * (|J^T y| - a)^2, the
             Jacobian w.r.t. the W+ latents, a the running mean (decay 0.01) (GPENStage)
    EMA of G: beta = 0.5 ** (32 / 10000) per iteration; the EMA generator is evaluated

Images are in [-1, 1] inside every term (SmoothL1, ArcFace, D, path length): the stage converts
the host's [0, 1] at the boundary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F

from ugpnet.losses import d_logistic_loss, d_r1_penalty, r1_weight
from ugpnet.training import AdversarialStage, Critic

__all__ = ["GPENCritic", "GPENStage", "gpen_recon"]


@dataclass(eq=False)
class GPENCritic(Critic):
    """GPEN's D step: the logistic loss step, then (every ``r1_every``) a separate R1 step."""

    def d_step(self, real01, fake01, it: int, loss: str = "nonsaturating",
               batch: Mapping | None = None) -> dict:
        if loss != "nonsaturating":
            raise ValueError(f"GPEN's D uses the logistic (nonsaturating) loss, not {loss!r}")
        real = self.sees(real01.detach(), batch).detach()
        fake = self.sees(fake01.detach(), batch).detach()
        d_loss = d_logistic_loss(self.net(real), self.net(fake))
        self.opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt.step()
        parts = {"d_loss": float(d_loss.detach())}
        if self.r1_due(it):
            real.requires_grad_(True)
            logits = self.net(real)
            r1 = d_r1_penalty(logits, real)
            self.opt.zero_grad(set_to_none=True)
            (r1_weight(self.r1_gamma, self.r1_every) * r1 + 0 * logits[0]).sum().backward()
            self.opt.step()
            parts["r1"] = float(r1.detach())
        return parts


def gpen_recon(weights: Mapping[str, float], id_loss=None):
    """``(fake01, real01) -> (loss, parts)``: SmoothL1 (beta 1, mean) and the ArcFace identity
    loss on [-1, 1] images, each times its weight (0: left out)."""
    w_l1, w_id = float(weights.get("smooth_l1", 0.0)), float(weights.get("id", 0.0))
    if w_id > 0 and id_loss is None:
        raise ValueError("the ID loss has weight > 0 but no ArcFace network")

    def recon(fake01, real01):
        fake, real = fake01 * 2 - 1, real01 * 2 - 1
        total, parts = fake.new_zeros(()), {}
        if w_l1 > 0:
            v = F.smooth_l1_loss(fake, real)
            parts["smooth_l1"] = float(v.detach())
            total = total + w_l1 * v
        if w_id > 0:
            v = id_loss(fake, real)
            parts["id"] = float(v.detach())
            total = total + w_id * v
        return total, parts

    return recon


class GPENStage(AdversarialStage):
    """:class:`AdversarialStage` plus GPEN's generator-side regulariser: every ``path_every``
    iterations (from 0) a second G step on ``path_weight * path_every * path penalty``
    (train_simple.py ``g_path_regularize``; the running mean is part of the resume state)."""

    def __init__(self, *args, path_weight: float = 0.0, path_every: int = 4,
                 path_decay: float = 0.01, **kwargs):
        super().__init__(*args, **kwargs)
        self.path_weight, self.path_every, self.path_decay = float(path_weight), int(path_every), \
            float(path_decay)
        self.mean_path_length = torch.zeros(())
        self._it = 0

    def step(self, batch: Mapping, it: int) -> dict:
        self._it = it
        return super().step(batch, it)

    def g_step(self, fake, real, batch: Mapping | None = None) -> dict:
        out = super().g_step(fake, real, batch)
        if self.path_weight > 0 and self._it % self.path_every == 0 and batch is not None:
            out.update(self.path_step(batch["lq"]))
        return out

    def path_step(self, lq01: torch.Tensor) -> dict:
        g = self.generator
        with self.autocast():
            img, latents = g(lq01 * 2 - 1, return_latents=True)
        img = img.float()
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * noise).sum(), latents, create_graph=True)
        lengths = torch.sqrt(grad.float().pow(2).sum(2).mean(1))
        mean = self.mean_path_length.to(lengths.device)
        path_mean = mean + self.path_decay * (lengths.mean() - mean)
        penalty = (lengths - path_mean).pow(2).mean()
        self.opt_g.zero_grad(set_to_none=True)
        (self.path_weight * self.path_every * penalty + 0 * img[0, 0, 0, 0]).backward()
        self.opt_g.step()
        self.mean_path_length = path_mean.detach().cpu()
        return {"path": float(penalty.detach()), "path_length": float(lengths.mean().detach())}

    def state(self) -> dict:
        return {**super().state(), "mean_path_length": self.mean_path_length.clone()}

    def load_state(self, s: Mapping) -> None:
        super().load_state(s)
        self.mean_path_length = s["mean_path_length"].detach().cpu().clone()
