"""VQFR's loss pieces, as the authors compute them (``vqfr/losses/lpips.py``, ``losses.py``,
``vqfr/models/vqfrv1_model.py``), on images in [-1, 1].

- :class:`LPIPSStyle`: LPIPS v0.1 VGG (our offline, exact weights: ``ugpnet.metrics.
  get_lpips_model``) and, with ``style_weight > 0``, the Gram-matrix style loss (L1) on the same
  normalised VGG16 features, from one trunk pass per image.
- :class:`HingeCritic`: a :class:`ugpnet.training.Critic` with the hinge loss of the local
  PatchGAN (D: ``0.5 (relu(1 - D(x)) + relu(1 + D(G)))``; G: ``-D(G)``).
- :func:`adaptive_weight`: taming-transformers' balance of the GAN gradient against the
  reconstruction gradient at the decoder's last layer.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ugpnet.training import Critic


def _normalise(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + eps)


def gram(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return f.bmm(f.transpose(1, 2)) / (c * h * w)


class LPIPSStyle(nn.Module):
    """``forward(pred, target) -> (lpips * perceptual_weight, style * style_weight | None)`` for
    images in [-1, 1]; the target's features carry no graph."""

    def __init__(self, perceptual_weight: float = 1.0, style_weight: float = 0.0,
                 device="cpu"):
        super().__init__()
        from ugpnet.metrics import get_lpips_model
        from ugpnet.pretrained import lpips_backbone_state

        self.model = get_lpips_model("vgg", device)
        self.model.eval().requires_grad_(False)
        self.perceptual_weight, self.style_weight = float(perceptual_weight), float(style_weight)
        src = lpips_backbone_state("vgg")[1].get("source", "?")
        self.feature_source = f"lpips v0.1 vgg (backbone: {src})"

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        return self

    def features(self, x: torch.Tensor):
        return [_normalise(f) for f in self.model.net(self.model.scaling_layer(x))]

    def forward(self, pred: torch.Tensor, target: torch.Tensor, target_feats=None):
        a = self.features(pred)
        if target_feats is None:
            with torch.no_grad():
                target_feats = self.features(target)
        lp = sum(self.model.lins[k]((fa - fb) ** 2).mean([2, 3], keepdim=True)
                 for k, (fa, fb) in enumerate(zip(a, target_feats)))
        percep = self.perceptual_weight * lp.mean()
        if self.style_weight <= 0:
            return percep, None
        style = sum(F.l1_loss(gram(fa), gram(fb)) for fa, fb in zip(a, target_feats))
        return percep, self.style_weight * style


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


class HingeCritic(Critic):
    """The local PatchGAN critic (hinge loss, no R1), in the shared :class:`Critic` shape."""

    def d_step(self, real01, fake01, it, loss="hinge", batch: Mapping | None = None) -> dict:
        d_loss = hinge_d_loss(self.net(self.sees(real01.detach(), batch)),
                              self.net(self.sees(fake01.detach(), batch)))
        self.opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt.step()
        return {"d_loss": float(d_loss.detach())}

    def g_loss(self, fake01, real01=None, loss="hinge", batch: Mapping | None = None):
        return -self.net(self.sees(fake01, batch)).mean()


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor,
                    last_layer: torch.Tensor) -> torch.Tensor:
    """``||d rec / d W|| / (||d g / d W|| + 1e-4)`` at the last layer ``W``, clamped to
    [0, 1e4] and detached (taming-transformers' ``calculate_adaptive_weight``)."""
    rec_g = torch.autograd.grad(rec_loss, last_layer, retain_graph=True, allow_unused=True)[0]
    gan_g = torch.autograd.grad(g_loss, last_layer, retain_graph=True, allow_unused=True)[0]
    if rec_g is None or gan_g is None:
        return g_loss.new_zeros(())
    return ada_ratio(rec_g, gan_g)


def ada_ratio(rec_grad: torch.Tensor, gan_grad: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.norm(rec_grad) / (torch.norm(gan_grad) + 1e-4), 0.0, 1e4).detach()


def adaptive_weight_at_output(image: torch.Tensor, last_layer: torch.Tensor,
                              rec_grad_image: torch.Tensor,
                              gan_grad_image: torch.Tensor) -> torch.Tensor:
    """:func:`adaptive_weight` from the two losses' gradients w.r.t. ``image``, the output of
    the conv whose weight is ``last_layer``: the chain rule through that conv alone gives the
    same weight gradients, without a second pass through LPIPS's VGG."""
    rec_g, gan_g = torch.autograd.grad(image, last_layer, grad_outputs=rec_grad_image,
                                       retain_graph=True)[0], \
        torch.autograd.grad(image, last_layer, grad_outputs=gan_grad_image,
                            retain_graph=True)[0]
    return ada_ratio(rec_g, gan_g)
