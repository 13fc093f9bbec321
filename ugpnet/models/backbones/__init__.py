"""Regression backbones (R' in the UGPNet paper), registered by name in :data:`BACKBONES`.

Names: ``nafnet``, ``hinet``, ``unet`` (residual kind) and ``rrdbnet`` (direct kind, x8 SR).
See :mod:`ugpnet.models.backbones.base` for the common interface.
"""
from ...registry import Registry
from .base import Backbone, pad_to_multiple
from .hinet import HINet
from .nafnet import NAFNet
from .rrdbnet import RRDBNet
from .unet import UNet

BACKBONES = Registry("backbone")
BACKBONES.register("nafnet")(NAFNet)
BACKBONES.register("hinet")(HINet)
BACKBONES.register("unet")(UNet)
BACKBONES.register("rrdbnet")(RRDBNet)

__all__ = ["BACKBONES", "Backbone", "HINet", "NAFNet", "RRDBNet", "UNet", "pad_to_multiple"]
