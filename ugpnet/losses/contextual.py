"""Contextual loss (Mechrez, Talmi, Zelnik-Manor, ECCV 2018), patch-wise as in official UGPNet.

UGPNet's fusion module is trained with ``CX(x_hat, x_syn)`` (weight 0.05): the fused image should
contain the *features* of the synthesised image, without requiring pixel alignment.

Protocol (reproducing the official ``loss/contextual.py`` ``PatchContextualLoss``):

1. Both images ``[N,3,H,W]`` in [0, 1] are cut into the same non-overlapping grid of
   ``p x p`` patches, ``p = min(patch_size, H, W)`` (official: 128 px of the 512 px image, 16
   patches each); a remainder that does not fill a whole patch is dropped (like ``Tensor.unfold``).
   ``max_patches`` (optional) keeps a random subset (same positions in both images) to bound memory.
2. Each patch goes through a frozen ImageNet VGG (ImageNet normalisation) up to ``layer``
   (official: VGG19 ``relu3_4`` → ``p/4 x p/4`` positions of 256 channels; offline fallback: VGG16
   ``relu3_3``, see :mod:`.vgg`). ``.feature_source`` records which.
3. For every patch, with ``x_i`` the pred features and ``y_j`` the target features (``L`` positions):
   both are centred by the channel mean of ``y`` over all patches and positions, L2-normalised over
   channels; cosine distance ``d_ij = max(0, 1 - <x_i, y_j>)``; relative distance
   ``d~_ij = d_ij / (min_k d_ik + 1e-5)``; ``CX_ij = softmax_j((1 - d~_ij) / h)`` with band width
   ``h = 0.5`` (Eq. 2-4 of the paper).
4. For every target feature ``j`` its best match ``m_j = max_i CX_ij``. The patch similarity is
   - ``aggregate="ugpnet"`` (official code): ``CX = sum_j c_j m_j / sum_j c_j`` with
     ``c_j = exp((1 - d_{i*(j) j}) / 0.5)``, ``i*(j) = argmax_i CX_ij`` (a weighted mean that favours
     target features which have a close match), or
   - ``aggregate="mechrez"`` (paper Eq. 1): ``CX = mean_j m_j``.
5. Loss = ``loss_weight * mean over patches of -log(CX + 1e-5)``.

Identical inputs give ``CX ≈ 1`` (loss ≈ 0 up to the 1e-5 terms) when the features of a patch are
distinct; the loss is invariant to any permutation of feature positions within a patch.
Memory: one ``L x L`` matrix per patch (1024 x 1024 for a 128 px patch at relu3), a few copies kept
for backward.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from . import LOSSES
from .vgg import build_vgg_features

_EPS = 1e-5
_UGPNET_WEIGHT_BAND = 0.5  # fixed in the official code (independent of band_width)
AGGREGATES = ("ugpnet", "mechrez")
FEATURES = {"vgg19_relu3_4": ("vgg19", "relu3_4"), "vgg16_relu3_3": ("vgg16", "relu3_3")}


def contextual_similarity(x: torch.Tensor, y: torch.Tensor, band_width: float = 0.5,
                          aggregate: str = "ugpnet") -> torch.Tensor:
    """Per-sample contextual similarity ``CX`` in (0, 1] of feature maps ``x``, ``y`` ``[P,C,h,w]``.

    Steps 3-4 of the module docstring; returns ``[P]``. The centring mean is taken over all ``P``.
    Always computed in fp32, also under bf16 autocast: the relative distances ``d / min d``
    divide small cosine distances, which bf16's 8-bit mantissa would not resolve."""
    if x.ndim != 4 or x.shape[:2] != y.shape[:2]:
        raise ValueError(f"contextual: features must be [P,C,h,w] with equal P and C, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if aggregate not in AGGREGATES:
        raise ConfigError(f"contextual: aggregate must be one of {AGGREGATES}, got '{aggregate}'")
    with torch.autocast(x.device.type, enabled=False):
        return _contextual_similarity(_at_least_fp32(x), _at_least_fp32(y), band_width, aggregate)


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _contextual_similarity(x, y, band_width, aggregate):
    p, c = x.shape[:2]
    y_mu = y.mean(dim=(0, 2, 3), keepdim=True)
    xn = F.normalize((x - y_mu).reshape(p, c, -1), p=2, dim=1)  # [P,C,Lx]
    yn = F.normalize((y - y_mu).reshape(p, c, -1), p=2, dim=1)  # [P,C,Ly]
    dist = (1.0 - torch.bmm(xn.transpose(1, 2), yn)).clamp_min(0.0)  # [P,Lx,Ly]
    dist_rel = dist / (dist.min(dim=2, keepdim=True).values + _EPS)
    cx = torch.softmax((1.0 - dist_rel) / band_width, dim=2)  # normalised over target features j
    best, best_i = cx.max(dim=1)  # [P,Ly]: best pred match of every target feature
    if aggregate == "mechrez":
        return best.mean(dim=1)
    w = torch.exp((1.0 - dist.gather(1, best_i.unsqueeze(1)).squeeze(1)) / _UGPNET_WEIGHT_BAND)
    return (best * w).sum(dim=1) / w.sum(dim=1)


def contextual_loss_from_features(x: torch.Tensor, y: torch.Tensor, band_width: float = 0.5,
                                  aggregate: str = "ugpnet") -> torch.Tensor:
    """``mean_P -log(CX + 1e-5)`` of feature maps ``[P,C,h,w]`` (pred ``x``, target ``y``)."""
    return (-torch.log(contextual_similarity(x, y, band_width, aggregate) + _EPS)).mean()


def grid_patches(img: torch.Tensor, patch: int) -> torch.Tensor:
    """Non-overlapping ``patch x patch`` tiles of ``[N,C,H,W]`` → ``[N*nH*nW, C, patch, patch]``,
    ordered by (row, column, sample); the remainder at the bottom/right is dropped."""
    n, c, h, w = img.shape
    if patch > h or patch > w:
        raise ValueError(f"patch size {patch} exceeds image size {h}x{w}")
    t = img.unfold(2, patch, patch).unfold(3, patch, patch)  # [N,C,nH,nW,p,p]
    return t.permute(2, 3, 0, 1, 4, 5).reshape(-1, c, patch, patch)


@LOSSES.register("contextual")
class ContextualLoss(nn.Module):
    """Patch-wise contextual loss ``forward(pred, target)`` (see the module docstring).

    ``features``: ``vgg19_relu3_4`` (official; VGG19 weights required) or ``vgg16_relu3_3``
    (the offline LPIPS VGG16); when given it sets ``layer`` and ``backbone``. Otherwise ``layer``
    (a VGG19 name, mapped to VGG16 when that is the backbone) and ``backbone`` (``auto`` |
    ``vgg19`` | ``vgg16``). ``patch_size``: grid patch size in px (``None``: whole image).
    ``max_patches``: keep at most this many random grid patches per call (``None``: all)."""

    def __init__(self, layer: str = "relu3_4", band_width: float = 0.5, patch_size: int | None = 128,
                 max_patches: int | None = None, backbone: str = "auto", aggregate: str = "ugpnet",
                 loss_weight: float = 1.0, features: str | None = None):
        super().__init__()
        if features is not None:
            if features not in FEATURES:
                raise ConfigError(f"contextual: features must be one of {sorted(FEATURES)}, got "
                                  f"'{features}'")
            backbone, layer = FEATURES[features]
        if not band_width > 0:
            raise ConfigError(f"contextual: band_width must be > 0, got {band_width}")
        if patch_size is not None and int(patch_size) < 4:
            raise ConfigError(f"contextual: patch_size must be >= 4 px or null, got {patch_size}")
        if max_patches is not None and int(max_patches) < 1:
            raise ConfigError(f"contextual: max_patches must be >= 1 or null, got {max_patches}")
        if aggregate not in AGGREGATES:
            raise ConfigError(f"contextual: aggregate must be one of {AGGREGATES}, got '{aggregate}'")
        self.band_width = float(band_width)
        self.patch_size = None if patch_size is None else int(patch_size)
        self.max_patches = None if max_patches is None else int(max_patches)
        self.aggregate = aggregate
        self.loss_weight = float(loss_weight)
        self.vgg = build_vgg_features(layer, backbone)
        self.layer = self.vgg.layer
        self.feature_source = self.vgg.source

    def train(self, mode: bool = True):
        super().train(mode)
        self.vgg.eval()
        return self

    def patches(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The grid patches of both images (same positions; random subset if ``max_patches``)."""
        p = self.patch_side(pred)
        xp, yp = grid_patches(pred, p), grid_patches(target, p)
        if self.max_patches is not None and xp.shape[0] > self.max_patches:
            keep = torch.randperm(xp.shape[0])[: self.max_patches].to(xp.device)
            xp, yp = xp.index_select(0, keep), yp.index_select(0, keep)
        return xp, yp

    def patch_side(self, pred: torch.Tensor) -> int:
        """The grid's patch side for ``pred``: ``patch_size``, at most the image's shorter side."""
        h, w = pred.shape[-2:]
        return min(self.patch_size or max(h, w), h, w)

    def single_patch(self, pred: torch.Tensor) -> bool:
        """True when the patch grid of ``pred`` is one patch per image: the image itself."""
        return self.patch_side(pred) == pred.shape[-2] == pred.shape[-1]

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                pred_features: torch.Tensor | None = None) -> torch.Tensor:
        """``pred_features``: the activation of ``pred`` at this loss's layer computed elsewhere
        with the same weights and normalisation (see :func:`shares_trunk`); only when the grid is
        one patch per image (:meth:`single_patch`), so that they are exactly ``self.vgg(pred)``."""
        if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(f"ContextualLoss expects two [N,3,H,W] tensors of equal shape in [0,1], "
                             f"got {tuple(pred.shape)} and {tuple(target.shape)}")
        if pred_features is not None:
            if not self.single_patch(pred) or self.max_patches is not None:
                raise ValueError("contextual: pred_features need a grid of one patch per image")
            fx, fy = pred_features, self.vgg(target)
        else:
            xp, yp = self.patches(pred, target)
            fx, fy = self.vgg(xp), self.vgg(yp)
        return self.loss_weight * contextual_loss_from_features(fx, fy, self.band_width, self.aggregate)


def shares_trunk(lpips_loss, contextual: ContextualLoss) -> str | None:
    """The layer at which ``contextual`` can take its prediction features from ``lpips_loss``
    (an :class:`~ugpnet.losses.perceptual.LPIPSLoss`), or None.

    LPIPS maps [0, 1] to [-1, 1] and applies its scaling layer (shift -0.030/-0.088/-0.188, scale
    0.458/0.448/0.450), which is exactly the ImageNet normalisation that :class:`VGGFeatures`
    applies to [0, 1] (mean = (1 + shift) / 2, std = scale / 2). So when both run the same VGG16
    weights (checked tensor by tensor), LPIPS does not resize and no random patch subset is
    drawn, LPIPS' ``relu3_3`` of the prediction *is* the contextual loss's feature (up to float
    rounding, about 1e-7 relative): the fusion stage then runs the VGG trunk on ``x_hat`` once
    instead of twice (forward and backward). Per call, the grid must also be one patch per
    image (:meth:`ContextualLoss.single_patch`)."""
    from .perceptual import TRUNK_LAYERS

    if getattr(lpips_loss, "net", None) != "vgg" or lpips_loss.resize_px is not None:
        return None
    if contextual.vgg.arch != "vgg16" or contextual.max_patches is not None \
            or contextual.layer not in TRUNK_LAYERS["vgg"]:
        return None
    ours = [m for m in contextual.vgg.features if isinstance(m, nn.Conv2d)]
    theirs = [m for m in lpips_loss.model.net.modules() if isinstance(m, nn.Conv2d)][:len(ours)]
    for a, b in zip(ours, theirs):
        if a.weight.shape != b.weight.shape or not torch.equal(a.weight, b.weight.to(a.weight)) \
                or not torch.equal(a.bias, b.bias.to(a.bias)):
            return None
    return contextual.layer
