"""LPIPS as a training loss (UGPNet's synthesis and fusion modules: weight 10, VGG variant).

The network is the same offline LPIPS v0.1 model that the metric uses
(:func:`ugpnet.metrics.get_lpips_model`: ``lpips`` package linear layers, ImageNet backbone from the
offline weight carriers, dropout removed). It is frozen and kept in eval mode; gradients flow to the
inputs only. Inputs are ``[N,3,H,W]`` in [0, 1] and are mapped to [-1, 1] (``2x - 1``) as LPIPS expects.

``resize_px``: the official UGPNet ``LpipsLoss`` resizes both images to 256x256 (bicubic) before
LPIPS; set ``resize_px=256`` to reproduce that, ``None`` (default) evaluates at full resolution.
The value is the batch mean of the per-image distances, times ``loss_weight``.

``forward(..., keep_pred_layer="relu3_3")`` also returns the trunk activation of ``pred`` that
LPIPS computed on the way, so that another loss on the same image and layer (the contextual loss, see
:func:`ugpnet.losses.contextual.shares_trunk`) does not run the same network again.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from . import LOSSES


# the named outputs of the lpips package's trunks (lpips.pretrained_networks), slice1..slice5
TRUNK_LAYERS = {"vgg": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
                "alex": ("relu1", "relu2", "relu3", "relu4", "relu5")}


@LOSSES.register("lpips")
class LPIPSLoss(nn.Module):
    def __init__(self, net: str = "vgg", loss_weight: float = 1.0, resize_px: int | None = None,
                 device: str = "cpu"):
        super().__init__()
        if net not in ("vgg", "alex"):
            raise ConfigError(f"LPIPSLoss: net must be 'vgg' or 'alex', got '{net}'")
        if resize_px is not None and int(resize_px) < 16:
            raise ConfigError(f"LPIPSLoss: resize_px must be >= 16 or null, got {resize_px}")
        from ..metrics import get_lpips_model
        from ..pretrained import lpips_backbone_state

        self.net = net
        self.loss_weight = float(loss_weight)
        self.resize_px = None if resize_px is None else int(resize_px)
        self.model = get_lpips_model(net, device)
        self.model.eval().requires_grad_(False)
        src = lpips_backbone_state(net)[1].get("source", "?")
        self.feature_source = f"lpips v0.1 {net} (backbone: {src})"

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # frozen network: never in training mode
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor, keep_pred_layer: str | None = None):
        """The loss; with ``keep_pred_layer`` (a name of :data:`TRUNK_LAYERS`) also the activation
        of ``pred`` at that layer, as LPIPS computed it: ``(loss, features)``."""
        if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(f"LPIPSLoss expects two [N,3,H,W] tensors of equal shape in [0,1], got "
                             f"{tuple(pred.shape)} and {tuple(target.shape)}")
        a, b = pred * 2.0 - 1.0, target * 2.0 - 1.0
        if self.resize_px is not None and tuple(a.shape[-2:]) != (self.resize_px, self.resize_px):
            size = (self.resize_px, self.resize_px)
            a = F.interpolate(a, size=size, mode="bicubic", align_corners=False)
            b = F.interpolate(b, size=size, mode="bicubic", align_corners=False)
        if keep_pred_layer is None:
            return self.loss_weight * self.model(a, b, normalize=False).mean()
        if keep_pred_layer not in TRUNK_LAYERS[self.net]:
            raise ValueError(f"LPIPS {self.net} has no trunk layer '{keep_pred_layer}'; "
                             f"known: {', '.join(TRUNK_LAYERS[self.net])}")
        # lpips runs its trunk as slice1..slice5 (one per named output), on pred first
        block = getattr(self.model.net, f"slice{TRUNK_LAYERS[self.net].index(keep_pred_layer) + 1}")
        kept: list[torch.Tensor] = []
        handle = block.register_forward_hook(lambda _m, _i, out: kept.append(out))
        try:
            d = self.model(a, b, normalize=False)
        finally:
            handle.remove()
        return self.loss_weight * d.mean(), kept[0]
