"""Common interface of the regression backbones (R' in the UGPNet paper).

Every backbone is an ``nn.Module`` built from plain keyword arguments and exposes

- ``kind``: ``"residual"`` (the output image is ``x + ending(feature)`` or similar; UGPNet wraps it
  with a structure encoder R_se and a merging net R_mg) or ``"direct"`` (the network outputs the
  restored image itself; UGPNet uses its last feature as ``f_reg`` directly).
- ``scale``: output size / input size (1, or e.g. 8 for RRDBNet x8 super-resolution).
- ``feature_channels``: channels of the feature returned with ``return_feature=True``.
- ``size_multiple``: input sizes that need no internal padding (used by :func:`check_shapes`).
- ``forward(x, return_feature=False)``: ``x`` is ``[N, 3, H, W]`` in [0, 1]; returns the image
  ``[N, 3, H*scale, W*scale]``, or ``(image, feature)`` where ``feature`` is the last feature map
  at output resolution (``[N, feature_channels, H*scale, W*scale]``).
"""
from __future__ import annotations

from typing import Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F


class Backbone(nn.Module):
    kind: str = "residual"
    size_multiple: int = 1

    @property
    def scale(self) -> int:
        return getattr(self, "_scale", 1)

    @property
    def feature_channels(self) -> int:
        return self._feature_channels

    def forward_impl(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return (image, feature) at output resolution; subclasses implement this."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, return_feature: bool = False
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        if x.dim() != 4:
            raise ValueError(f"{type(self).__name__} expects [N, C, H, W], got {tuple(x.shape)}")
        image, feature = self.forward_impl(x)
        return (image, feature) if return_feature else image


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad bottom/right so that H and W are multiples of ``multiple`` (as official NAFNet)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x
