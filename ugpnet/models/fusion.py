"""UGPNet's fusion module (paper Eq. 1): ``x_hat = Conv(R_fusion(Conv(f_syn) + f_reg))``.

- ``in_conv``: 3x3 conv ``syn_channels -> channels`` on the synthesis feature ``f_syn``;
- ``body``: ``num_blocks`` residual blocks ``ReLU(x + Conv(ReLU(Conv(x))))`` (R_fusion);
- ``out_conv``: 3x3 conv ``channels -> 3`` (no activation), the fused image.

``f_reg`` must have ``channels`` channels (64 in the paper; ``reg_channels`` is checked against it).
Paper config (64 channels, 8 blocks): 629,507 parameters (0.63 M). Initialised like the official
``FusionNet`` (Kaiming normal, fan_out, leaky_relu; zero biases). Official key names: see
:func:`ugpnet.models.keymaps.official_fusmodule_to_fusion`.

``xreg_skip`` (an option beyond the paper; ``False`` is the official module bit for bit):
``x_hat = x_reg + Conv(R_fusion(Conv(f_syn) + f_reg))`` with ``out_conv`` zero-initialised, so the
module starts at ``x_reg`` exactly and learns only what x_syn adds. Why: from the official random
start the fusion must first learn to reproduce x_reg, which a short run does not achieve (at small
scale x_hat stays 2-5 dB under x_reg; params.yaml's smoke profile). Same parameters and key names.

Fusion modules are registered by name in :data:`FUSIONS` (``methods.<ugpnet>.fusion_input``):

- ``features`` (official, Eq. 1): :class:`FusionModule` above;
- ``images`` (the paper's Table 3 (b) ablation): :class:`ImageFusionModule`, the same body on
  the IMAGES, ``x_hat = Conv_out(R_fusion(Conv_syn(x_syn) + Conv_reg(x_reg)))``.

Every registered fusion is built with the keywords ``syn_channels, reg_channels, channels,
num_blocks, xreg_skip`` (the widths of f_syn and f_reg, the body width and depth) and called as
``fusion(f_syn=..., f_reg=..., x_reg=..., x_syn=...)``, each reading what it needs, so that
UGPNet and the fusion stage stay generic.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry
from .blocks import ResBlock, init_official

OFFICIAL_FUSION = "features"
FUSIONS = Registry("fusion module")


def _zero_out(conv: nn.Conv2d) -> None:
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)


def _add_body(module: nn.Module, channels: int, num_blocks: int, out_channels: int,
              xreg_skip: bool) -> None:
    """What every fusion adds after its input convs, in the official order: R_fusion
    (``num_blocks`` ResBlocks), the out conv, the official initialisation of the whole module,
    and with ``xreg_skip`` the zeroed out conv (it starts at x_reg: the correction is zero)."""
    module.body = nn.Sequential(*[ResBlock(channels) for _ in range(num_blocks)])
    module.out_conv = nn.Conv2d(channels, out_channels, 3, 1, 1)
    init_official(module)
    module.xreg_skip = bool(xreg_skip)
    if module.xreg_skip:
        _zero_out(module.out_conv)


def _check_x_reg(x_reg: torch.Tensor | None, n: int, channels: int, hw, what: str) -> None:
    if x_reg is None or x_reg.dim() != 4 or tuple(x_reg.shape[:2]) != (n, channels) \
            or tuple(x_reg.shape[-2:]) != tuple(hw):
        raise ValueError(f"{what}: expected x_reg [{n}, {channels}, {hw[0]}, {hw[1]}], got "
                         f"{None if x_reg is None else tuple(x_reg.shape)}")


@FUSIONS.register("features")
class FusionModule(nn.Module):
    def __init__(self, syn_channels: int = 64, reg_channels: int = 64, num_blocks: int = 8,
                 channels: int = 64, out_channels: int = 3, xreg_skip: bool = False):
        super().__init__()
        if reg_channels != channels:
            raise ValueError(f"fusion adds f_reg ({reg_channels} channels) to Conv(f_syn) "
                             f"({channels} channels): reg_channels must equal channels")
        self.syn_channels, self.reg_channels, self.channels = syn_channels, reg_channels, channels
        self.in_conv = nn.Conv2d(syn_channels, channels, 3, 1, 1)
        _add_body(self, channels, num_blocks, out_channels, xreg_skip)

    def forward(self, f_syn: torch.Tensor, f_reg: torch.Tensor,
                x_reg: torch.Tensor | None = None,
                x_syn: torch.Tensor | None = None) -> torch.Tensor:
        """``x_hat [N, 3, H, W]`` from ``f_syn [N, syn_channels, H, W]`` and ``f_reg [N,
        reg_channels, H, W]``; ``x_reg [N, 3, H, W]`` is needed (only) with ``xreg_skip``;
        ``x_syn`` is not read (the common signature of :data:`FUSIONS`)."""
        if f_syn.dim() != 4 or f_syn.shape[1] != self.syn_channels:
            raise ValueError(f"fusion expects f_syn [N, {self.syn_channels}, H, W], got "
                             f"{tuple(f_syn.shape)}")
        if f_reg.dim() != 4 or f_reg.shape[1] != self.reg_channels:
            raise ValueError(f"fusion expects f_reg [N, {self.reg_channels}, H, W], got "
                             f"{tuple(f_reg.shape)}")
        if f_syn.shape[0] != f_reg.shape[0] or f_syn.shape[-2:] != f_reg.shape[-2:]:
            raise ValueError(f"f_syn {tuple(f_syn.shape)} and f_reg {tuple(f_reg.shape)} must "
                             f"share batch and spatial size (restoration output resolution must "
                             f"equal the StyleGAN2 size)")
        if self.xreg_skip and (x_reg is None or x_reg.shape[-2:] != f_reg.shape[-2:]
                               or x_reg.shape[:2] != (f_reg.shape[0], self.out_conv.out_channels)):
            raise ValueError(f"fusion with xreg_skip adds x_reg: expected x_reg "
                             f"[{f_reg.shape[0]}, {self.out_conv.out_channels}, "
                             f"{f_reg.shape[-2]}, {f_reg.shape[-1]}], got "
                             f"{None if x_reg is None else tuple(x_reg.shape)}")
        # in place on in_conv's fresh output; channels-last f_syn (the generator's) keeps the
        # whole module channels-last
        out = self.out_conv(self.body(self.in_conv(f_syn).add_(f_reg)))
        # not in place: under bf16 autocast an fp32 x_reg keeps the sum in fp32
        return out + x_reg if self.xreg_skip else out


@FUSIONS.register("images")
class ImageFusionModule(nn.Module):
    """Table 3 (b), fusion of the images: ``x_hat = Conv_out(R_fusion(Conv_syn(x_syn) +
    Conv_reg(x_reg)))`` (``+ x_reg`` with ``xreg_skip``, ``out_conv`` zero-initialised).

    ``syn_conv``/``reg_conv``: 3x3 convs ``3 -> channels`` on x_syn/x_reg [N, 3, H, W]; ``body``
    and ``out_conv`` as in :class:`FusionModule` (same width, depth and official initialisation).
    ``syn_channels``/``reg_channels`` (the feature widths the feature fusion would read) are
    accepted for the common constructor of :data:`FUSIONS` and not used. Paper width (64
    channels, 8 blocks): 596,163 parameters.
    """

    def __init__(self, syn_channels: int | None = None, reg_channels: int | None = None,
                 num_blocks: int = 8, channels: int = 64, out_channels: int = 3,
                 xreg_skip: bool = False, image_channels: int = 3):
        super().__init__()
        self.channels, self.image_channels = channels, image_channels
        self.syn_conv = nn.Conv2d(image_channels, channels, 3, 1, 1)
        self.reg_conv = nn.Conv2d(image_channels, channels, 3, 1, 1)
        _add_body(self, channels, num_blocks, out_channels, xreg_skip)

    def forward(self, f_syn: torch.Tensor | None = None, f_reg: torch.Tensor | None = None,
                x_reg: torch.Tensor | None = None,
                x_syn: torch.Tensor | None = None) -> torch.Tensor:
        """``x_hat [N, 3, H, W]`` from ``x_syn`` and ``x_reg`` [N, image_channels, H, W];
        ``f_syn``/``f_reg`` are not read (the common signature of :data:`FUSIONS`)."""
        c = self.image_channels
        if x_syn is None or x_syn.dim() != 4 or x_syn.shape[1] != c:
            raise ValueError(f"image fusion expects x_syn [N, {c}, H, W], got "
                             f"{None if x_syn is None else tuple(x_syn.shape)}")
        _check_x_reg(x_reg, x_syn.shape[0], c, x_syn.shape[-2:],
                     "image fusion adds Conv(x_reg) to Conv(x_syn) (same batch and size)")
        if self.xreg_skip and self.out_conv.out_channels != c:
            raise ValueError(f"image fusion with xreg_skip adds x_reg ({c} channels) to an "
                             f"output of {self.out_conv.out_channels} channels")
        # in place on syn_conv's fresh output
        out = self.out_conv(self.body(self.syn_conv(x_syn).add_(self.reg_conv(x_reg))))
        # not in place: under bf16 autocast an fp32 x_reg keeps the sum in fp32
        return out + x_reg if self.xreg_skip else out


def build_fusion(name: str, *, syn_channels: int, reg_channels: int, channels: int,
                 num_blocks: int, xreg_skip: bool = False) -> nn.Module:
    """The fusion module registered as ``name`` (:data:`FUSIONS`), with the common keywords."""
    return FUSIONS.get(name)(syn_channels=syn_channels, reg_channels=reg_channels,
                             channels=channels, num_blocks=num_blocks, xreg_skip=xreg_skip)
