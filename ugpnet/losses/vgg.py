"""Frozen ImageNet VGG feature extractor for feature-space losses (contextual loss).

Which weights (checked in this order by :func:`build_vgg_features` with ``backbone="auto"``):

1. **VGG19** (what the official UGPNet code uses: ``torchvision.models.vgg19(pretrained=True)``),
   if torchvision's checkpoint ``vgg19-dcbb9e9d.pth`` is in ``<torch.hub.get_dir()>/checkpoints``.
   The file is checked against the sha256 prefix in its name and loaded with ``weights_only=True``
   (:func:`ugpnet.pretrained.vgg19_features_state`).
2. **VGG16** otherwise: the converted ImageNet VGG16 weights that the LPIPS metric already carries
   offline (:func:`ugpnet.pretrained.vgg16_features_state`). A VGG19 layer name is mapped to
   the VGG16 layer at the same place (last ReLU of a block maps to the last ReLU of that block:
   ``relu3_4 -> relu3_3``; :func:`ugpnet.pretrained.map_layer`).

Nothing here downloads. The extractor takes RGB in [0, 1], applies torchvision's ImageNet
normalisation (mean 0.485/0.456/0.406, std 0.229/0.224/0.225) and returns the activation after the
named ReLU. Its parameters are frozen and it stays in eval mode; gradients flow to the input.
``extractor.source`` describes the weights (recorded in run options).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from ..errors import CheckpointError, ConfigError
from ..pretrained import store
from ..pretrained.archs import VGG_CFG, VGG_LAYERS, map_layer
from ..pretrained.vgg import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG19_FILE,
    VGG19_URL,
    vgg16_features_state,
    vgg16_source,
    vgg19_checkpoint,
    vgg19_features_state,
)


def vgg_trunk(arch: str, state: Mapping[str, torch.Tensor], end: int) -> nn.Sequential:
    """torchvision's ``vgg16``/``vgg19`` ``features[:end]`` (convs, ReLUs, max-pools) with the
    weights of ``state`` (a ``features`` state dict) loaded strictly: the one VGG trunk of every
    feature loss (this module's extractor, the baselines' multi-layer perceptual losses)."""
    layers, cin = [], 3
    for v in VGG_CFG[arch]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            cin = v
    trunk = nn.Sequential(*layers[:end])
    trunk.load_state_dict({k: v for k, v in state.items() if int(k.split(".")[0]) < end},
                          strict=True)
    return trunk


def relu_of(layer: str) -> tuple[str, bool]:
    """``(reluB_K, pre_relu)`` of a layer name: ``reluB_K`` itself, or ``convB_K`` (BasicSR's and
    mmagic's perceptual losses read that conv's output, before its ReLU)."""
    if layer.startswith("conv"):
        return "relu" + layer[len("conv"):], True
    return layer, False


class VGGFeatures(nn.Module):
    """torchvision VGG ``features[:index + 1]`` with ImageNet input normalisation; frozen, eval.

    ``forward(x)``: ``x`` is ``[N,3,H,W]`` RGB in [0, 1]; returns the activation of ``layer``
    (``[N,C,H/2^(block-1),W/2^(block-1)]``)."""

    def __init__(self, arch: str, layer: str, state: dict, source: str):
        super().__init__()
        if arch not in VGG_CFG:
            raise ConfigError(f"unknown VGG '{arch}'; use vgg16 or vgg19")
        relu, pre_relu = relu_of(layer)
        if relu not in VGG_LAYERS[arch]:
            raise ConfigError(f"{arch} has no layer '{layer}'; known: {', '.join(VGG_LAYERS[arch])}"
                              f" (or conv<b>_<k>: the same conv before its ReLU)")
        self.arch, self.layer, self.source = arch, layer, source
        # reluB_K: features[:i + 1] ends at that ReLU; convB_K: features[:i] ends at its conv
        end = VGG_LAYERS[arch][relu] + (0 if pre_relu else 1)
        self.features = vgg_trunk(arch, state, end)
        self.out_channels = [m for m in self.features if isinstance(m, nn.Conv2d)][-1].out_channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always eval (no dropout/BN here, but be explicit)
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG features expect [N,3,H,W] RGB in [0,1], got {tuple(x.shape)}")
        return self.features((x - self.mean) / self.std)


def build_vgg_features(layer: str = "relu3_4", backbone: str = "auto") -> VGGFeatures:
    """A frozen VGG feature extractor ending at ``layer`` (see the module docstring).

    ``layer``: ``reluB_K`` (after the ReLU) or ``convB_K`` (the same conv before it).
    ``backbone``: ``"auto"`` (VGG19 if its torchvision checkpoint is cached, else offline VGG16),
    ``"vgg19"`` (error if the checkpoint is missing) or ``"vgg16"``."""
    if backbone not in ("auto", "vgg19", "vgg16"):
        raise ConfigError(f"unknown VGG backbone '{backbone}'; use auto, vgg19 or vgg16")
    ckpt = vgg19_checkpoint()
    if backbone == "vgg19" or (backbone == "auto" and ckpt is not None):
        if ckpt is None:
            raise CheckpointError(
                f"VGG19 weights are required (the official contextual loss uses VGG19 relu3_4) but "
                f"'{store.torch_hub_checkpoints_dir() / VGG19_FILE}' does not exist. Download "
                f"torchvision's {VGG19_URL} and put it there (that folder is "
                f"<torch.hub.get_dir()>/checkpoints; TORCH_HOME moves it). Offline, a profile may "
                f"choose the LPIPS VGG16 instead, explicitly: contextual: {{features: "
                f"vgg16_relu3_3}} (not the paper's).")
        name = _mapped(layer, "vgg19")
        state = vgg19_features_state(ckpt)
        return VGGFeatures("vgg19", name, state, f"vgg19/{name} (torchvision {VGG19_FILE})")
    name = _mapped(layer, "vgg16")
    return VGGFeatures("vgg16", name, vgg16_features_state(), f"vgg16/{name} ({vgg16_source()})")


def _mapped(layer: str, arch: str) -> str:
    """:func:`map_layer` for ``reluB_K`` and ``convB_K`` names (a conv maps as its ReLU)."""
    relu, pre_relu = relu_of(layer)
    name = map_layer(relu, arch)
    return "conv" + name[len("relu"):] if pre_relu else name
