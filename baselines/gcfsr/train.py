"""GCFSR's training step (official ``basicsr/models/gcfsr_model.py`` ``GCFSR_Model``,
``options/train_gcfsr_gan.yml``) on the shared adversarial stage.

One iteration, as ``optimize_parameters`` there::

    D step:  fake = G(lq, in_size) (no graph kept for G), logistic loss
             softplus(-D(gt)) + softplus(D(fake)) (wgan_softplus, D side unweighted), plus on
             every 16th iteration R1 * 10/2 * 16 in the SAME backward and Adam step
             (gcfsr_model.py:237-259): the shared :class:`ugpnet.training.Critic` step
    G step:  a fresh fake = G(lq, in_size) (``fresh_fake``), then
             1e-2 * softplus(-D(fake)) + 1 * L1(fake, gt) + 1e-2 * L1(VGG16 conv4_3(fake),
             VGG16 conv4_3(gt))   (gcfsr_model.py:269-292; images in [-1, 1])
    EMA of G: beta = 0.5 ** (32 / 10000) per iteration (gcfsr_model.py:299); the EMA generator
             is evaluated (test() runs net_g_ema)

Path-length regularisation is configured in the yml (path_reg_weight 2, net_g_reg_every 4) but
``optimize_parameters`` never applies it; only G's Adam carries the 4/5 lazy-regularisation
scaling (setup_optimizers). We do the same.

The perceptual term is BasicSR's ``PerceptualLoss({'conv4_3': 1}, vgg_type='vgg16',
use_input_norm=True, range_norm=True, criterion='l1')``: the [-1, 1] image mapped to [0, 1],
ImageNet-normalised, torchvision VGG16 ``features[:22]`` (conv4_3 before its ReLU, index 21),
mean L1. The VGG16 weights are torchvision's ImageNet ones, from the LPIPS carrier we ship
(:func:`ugpnet.losses.vgg.build_vgg_features` with ``backbone='vgg16'``).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ugpnet.losses.vgg import build_vgg_features

__all__ = ["VGG16Conv43", "gcfsr_recon"]


class VGG16Conv43(nn.Module):
    """Frozen VGG16 ``conv4_3`` features *before* the ReLU of images in [0, 1] (ImageNet
    normalisation inside): torchvision ``features[:22]`` (BasicSR ``NAMES['vgg16']`` index 21),
    the shared extractor :func:`ugpnet.losses.vgg.build_vgg_features` ``conv4_3``."""

    def __init__(self):
        super().__init__()
        self.vgg = build_vgg_features("conv4_3", backbone="vgg16")
        self.source = self.vgg.source
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.vgg(x01)


def gcfsr_recon(weights: Mapping[str, float], vgg: VGG16Conv43 | None = None):
    """``(fake01, real01) -> (loss, parts)``: ``l1`` (mean, on [-1, 1] images) and
    ``perceptual`` (mean L1 of VGG16 conv4_3 features, range-normalised to [0, 1] as BasicSR's
    ``range_norm``), each times its weight (0: left out)."""
    w_l1, w_p = float(weights.get("l1", 0.0)), float(weights.get("perceptual", 0.0))
    if w_p > 0 and vgg is None:
        raise ValueError("the perceptual loss has weight > 0 but no VGG16")

    def recon(fake01, real01):
        total, parts = fake01.new_zeros(()), {}
        if w_l1 > 0:
            v = F.l1_loss(fake01 * 2 - 1, real01 * 2 - 1)
            parts["l1"] = float(v.detach())
            total = total + w_l1 * v
        if w_p > 0:
            v = F.l1_loss(vgg(fake01), vgg(real01.detach()))
            parts["perceptual"] = float(v.detach())
            total = total + w_p * v
        return total, parts

    return recon
