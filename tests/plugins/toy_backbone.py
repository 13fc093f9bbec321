"""A user's own regression backbone, plugged into UGPNet without touching any other file.

Used by tests/test_plugin_backbone.py exactly as the README describes:
1. this module (the network + ONE registry line),
2. params: ``plugins: [toy_backbone]``, ``backbones.toy.<task>: {...}`` and
   ``methods.ugpnet.backbone.<task>: toy``.
"""
import torch
from torch import nn

from ugpnet.models.backbones import BACKBONES, Backbone


@BACKBONES.register("toy")
class ToyNet(Backbone):
    """Residual toy network: image = x + tail(f), f = body(head(x))."""

    kind = "residual"

    def __init__(self, width: int = 8):
        super().__init__()
        self._feature_channels = width
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward_impl(self, x: torch.Tensor):
        f = self.body(self.head(x))
        return x + self.tail(f), f
