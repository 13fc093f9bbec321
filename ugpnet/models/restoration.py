"""UGPNet's restoration module R (paper Sec. 3.1), ``forward(x) -> (x_reg, f_reg)``.

- Residual backbones (NAFNet, HINet, UNet): ``x_reg = R_mg(R'(x) + R_se(x))`` where ``R'(x)`` is
  the backbone's last feature before its ending conv (``feature_channels = C``), ``R_se`` the
  structure encoder ``ConvBlock(3 -> C)`` and ``R_mg`` the merging net ``ConvBlock(C -> 64)``,
  ``ConvBlock(64 -> 64)``, ``ToImage(64 -> 3)`` (official ``ResidualEncoder``; every conv 3x3 with
  bias and LeakyReLU(0.2), also after the to-image conv). ``f_reg`` is the 64-channel output of the
  second merging block. The backbone's own output image is not used.
- Direct backbones (RRDBNet): pass-through, ``x_reg, f_reg = R'(x)`` with ``f_reg`` the backbone's
  last feature (64 channels for RRDBNet).

The structure encoder / merging net are initialised like the official code (Kaiming normal,
fan_out, leaky_relu); the backbone keeps its own initialisation or pretrained weights.

``skip`` (an option beyond the paper; ``"none"`` is the official module bit for bit): a global
residual for residual backbones, ``x_reg = base + Conv(f_reg)`` where ``Conv`` is R_mg's to-image
conv without its LeakyReLU (a residual must be signed), zero-initialised, and ``base`` is the
input (``"input"``) or the backbone's own output image (``"backbone"``). The module then starts at
``base`` exactly instead of at a random image: at small scale the official R_se/R_mg, trained from
scratch, stay under the blurred input for longer than an offline run can afford (params.yaml's
smoke profile). Same parameters and key names; ``f_reg`` unchanged. Direct backbones take no skip.

``head`` (an ablation, registered by name in :data:`RESTORATION_HEADS`; ``"se_mg"`` is the paper's
module above): how a residual backbone's ``(image, feature)`` become ``(x_reg, f_reg)``.
``"none"`` is the paper's Table 3 (a) "without R_se and R_mg": ``x_reg`` is the backbone's own
output image and ``f_reg`` its last feature (``feature_channels = backbone.feature_channels``), with
no structure-encoder or merging-net parameters; it takes no ``skip`` (x_reg already is the
backbone's output). Direct backbones have no head: every head name means the pass-through.
A head is a small stateless strategy: :meth:`RestorationHead.attach` adds its modules to the
RestorationModule (so their keys stay ``structure_encoder.*``/``merging_net.*``, as the official
layout maps them) and :meth:`RestorationHead.forward` computes ``(x_reg, f_reg)``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ..registry import Registry
from .blocks import ConvBlock, ToImage, init_official

MERGE_CHANNELS = 64
SKIPS = ("none", "input", "backbone")
OFFICIAL_HEAD = "se_mg"
RESTORATION_HEADS = Registry("restoration head")


def backbone_label(backbone: nn.Module) -> str:
    from .backbones import BACKBONES

    for name in BACKBONES.names():
        if type(backbone) is BACKBONES.get(name):
            return name
    return type(backbone).__name__


class MergingNet(nn.Module):
    """R_mg: two conv blocks to 64 channels, then the to-image conv; returns (image, feature)."""

    def __init__(self, in_channels: int, channels: int = MERGE_CHANNELS, num_blocks: int = 2):
        super().__init__()
        self.blocks = nn.ModuleList(
            ConvBlock(in_channels if i == 0 else channels, channels) for i in range(num_blocks))
        self.to_image = ToImage(channels)
        self.out_channels = channels

    def features(self, f: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            f = block(f)
        return f

    def forward(self, f: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        f = self.features(f)
        return self.to_image(f), f


class RestorationHead:
    """How R turns a residual backbone's ``(image [N,3,H,W], feature [N,C,H,W])`` and the input
    ``x`` into ``(x_reg [N,3,H,W], f_reg [N,feature_channels,H,W])``. Stateless: its modules live
    on the RestorationModule (``attach``), so their state-dict keys do not depend on the head."""

    #: the ``skip`` values (module doc) this head accepts
    skips: tuple = SKIPS

    def attach(self, r: "RestorationModule", channels: int) -> int:
        """Add this head's modules to ``r`` (``channels``: the backbone's feature width); return
        f_reg's channels."""
        raise NotImplementedError

    def forward(self, r: "RestorationModule", x: torch.Tensor, image: torch.Tensor,
                feat: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


@RESTORATION_HEADS.register("se_mg")
class StructureMergeHead(RestorationHead):
    """The paper's head: ``x_reg = R_mg(R'(x) + R_se(x))``, ``f_reg`` = R_mg's last feature."""

    def attach(self, r, channels):
        r.structure_encoder = ConvBlock(3, channels)
        r.merging_net = MergingNet(channels)
        init_official(r.structure_encoder)
        init_official(r.merging_net)
        if r.skip != "none":  # start at the base image: the correction is zero
            nn.init.zeros_(r.merging_net.to_image.conv.weight)
            nn.init.zeros_(r.merging_net.to_image.conv.bias)
        return r.merging_net.out_channels

    def forward(self, r, x, image, feat):
        se = r.structure_encoder(x)
        if feat.shape != se.shape:
            raise ValueError(
                f"backbone '{backbone_label(r.backbone)}' returns features of shape "
                f"{tuple(feat.shape)} but structure_encoder gives {tuple(se.shape)}; set "
                f"feature_channels correctly (R'(x) + R_se(x) needs identical shapes)")
        if r.skip == "none":
            return r.merging_net(feat + se)
        f_reg = r.merging_net.features(feat + se)
        base = x if r.skip == "input" else image
        return r.merging_net.to_image.conv(f_reg) + base, f_reg


@RESTORATION_HEADS.register("none")
class BackboneHead(RestorationHead):
    """Table 3 (a), without R_se and R_mg: the backbone's own image and last feature."""

    skips = ("none",)

    def attach(self, r, channels):
        return channels

    def forward(self, r, x, image, feat):
        return image, feat


class RestorationModule(nn.Module):
    def __init__(self, backbone: nn.Module, se_channels: Optional[int] = None,
                 check: bool = True, skip: str = "none", head: str = OFFICIAL_HEAD):
        """``se_channels``: R_se output channels; default ``backbone.feature_channels`` (must
        equal it, since R'(x) + R_se(x) is a sum; kept as an argument to test the shape check).
        ``check``: run :func:`check_shapes` (a tiny dry forward) so that mismatched shapes fail
        at build time. ``skip``: ``none`` (official) | ``input`` | ``backbone`` (module doc).
        ``head``: a :data:`RESTORATION_HEADS` name, ``se_mg`` (official) | ``none`` (module doc)."""
        super().__init__()
        self.backbone = backbone
        self.kind = getattr(backbone, "kind", None)
        if self.kind not in ("residual", "direct"):
            raise ValueError(f"backbone {backbone_label(backbone)!r} has kind {self.kind!r}; "
                             f"expected 'residual' or 'direct'")
        if skip not in SKIPS:
            raise ValueError(f"restoration skip must be one of {SKIPS}, got {skip!r}")
        if skip != "none" and self.kind != "residual":
            raise ValueError(f"restoration skip '{skip}' needs a residual backbone; "
                             f"'{backbone_label(backbone)}' is direct (its output is x_reg): "
                             f"use skip 'none'")
        head_cls = RESTORATION_HEADS.get(head)  # unknown names fail for every backbone kind
        self.skip = skip
        self.head = head
        # every head's modules are attributes here (None when absent), so consumers can ask
        self.structure_encoder = None
        self.merging_net = None
        if self.kind == "residual":
            self._head = head_cls()
            if skip not in self._head.skips:
                raise ValueError(f"restoration head '{head}' takes no skip (it accepts "
                                 f"{list(self._head.skips)}), got skip '{skip}'")
            c = int(se_channels if se_channels is not None else backbone.feature_channels)
            self.feature_channels = int(self._head.attach(self, c))
        else:
            self._head = None
            self.feature_channels = int(backbone.feature_channels)
        if check:
            check_shapes(self)

    @property
    def scale(self) -> int:
        return int(getattr(self.backbone, "scale", 1))

    @property
    def size_multiple(self) -> int:
        return int(getattr(self.backbone, "size_multiple", 1))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "direct":
            return self.backbone(x, return_feature=True)
        image, feat = self.backbone(x, return_feature=True)
        x_reg, f_reg = self._head.forward(self, x, image, feat)
        # the 3-channel image in the default layout for every consumer (losses, augmentation);
        # f_reg keeps the input's memory format (channels-last inside UGPNet)
        return x_reg.contiguous(), f_reg


def check_shapes(module: nn.Module, size: Optional[Sequence[int] | int] = None,
                 channels: int = 3) -> Tuple[torch.Tensor, ...]:
    """Dry forward of a zero ``[1, channels, h, w]`` input (no grad, eval mode restored after)
    to catch shape mistakes at build time. ``size`` defaults to 16 rounded up to the module's
    ``size_multiple`` (twice the multiple when it is > 1, so that HINet's instance norms never
    see a 1x1 map). Returns the outputs; for a RestorationModule also checks that ``x_reg`` is
    ``[1, 3, h*scale, w*scale]`` and ``f_reg`` has ``feature_channels`` at the same size."""
    mult = int(getattr(module, "size_multiple", 1)) or 1
    if size is None:
        size = max(16, 2 * mult if mult > 1 else 16)
        size += (-size) % mult
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    x = torch.zeros(1, channels, h, w)
    try:
        p = next(module.parameters())
        x = x.to(p.device, p.dtype)
    except StopIteration:
        pass
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(x)
    finally:
        module.train(was_training)
    if isinstance(module, RestorationModule):
        x_reg, f_reg = out
        s = module.scale
        want = (1, 3, h * s, w * s)
        if tuple(x_reg.shape) != want:
            raise ValueError(f"restoration with backbone '{backbone_label(module.backbone)}' "
                             f"gives x_reg {tuple(x_reg.shape)} for input {tuple(x.shape)}; "
                             f"expected {want}")
        if tuple(f_reg.shape) != (1, module.feature_channels, h * s, w * s):
            raise ValueError(f"restoration with backbone '{backbone_label(module.backbone)}' "
                             f"gives f_reg {tuple(f_reg.shape)}; expected "
                             f"{(1, module.feature_channels, h * s, w * s)}")
    return out if isinstance(out, tuple) else (out,)
