"""GFP-GAN v1's training step on the shared :class:`ugpnet.training.AdversarialStage`.

One iteration as ``GFPGANModel.optimize_parameters`` (gfpgan/models/gfpgan_model.py): the G step
first (``order="g_first"``), then the D steps on the same detached output, then the EMA of G.

- G: ``l1 * L1 + pyramid * sum_s L1(toRGB_s, GT_s)`` (until ``pyramid_until`` iterations) ``+
  perceptual * content + style * Gram`` (VGG, pre-ReLU) ``+ identity * L1(ArcFace)`` ``+
  component_style * sum_parts Gram-L1 of the component critics' features`` (these in ``recon``),
  plus the critics' non-saturating losses: the StyleGAN2 D at weight ``gan`` and each
  component critic at ``component_gan``. All pixel terms in the method's [-1, 1] range.
- D: logistic loss (= BasicSR ``wgan_softplus``) with lazy R1 (gamma 10 every 16); the component
  critics: BCE real/fake (= the same logistic loss), no R1.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from ugpnet.training import AdversarialStage

from .nets import gram, gray_resize

PARTS = ("left_eye", "right_eye", "mouth")


def seeded_noise(g, n: int, device, seed: int = 0) -> list[torch.Tensor]:
    """Fresh N(0,1) noise for every style conv of decoder ``g`` (as the official
    ``randomize_noise=True``), drawn from a fixed seed so evaluation is reproducible."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return [torch.randn(n, 1, 2 ** ((j + 5) // 2), 2 ** ((j + 5) // 2), generator=gen).to(device)
            for j in range(g.num_layers)]


def predict01(net, lq01: torch.Tensor) -> torch.Tensor:
    """Evaluation: [0,1] input -> [0,1] output (seeded fresh decoder noise)."""
    noise = seeded_noise(net.stylegan_decoder, lq01.shape[0], lq01.device)
    img, _ = net(lq01 * 2 - 1, noise=noise, return_rgb=False)
    return (img + 1) * 0.5


class GFPGANStage(AdversarialStage):
    """``weights``: the loss weights (``methods.gfpgan.loss``); ``perceptual``: a
    :class:`~.nets.PerceptualStyleLoss` or None; ``arcface``: the frozen identity network or
    None; ``component_critics``: the three component :class:`Critic` s (also in ``critics``) or
    ();  ``boxes``: :class:`~.nets.ComponentBoxes` or None."""

    def __init__(self, net, opt_g, critics, *, weights: Mapping, perceptual=None, arcface=None,
                 component_critics=(), boxes=None, **kw):
        super().__init__(net, opt_g, critics, recon=self._recon, order="g_first",
                         predict=predict01, **kw)
        self.w = dict(weights)
        self.perceptual, self.arcface, self.boxes = perceptual, arcface, boxes
        self.component_critics = list(component_critics)
        self._aux: dict = {}

    def pyramid_active(self, it: int) -> bool:
        # official: weight 1e-12 once current_iter (1-based) > remove_pyramid_loss
        return self.w.get("pyramid", 0) > 0 and it + 1 <= self.w.get("pyramid_until", 0)

    def step(self, batch: Mapping, it: int) -> dict:
        if self.boxes is not None:
            batch = {**batch, "components": self.boxes.boxes(batch["name"]).to(batch["gt"].device)}
        if self.arcface is not None:
            self.arcface.eval()
        return super().step(batch, it)

    def forward(self, batch: Mapping, it: int):
        pyr = self.pyramid_active(it)
        img, pyramid = self.generator(batch["lq"] * 2 - 1, noise="random", return_rgb=pyr)
        self._aux = {"pyramid": pyramid, "batch": batch}
        return (img + 1) * 0.5, batch["gt"]

    def _recon(self, fake01: torch.Tensor, real01: torch.Tensor):
        w, parts = self.w, {}
        fake, real = fake01 * 2 - 1, real01 * 2 - 1
        total = w["l1"] * F.l1_loss(fake, real)
        parts["l1"] = float(total.detach())
        pyramid = self._aux.get("pyramid") or []
        if pyramid:
            gt, levels = real, [real]
            for _ in range(len(pyramid) - 1):
                gt = F.interpolate(gt, scale_factor=0.5, mode="bilinear", align_corners=False)
                levels.insert(0, gt)
            pyr = sum(F.l1_loss(o, g) for o, g in zip(pyramid, levels)) * w["pyramid"]
            total = total + pyr
            parts["pyramid"] = float(pyr.detach())
        if self.perceptual is not None:
            content, style = self.perceptual(fake01, real01)
            content, style = content * w["perceptual"], style * w["style"]
            total = total + content + style
            parts["perceptual"], parts["style"] = float(content.detach()), float(style.detach())
        if self.arcface is not None:
            ident = F.l1_loss(self.arcface(gray_resize(fake)),
                              self.arcface(gray_resize(real)).detach()) * w["identity"]
            total = total + ident
            parts["identity"] = float(ident.detach())
        if self.component_critics and w.get("component_style", 0) > 0:
            batch, style = self._aux["batch"], 0.0
            for c in self.component_critics:
                _, ff = c.net(c.sees(fake01, batch), return_feats=True)
                _, fr = c.net(c.sees(real01, batch), return_feats=True)
                style = style + 0.5 * F.l1_loss(gram(ff[0]), gram(fr[0].detach())) \
                    + F.l1_loss(gram(ff[1]), gram(fr[1].detach()))
            style = style * w["component_style"]
            total = total + style
            parts["component_style"] = float(style.detach())
        return total, parts
