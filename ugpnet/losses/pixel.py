"""Element-wise (pixel) losses. Inputs: ``pred`` and ``target`` ``[N,C,H,W]`` float in [0, 1].

As in BasicSR, each loss computes the element-wise map, applies an optional element-wise
``weight`` map and the reduction **once**, then multiplies by ``loss_weight``:

- ``reduction="mean"``: ``sum(l * w) / sum(w)`` (``w`` broadcast to the loss shape; plain mean
  without a weight map), ``"sum"``: ``sum(l * w)``, ``"none"``: the map ``l * w``.

Who uses what: RRDBNet (ESRGAN's PSNR-oriented model) trains with L1; NAFNet and HINet train with
their own PSNR loss (:class:`PSNRLoss`); UGPNet's restoration module uses the PSNR loss (L1 for the
RRDBNet SR variant), its synthesis and fusion modules use L1 plus LPIPS (and adversarial / contextual).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..errors import ConfigError
from . import LOSSES

_REDUCTIONS = ("none", "mean", "sum")


def _check_pair(pred: torch.Tensor, target: torch.Tensor, who: str) -> None:
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"{who}: pred and target must be [N,C,H,W] of equal shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


def reduce_loss(loss: torch.Tensor, weight: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Apply an element-wise weight map and the reduction once (see the module docstring)."""
    if weight is not None:
        weight = weight.to(loss.dtype).expand_as(loss)
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight is None:
        return loss.mean()
    return loss.sum() / weight.sum().clamp_min(1e-12)


class _ElementwiseLoss(nn.Module):
    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ConfigError(f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, "
                              f"got '{reduction}'")
        self.loss_weight = float(loss_weight)
        self.reduction = reduction

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        _check_pair(pred, target, type(self).__name__)
        return self.loss_weight * reduce_loss(self.elementwise(pred, target), weight, self.reduction)


@LOSSES.register("l1")
class L1Loss(_ElementwiseLoss):
    """``|pred - target|`` (mean absolute error with the default reduction)."""

    def elementwise(self, pred, target):
        return (pred - target).abs()


@LOSSES.register("mse")
class MSELoss(_ElementwiseLoss):
    """``(pred - target)^2``."""

    def elementwise(self, pred, target):
        return (pred - target) ** 2


@LOSSES.register("charbonnier")
class CharbonnierLoss(_ElementwiseLoss):
    """``sqrt((pred - target)^2 + eps^2)`` with ``eps = 1e-3`` (the MPRNet/HINet form; BasicSR
    writes ``sqrt(d^2 + eps)`` with ``eps = 1e-12``, i.e. pass ``eps=1e-6`` for that)."""

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", eps: float = 1e-3):
        super().__init__(loss_weight, reduction)
        self.eps = float(eps)

    def elementwise(self, pred, target):
        return torch.sqrt((pred - target) ** 2 + self.eps ** 2)


# ITU-R BT.601 luma for RGB in [0, 1], as in HINet/NAFNet's PSNRLoss(toY=True) (result in [16, 235] / 255)
_Y_COEF = (65.481, 128.553, 24.966)


@LOSSES.register("psnr")
class PSNRLoss(nn.Module):
    """HINet/NAFNet PSNR loss: ``loss_weight * 10/ln(10) * mean_n ln(MSE_n + eps)``, ``eps = 1e-8``.

    ``MSE_n`` is the mean squared error of image ``n`` over C, H, W with data range 1, so for one
    image the loss equals ``-PSNR_dB`` (up to ``eps``): lower is better, and averaging over the batch
    is an average of per-image -PSNR. ``to_y=True`` first converts RGB in [0, 1] to BT.601 luma
    ``(65.481 R + 128.553 G + 24.966 B + 16) / 255`` as HINet does. Only ``reduction="mean"``."""

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", to_y: bool = False,
                 eps: float = 1e-8):
        super().__init__()
        if reduction != "mean":
            raise ConfigError(f"PSNRLoss supports only reduction 'mean', got '{reduction}'")
        self.loss_weight = float(loss_weight)
        self.scale = 10.0 / math.log(10.0)
        self.to_y = bool(to_y)
        self.eps = float(eps)
        self.register_buffer("y_coef", torch.tensor(_Y_COEF).view(1, 3, 1, 1), persistent=False)

    def _luma(self, x: torch.Tensor) -> torch.Tensor:
        return ((x * self.y_coef.to(x.dtype)).sum(dim=1, keepdim=True) + 16.0) / 255.0

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target, "PSNRLoss")
        if self.to_y:
            if pred.shape[1] != 3:
                raise ValueError(f"PSNRLoss(to_y=True) needs RGB input, got {pred.shape[1]} channels")
            pred, target = self._luma(pred), self._luma(target)
        mse = ((pred - target) ** 2).mean(dim=(1, 2, 3))
        return self.loss_weight * self.scale * torch.log(mse + self.eps).mean()
