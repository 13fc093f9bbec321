"""ESRGAN's training step (BasicSR ``ESRGANModel.optimize_parameters``) on the shared adversarial
stage, and its perceptual loss.

One iteration, as ``basicsr/models/esrgan_model.py:12-78`` (8d56e3a)::

    G step (D frozen):  out = G(lq)
        l_g = 1e-2 * L1(out, gt) + 1 * L1(VGG19_conv5_4(out), VGG19_conv5_4(gt))
              + 5e-3 * (BCE(D(gt).detach() - mean D(out), 0) + BCE(D(out) - mean D(gt).detach(), 1)) / 2
    D step:  0.5 * BCE(D(gt) - mean D(out).detach(), 1) + 0.5 * BCE(D(out.detach()) - mean D(gt).detach(), 0)
    EMA of G (decay 0.999); the EMA generator is validated and exported

The relativistic losses are :func:`ugpnet.losses.g_relativistic_loss` /
:func:`ugpnet.losses.d_relativistic_loss` (``loss="relativistic"``, ``order="g_first"`` of
:class:`ugpnet.training.AdversarialStage`); ``bench/official_esrgan.py`` checks them against
BasicSR's formulas on the same tensors. BasicSR backpropagates the two D halves separately; the
sum of the gradients is the same. The D runs in training mode (BatchNorm batch statistics), one
call on the real and one on the fake batch each time, as there. Images stay in [0, 1] (BasicSR's
range; the D and the VGG see them so, the VGG after ImageNet normalisation).

Both optimisers follow the MultiStepLR schedule (BasicSR ``SRModel.setup_schedulers`` builds one
per optimiser): :class:`ESRGANStage` steps the D's schedule after each D step.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ugpnet.errors import CheckpointError, ConfigError
from ugpnet.training import AdversarialStage, Critic, make_scheduler

__all__ = ["PerceptualLoss", "ESRGANStage", "esrgan_recon", "make_esrgan_stage", "vgg_layer"]


def vgg_layer(name: str, arch: str) -> tuple[str, int]:
    """BasicSR's pre-ReLU layer ``conv{b}_{k}`` -> (the name in ``arch``, its ``features`` index).

    For ``vgg16`` a VGG19 name maps to the conv at the same place of the VGG16 block (the block's
    last conv for ``conv5_4`` -> ``conv5_3``), as :func:`ugpnet.pretrained.archs.map_layer`."""
    from ugpnet.pretrained.archs import VGG_LAYERS, map_layer

    if not name.startswith("conv"):
        raise ConfigError(f"ESRGAN perceptual layer {name!r}: use BasicSR's pre-ReLU names "
                          f"(conv5_4)")
    relu = map_layer("relu" + name[len("conv"):], arch)
    return "conv" + relu[len("relu"):], VGG_LAYERS[arch][relu] - 1


class PerceptualLoss(nn.Module):
    """BasicSR ``PerceptualLoss(layer_weights, vgg_type, use_input_norm=True, range_norm=False,
    perceptual_weight=1, style_weight=0, criterion='l1')`` (``basicsr/losses/basic_loss.py:147-238``):
    ``sum_k w_k * L1(phi_k(x), phi_k(gt))`` of images in [0, 1], ImageNet-normalised, ``phi_k``
    the VGG activation *before* the ReLU. Frozen, always in eval mode.

    ``vgg``: ``vgg19`` (torchvision's ``vgg19-dcbb9e9d.pth`` in the torch hub cache, else one
    CheckpointError naming it) or ``vgg16`` (the project's offline VGG16, a recorded deviation).
    ``state``: a ``features`` state dict to use instead of those files (tests, the bench)."""

    def __init__(self, layer_weights: Mapping[str, float], vgg: str = "vgg19",
                 state: Mapping[str, torch.Tensor] | None = None):
        super().__init__()
        from ugpnet.pretrained import torch_hub_checkpoints_dir
        from ugpnet.losses.vgg import vgg_trunk
        from ugpnet.pretrained.vgg import (IMAGENET_MEAN, IMAGENET_STD, VGG19_FILE, VGG19_URL,
                                           vgg16_features_state, vgg16_source, vgg19_checkpoint,
                                           vgg19_features_state)

        if vgg not in ("vgg19", "vgg16"):
            raise ConfigError(f"ESRGAN perceptual vgg must be vgg19 or vgg16, got {vgg!r}")
        if state is not None:
            self.source = f"{vgg} (given state dict)"
        elif vgg == "vgg19":
            ckpt = vgg19_checkpoint()
            if ckpt is None:
                raise CheckpointError(
                    f"ESRGAN's perceptual loss (VGG19 conv5_4) needs torchvision's {VGG19_FILE} "
                    f"at {torch_hub_checkpoints_dir() / VGG19_FILE}: download {VGG19_URL} there, "
                    f"or set methods.<esrgan>.loss.vgg: vgg16 (offline weights, a recorded "
                    f"deviation) or loss.perceptual: 0")
            state, self.source = vgg19_features_state(ckpt), f"vgg19 ({VGG19_FILE})"
        else:
            state, self.source = vgg16_features_state(), f"vgg16 ({vgg16_source()})"
        self.layers = {}  # features index -> (name, weight)
        for name, w in layer_weights.items():
            ours, idx = vgg_layer(name, vgg)
            self.layers[idx] = (ours, float(w))
        self.features = vgg_trunk(vgg, state, max(self.layers) + 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def feats(self, x01: torch.Tensor) -> dict[int, torch.Tensor]:
        out, x = {}, (x01 - self.mean) / self.std
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.layers:
                out[i] = x
        return out

    def forward(self, x01: torch.Tensor, gt01: torch.Tensor) -> torch.Tensor:
        fx, fg = self.feats(x01), self.feats(gt01.detach())
        return sum(w * F.l1_loss(fx[i], fg[i]) for i, (_, w) in self.layers.items())


def esrgan_recon(l1: float, perceptual_weight: float, perceptual: PerceptualLoss | None):
    """``(fake01, real01) -> (loss, parts)``: ``l1 * L1 + perceptual * VGG`` (pixel_opt and
    perceptual_opt of train_ESRGAN_x4.yml), both on [0, 1] images."""
    if perceptual_weight > 0 and perceptual is None:
        raise ValueError("the perceptual term has weight > 0 but no VGG")

    def recon(fake01, real01):
        total = l1 * F.l1_loss(fake01, real01)
        parts = {"l1": float(total.detach())}
        if perceptual_weight > 0:
            p = perceptual_weight * perceptual(fake01, real01)
            total = total + p
            parts["perceptual"] = float(p.detach())
        return total, parts

    return recon


class ESRGANStage(AdversarialStage):
    """:class:`AdversarialStage` plus the D's own LR schedule (``d_scheduler``, stepped after
    every D step and part of the resume state)."""

    def __init__(self, *args, d_scheduler=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.d_scheduler = d_scheduler

    def d_step(self, real, fake, it: int, batch: Mapping | None = None) -> dict:
        out = super().d_step(real, fake, it, batch)
        if self.d_scheduler is not None:
            self.d_scheduler.step()
        return out

    def state(self) -> dict:
        s = super().state()
        if self.d_scheduler is not None:
            s["sched_d"] = self.d_scheduler.state_dict()
        return s

    def load_state(self, s: Mapping) -> None:
        super().load_state(s)
        if self.d_scheduler is not None:
            self.d_scheduler.load_state_dict(s["sched_d"])


def make_esrgan_stage(m: Mapping, net: nn.Module, D: nn.Module, device, precision: str,
                      perceptual: PerceptualLoss | None = None) -> ESRGANStage:
    """The stage of entry ``m`` (``methods.<esrgan>``) with G and D weights already loaded."""
    train, loss, d = m["train"], m["loss"], m["d"]
    betas = tuple(train.get("betas", (0.9, 0.999)))
    opt_g = torch.optim.Adam(net.parameters(), lr=train["lr"], betas=betas,
                             weight_decay=train.get("weight_decay", 0.0))
    opt_d = torch.optim.Adam(D.parameters(), lr=d["lr"], betas=tuple(d["betas"]))
    critic = Critic(D, opt_d, weight=1.0, input_range=(0.0, 1.0), name="net_d")
    return ESRGANStage(net, opt_g, [critic],
                       recon=esrgan_recon(loss["l1"], loss["perceptual"], perceptual),
                       adv_weight=loss["gan"], loss="relativistic", order="g_first",
                       scheduler=make_scheduler(opt_g, train),
                       d_scheduler=make_scheduler(opt_d, train),
                       ema_beta=m["ema_decay"],
                       frozen=[perceptual] if perceptual is not None else [],
                       precision=precision, device=device, name="net_g")
